"""Recall/NDCG@K: exact values on hand-computed rankings, and the properties any correct
implementation has (checked with hypothesis on random rankings)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pitrec.eval.metrics import hit_rank, rank_metrics


def test_exact_values_for_hits_at_rank_0_2_4_and_absent():
    topk = torch.tensor([[7, 1, 2, 3, 4],
                         [1, 2, 7, 3, 4],
                         [1, 2, 3, 4, 7],
                         [1, 2, 3, 4, 5],
                         [1, 2, -1, -1, -1]])
    target = torch.tensor([7, 7, 7, 7, 7])
    assert hit_rank(topk, target).tolist() == [0, 2, 4, 5, 5]
    m = rank_metrics(topk, target, ks=[1, 3, 5])
    assert m["recall@1"].tolist() == [1, 0, 0, 0, 0]
    assert m["recall@3"].tolist() == [1, 1, 0, 0, 0]
    assert m["recall@5"].tolist() == [1, 1, 1, 0, 0]
    assert m["ndcg@1"].tolist() == [1, 0, 0, 0, 0]
    assert m["ndcg@3"].tolist() == pytest.approx([1.0, 0.5, 0, 0, 0])
    assert m["ndcg@5"].tolist() == pytest.approx([1.0, 0.5, 1 / math.log2(6), 0, 0])


def test_duplicates_raise_but_repeated_padding_is_allowed():
    with pytest.raises(ValueError, match="row 1 names an item twice"):
        rank_metrics(torch.tensor([[1, 2, 3], [4, 5, 4]]), torch.tensor([1, 4]), ks=[3])
    m = rank_metrics(torch.tensor([[3, -1, -1]]), torch.tensor([3]), ks=[3])
    assert m["recall@3"].item() == 1


def test_k_wider_than_the_ranking_and_bad_shapes_raise():
    with pytest.raises(ValueError, match="K=5 exceeds"):
        rank_metrics(torch.tensor([[1, 2, 3]]), torch.tensor([1]), ks=[5])
    with pytest.raises(ValueError, match="topk must be"):
        rank_metrics(torch.tensor([1, 2, 3]), torch.tensor([1]), ks=[1])


@st.composite
def rankings(draw):
    """Distinct ranked lists (with optional -1 padding at the end) and a target per row."""
    n_items = draw(st.integers(2, 30))
    width = draw(st.integers(1, 12))
    rows = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    topk = np.full((rows, width), -1, dtype=np.int64)
    for r in range(rows):
        filled = int(rng.integers(0, min(width, n_items) + 1))
        topk[r, :filled] = rng.choice(n_items, size=filled, replace=False)
    target = rng.integers(0, n_items, size=rows)
    return torch.from_numpy(topk), torch.from_numpy(target)


@settings(max_examples=150, deadline=None)
@given(rankings())
def test_metric_properties(data):
    topk, target = data
    ks = list(range(1, topk.shape[1] + 1))
    m = rank_metrics(topk, target, ks)
    for k in ks:
        r, n = m[f"recall@{k}"], m[f"ndcg@{k}"]
        assert ((r >= 0) & (r <= 1)).all() and ((n >= 0) & (n <= 1)).all()
        assert (n <= r + 1e-12).all()
        if k > 1:
            assert (r >= m[f"recall@{k - 1}"]).all() and (n >= m[f"ndcg@{k - 1}"]).all()
    # recall@K equals "the target is among the first K" computed the slow way
    for row in range(topk.shape[0]):
        for k in ks:
            assert m[f"recall@{k}"][row].item() == float(int(target[row]) in topk[row, :k].tolist())


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 10), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_a_perfect_ranking_scores_one(width, rows, seed):
    rng = np.random.default_rng(seed)
    target = torch.from_numpy(rng.integers(0, 100, size=rows))
    rest = torch.arange(100, 100 + width - 1).repeat(rows, 1)
    m = rank_metrics(torch.cat([target.unsqueeze(1), rest], dim=1), target, range(1, width + 1))
    assert all(bool((v == 1).all()) for v in m.values())


@settings(max_examples=50, deadline=None)
@given(rankings(), st.data())
def test_any_duplicate_raises(data, draw):
    topk, target = data
    row = draw.draw(st.integers(0, topk.shape[0] - 1))
    filled = int((topk[row] >= 0).sum())
    if filled == 0 or topk.shape[1] < 2:
        topk = torch.cat([torch.zeros(topk.shape[0], 2, dtype=torch.int64), topk], dim=1)
        topk[row, 1] = 0
    else:
        src = draw.draw(st.integers(0, filled - 1))
        dst = draw.draw(st.integers(0, topk.shape[1] - 1).filter(lambda d: d != src))
        topk = topk.clone()
        topk[row, dst] = topk[row, src]
    with pytest.raises(ValueError, match="names an item twice"):
        rank_metrics(topk, target, [1])
