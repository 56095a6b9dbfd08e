"""Ranking with PIT's one-to-many beam index: constrained U2T beam search over the index's SIDs,
then item scores aggregated over each item's SIDs.

Returning K distinct items matters (the evaluator counts a missing slot as a miss): when an
item owns several SIDs the W beams can name fewer than K items, so users left short are searched
again with a doubled beam (up to ``max_widen`` times), and how many were is counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pitrec.data.batches import PAD, recent_rows_sum
from pitrec.decoding.aggregate import Aggregation, aggregate_beams
from pitrec.decoding.beam_search import Frontier
from pitrec.index.trie import Trie
from pitrec.models.user_to_token import Memory


def compile_index(index, one_to_many: bool, device: torch.device | str) -> tuple[Trie, torch.Tensor]:
    """The decoding trie of a ``BeamIndex`` and, aligned with ``trie.leaf_items``, log q(SID | item):
    the item's edge weights normalised over its SIDs. With ``one_to_many`` off every item keeps
    only its strongest SID (the single-SID ablation)."""
    items, codes, weights = index.edges()
    if not one_to_many:
        items, codes, weights = np.arange(index.n_items), index.primary_codes(), np.ones(index.n_items)
    trie = Trie.build(codes, index.codebook_sizes, items=items, n_items=index.n_items)
    leaf = trie.lookup(torch.from_numpy(codes)).numpy()
    order = np.lexsort((items, leaf))  # the trie's edge order: by leaf, then item
    w = np.maximum(weights, 0.0) + 1e-6
    q = w / np.bincount(items, weights=w, minlength=index.n_items)[items]
    return trie.to(device), torch.from_numpy(np.log(q[order])).float().to(device)


@dataclass(frozen=True)
class TextAffinity:
    """``pit.new_item_text_affinity``: items from ``first_added`` on gain ``strength`` x the cosine of
    their text row to the user's text profile (``text``: unit rows, one per item). The profile is
    the mean of the unit rows of the user's last ``history`` items (``pit.new_item_text_affinity_history``;
    1: the last item alone), normalised: one item says what the user is doing now, several say
    what the user keeps coming back to."""

    text: torch.Tensor
    first_added: int
    strength: float
    history: int = 1

    def profile(self, history: torch.Tensor) -> torch.Tensor:
        """(B, d) unit text profiles of these (left-padded with PAD) histories."""
        return torch.nn.functional.normalize(recent_rows_sum(self.text, history, self.history), dim=-1)

    def table(self, history: torch.Tensor) -> torch.Tensor:
        """(B, n_added) log-score terms of the added items for these (left-padded) histories."""
        return self.strength * (self.profile(history) @ self.text[self.first_added:].T)


@dataclass
class RankedBeams:
    """A ranking (B, k) with the search behind it: the users' memory, their final beams (B, W):
    trie leaf (-1 where no beam) and log P(SID | user) under the search's last-level rule, and the
    last level's frontier (every SID one step from the beams' prefixes, scored) and the level
    before it with its cache (None once a user was searched again with a wider beam: its caches
    have another width, and those SIDs are decoded instead), and the memory's cross-attention
    keys/values, which a step from that cache needs again."""

    items: torch.Tensor
    scores: torch.Tensor
    memory: Memory
    leaves: torch.Tensor
    log_probs: torch.Tensor
    frontier: Frontier
    penultimate: Frontier | None
    cross: list


class PITRanker:
    """The evaluator's ``Ranker`` (and the service's) over a U2T model and a compiled index."""

    def __init__(self, model, history_codes: torch.Tensor, trie: Trie, edge_log_q: torch.Tensor,
                 beam_width: int, aggregation: Aggregation = "weighted", max_widen: int = 3,
                 renormalize_last: bool = False, item_log_prior: torch.Tensor | None = None,
                 text_affinity: TextAffinity | None = None):
        self.model, self.history_codes, self.trie, self.edge_log_q = model, history_codes, trie, edge_log_q
        self.item_log_prior = item_log_prior  # per item, added to its score (aggregate_beams)
        self.text_affinity = text_affinity  # per user and added item, added to its score
        self.beam_width, self.aggregation, self.max_widen = beam_width, aggregation, max_widen
        self.renormalize_last = renormalize_last
        self.beams = self.invalid = self.widened = 0

    @classmethod
    def from_config(cls, pc, model, history_codes: torch.Tensor, trie: Trie, edge_log_q: torch.Tensor,
                    item_log_prior: torch.Tensor | None = None, text_affinity: TextAffinity | None = None
                    ) -> "PITRanker":
        """The ranker a run's ``pit`` section describes: training's validation and the service use this one."""
        return cls(model, history_codes, trie, edge_log_q, pc.beam_width, pc.aggregation,
                   renormalize_last=pc.last_level == "renormalized", item_log_prior=item_log_prior,
                   text_affinity=text_affinity)

    @torch.no_grad()
    def rank(self, history: torch.Tensor, k: int, exclude_history: bool = False) -> torch.Tensor:
        return self.rank_with_scores(history, k, exclude_history)[0]

    @torch.no_grad()
    def rank_with_scores(self, history: torch.Tensor, k: int, exclude_history: bool = False
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        ranked = self.rank_with_beams(history, k, exclude_history)
        return ranked.items, ranked.scores

    @torch.no_grad()
    def rank_with_beams(self, history: torch.Tensor, k: int, exclude_history: bool = False) -> "RankedBeams":
        """``rank_with_scores`` plus what the search already knows: each user's memory, the
        leaves and log-probabilities of its final beams and its last level's frontier (a widened
        user's from its widest search), so that explaining a ranking need not recompute them."""
        memory = self.model.encode_by_length(self.history_codes[history.clamp(min=0)], history == PAD,
                                              items=history)
        width = max(self.beam_width, k)
        cross = self.model.cross_keys_values(memory)
        affinity = None if self.text_affinity is None else self.text_affinity.table(history)
        items, scores, exhausted, leaves, log_probs, frontier, penultimate = self._search(
            memory, history if exclude_history else None, width, k, cross, affinity)
        rows = torch.arange(len(history), device=history.device)
        for _ in range(self.max_widen):
            short = (items[:, -1] < 0) & ~exhausted
            if not short.any():
                break
            width *= 2
            self.widened += int(short.sum())
            sub = Memory(memory.states[short], memory.valid[short])
            sub_items, sub_scores, sub_exhausted, sub_leaves, sub_log_probs, sub_frontier, _ = self._search(
                sub, history[short] if exclude_history else None, width, k,
                affinity=None if affinity is None else affinity[short])
            idx = rows[short]
            items[idx], scores[idx], exhausted[idx] = sub_items, sub_scores, sub_exhausted
            leaves = torch.cat([leaves, leaves.new_full((len(leaves), width - leaves.shape[1]), -1)], 1)
            log_probs = torch.cat([log_probs, log_probs.new_full((len(leaves), width - log_probs.shape[1]),
                                                                 float("-inf"))], 1)
            leaves[idx], log_probs[idx] = sub_leaves, sub_log_probs
            frontier, penultimate = frontier.widened(idx, sub_frontier), None
        return RankedBeams(items, scores, memory, leaves, log_probs, frontier, penultimate, cross)

    def _search(self, memory: Memory, exclude: torch.Tensor | None, width: int, k: int, cross=None,
                affinity: torch.Tensor | None = None):
        result = self.model.generate(memory, width, self.trie, renormalize_last=self.renormalize_last, cross=cross)
        alive = result.alive
        self.beams += int(alive.sum())
        self.invalid += int((alive & (result.leaves < 0)).sum())
        items, scores = aggregate_beams(result.leaves, result.log_probs, self.trie, k, self.aggregation,
                                        self.edge_log_q, exclude, self.item_log_prior,
                                        None if affinity is None else (self.text_affinity.first_added, affinity))
        exhausted = ~alive.all(1)  # fewer SIDs than beams: a wider search finds nothing new
        leaves = torch.where(alive, result.leaves, torch.full_like(result.leaves, -1))
        return items, scores, exhausted, leaves, result.log_probs, result.frontier, result.penultimate

    @property
    def invalid_rate(self) -> float:
        return self.invalid / max(self.beams, 1)
