"""``GenerativeRanker``: the evaluator's ``Ranker`` for any SID generator with ``encode`` and
``generate`` (User-to-Token under TIGER or PIT): histories -> codes -> beam search -> items.

Histories are encoded with one SID per item (``item_codes``: TIGER's static table, or PIT's
primary SIDs), while beams are mapped to items through the ``trie``, which may hold several SIDs per
item and several items per SID.
"""

from __future__ import annotations

import torch

from pitrec.data.batches import PAD
from pitrec.decoding.beam_search import beams_to_items
from pitrec.index.trie import Trie


class GenerativeRanker:
    """Also counts the beams whose SID names no item (``invalid_rate``): 0 by construction under
    constraints, and measured rather than assumed."""

    def __init__(self, model, item_codes: torch.Tensor, trie: Trie, beam_width: int, constrained: bool = True,
                 renormalize_last: bool = False):
        self.model, self.item_codes, self.trie = model, item_codes, trie
        self.beam_width, self.constrained, self.renormalize_last = beam_width, constrained, renormalize_last
        self.beams = 0
        self.invalid = 0

    @torch.no_grad()
    def rank(self, history: torch.Tensor, k: int, exclude_history: bool = False) -> torch.Tensor:
        memory = self.model.encode_by_length(self.item_codes[history.clamp(min=0)], history == PAD, items=history)
        result = self.model.generate(memory, max(self.beam_width, k), self.trie if self.constrained else None,
                                     renormalize_last=self.renormalize_last)
        leaves = self.trie.lookup(result.codes)
        alive = result.alive
        self.beams += int(alive.sum())
        self.invalid += int((alive & (leaves < 0)).sum())
        items, _ = beams_to_items(leaves, result.log_probs, self.trie, k, history if exclude_history else None)
        return items

    @property
    def invalid_rate(self) -> float:
        return self.invalid / max(self.beams, 1)
