"""Item scores from beams when items own several SIDs (PIT's one-to-many index).

Beam search ranks SIDs; users want items. When an item is reached through several beams, its
score has to combine them, and the rule matters (it is measured, see the PIT benchmark notes):

- ``max``: the item's best SID decides (what ``beams_to_items`` does);
- ``sum``: log-sum-exp over the item's beams, i.e. P(item | u) = sum over its SIDs of P(SID | u);
- ``weighted``: log-sum-exp of log P(SID | u) + log q(SID | item), where q is the item's SID
  distribution from the index's edge weights (normalised per item), so a SID the item was seldom
  selected with contributes little.

When a leaf names several items (a shared SID), each gets the beam's score (plus its own log q
under ``weighted``), and ties are broken by item id.

``item_log_prior`` (one value per item, under any rule) is added to an item's aggregated score:
the service gives items added after training ``log pit.added_item_weight`` there, because
Item-to-Token places unseen content on the SIDs of popular trained items and an added item would
otherwise tie with or outrank them for every user (measured: ``benchmarks/cold_start.py``).
``added_log_prior`` = (first added item, (B, n_added) table) adds a per-user term to the items
from the first added one on: the service's ``pit.new_item_text_affinity``, which tells the users
whose recent items read like a new item from those whose do not.
"""

from __future__ import annotations

from typing import Literal

import torch

from pitrec.data.batches import PAD
from pitrec.index.trie import Trie

Aggregation = Literal["max", "sum", "weighted"]


def aggregate_beams(leaves: torch.Tensor, log_probs: torch.Tensor, trie: Trie, k: int, rule: Aggregation = "sum",
                    edge_log_q: torch.Tensor | None = None, exclude: torch.Tensor | None = None,
                    item_log_prior: torch.Tensor | None = None,
                    added_log_prior: tuple[int, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Beams (B, W) -> the top ``k`` distinct items per user (B, k) and their scores, -1 / -inf
    padded. ``edge_log_q`` (aligned with ``trie.leaf_items``) is required for ``weighted``."""
    if rule not in ("max", "sum", "weighted"):
        raise ValueError(f"unknown aggregation rule {rule!r}; use max, sum or weighted")
    if rule == "weighted" and (edge_log_q is None or edge_log_q.shape != trie.leaf_items.shape):
        raise ValueError("aggregation 'weighted' needs edge_log_q aligned with trie.leaf_items")
    if item_log_prior is not None and item_log_prior.shape != (trie.n_items,):
        raise ValueError(f"item_log_prior must have one value per item ({trie.n_items}), got {tuple(item_log_prior.shape)}")
    B, W = leaves.shape
    if added_log_prior is not None and added_log_prior[1].shape != (B, trie.n_items - added_log_prior[0]):
        raise ValueError(f"added_log_prior's table must be (users, added items) = {(B, trie.n_items - added_log_prior[0])}, "
                         f"got {tuple(added_log_prior[1].shape)}")
    live = torch.where(torch.isfinite(log_probs), leaves, torch.full_like(leaves, -1)).reshape(-1)
    items, source = trie.items_of(live)
    row = torch.div(source, W, rounding_mode="floor")
    score = log_probs.reshape(-1)[source]
    if rule == "weighted":
        sizes = trie.leaf_sizes(live)
        start = torch.cumsum(sizes, 0) - sizes
        within = torch.arange(len(source), device=source.device) - start[source]
        score = score + edge_log_q[trie.leaf_ptr[live[source]] + within]
    key = row * trie.n_items + items
    if exclude is not None and len(key):
        ex_rows = torch.arange(B, device=exclude.device).unsqueeze(1).expand_as(exclude)
        valid = exclude != PAD
        keep = ~torch.isin(key, ex_rows[valid] * trie.n_items + exclude[valid])
        key, score, row, items = key[keep], score[keep], row[keep], items[keep]
    out_items = torch.full((B, k), -1, dtype=torch.long, device=leaves.device)
    out_scores = torch.full((B, k), float("-inf"), dtype=log_probs.dtype, device=leaves.device)
    if not len(key):
        return out_items, out_scores
    uniq, group = torch.unique(key, return_inverse=True)
    best = torch.full((len(uniq),), float("-inf"), dtype=score.dtype, device=score.device)
    best = best.scatter_reduce(0, group, score, reduce="amax")
    if rule == "max":
        agg = best
    else:  # log-sum-exp per (user, item), stabilised by the group's maximum
        total = torch.zeros_like(best).index_add_(0, group, torch.exp(score - best[group]))
        agg = best + torch.log(total)
    g_row = torch.div(uniq, trie.n_items, rounding_mode="floor")
    g_item = uniq % trie.n_items
    if item_log_prior is not None:
        agg = agg + item_log_prior[g_item].to(agg.dtype)
    if added_log_prior is not None:
        first, table = added_log_prior
        added = g_item >= first
        agg[added] += table[g_row[added], g_item[added] - first].to(agg.dtype)
    # order: by user, then score descending, then item id ascending (uniq is sorted by item)
    order = torch.sort(-agg, stable=True).indices
    order = order[torch.sort(g_row[order], stable=True).indices]
    g_row, g_item, agg = g_row[order], g_item[order], agg[order]
    counts = torch.bincount(g_row, minlength=B)
    rank = torch.arange(len(g_row), device=g_row.device) - (torch.cumsum(counts, 0) - counts)[g_row]
    take = rank < k
    out_items[g_row[take], rank[take]] = g_item[take]
    out_scores[g_row[take], rank[take]] = agg[take]
    return out_items, out_scores
