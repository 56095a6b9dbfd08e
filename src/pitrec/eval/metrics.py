"""Recall@K and NDCG@K from ranked item ids.

Hits are counted on item ids: a model that returns SIDs must map them back to items first, and a
ranked list may not name an item twice (a collision counted twice would inflate the metrics), so
duplicates are an error here rather than something to average over.

With one relevant item per user (leave-one-out), Recall@K is the hit rate and
NDCG@K = 1 / log2(rank + 2) for a hit at 0-based ``rank`` < K, else 0 (the ideal DCG is 1).
"""

from __future__ import annotations

from typing import Iterable

import torch


def hit_rank(topk: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0-based position of ``target`` in each row of ``topk`` (B, K); K where absent.
    ``topk`` may hold -1 as padding (fewer than K items); -1 never matches a target."""
    if topk.dim() != 2 or target.dim() != 1 or topk.shape[0] != target.shape[0]:
        raise ValueError(f"topk must be (B, K) and target (B,), got {tuple(topk.shape)} and {tuple(target.shape)}")
    hits = topk == target.unsqueeze(1)
    k = topk.shape[1]
    first = torch.where(hits.any(1), hits.float().argmax(1), torch.full_like(target, k))
    return first


def check_distinct(topk: torch.Tensor) -> None:
    s, _ = topk.sort(dim=1)
    dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
    if dup.any():
        row = int(dup.any(1).nonzero()[0])
        raise ValueError(f"ranked list of row {row} names an item twice: {topk[row].tolist()}")


def rank_metrics(topk: torch.Tensor, target: torch.Tensor, ks: Iterable[int]) -> dict[str, torch.Tensor]:
    """Per-user metrics: {'recall@K': (B,), 'ndcg@K': (B,)} for each K (<= topk width)."""
    rank = hit_rank(topk, target).to(torch.float64)  # validates the shapes first
    check_distinct(topk)
    out = {}
    for k in ks:
        if k > topk.shape[1]:
            raise ValueError(f"K={k} exceeds the {topk.shape[1]} ranked items returned")
        hit = (rank < k).to(torch.float64)
        out[f"recall@{k}"] = hit
        out[f"ndcg@{k}"] = hit / torch.log2(rank + 2.0)
    return out
