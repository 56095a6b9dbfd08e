"""The Evaluator with scripted rankers (exact expected metrics), history masking, the
validation-user subset, and ``topk_from_scores``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pitrec.data.batches import PAD
from pitrec.data.interactions import Interactions
from pitrec.data.split import leave_one_out
from pitrec.eval.evaluator import Evaluator, topk_from_scores

# test histories [0,1] [3,4] [6,7] [9,0]; test targets 2, 5, 8, 1; valid targets 1, 4, 7, 0
SEQUENCES = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 0, 1]]
TEST_LISTS = {  # history -> ranked list: target at rank 0, rank 2, absent, rank 4
    (0, 1): [2, 3, 4, 5, 6],
    (3, 4): [0, 1, 5, 3, 4],
    (6, 7): [0, 1, 2, 3, 4],
    (9, 0): [2, 3, 4, 5, 1],
}


class ScriptedRanker:
    """Returns a fixed list per history, so the expected metrics can be written down."""

    def __init__(self, lists: dict[tuple[int, ...], list[int]]):
        self.lists = lists
        self.calls = 0

    def rank(self, history: torch.Tensor, k: int, exclude_history: bool = False) -> torch.Tensor:
        self.calls += 1
        rows = [self.lists[tuple(int(x) for x in row if x != PAD)][:k] for row in history]
        return torch.tensor(rows, dtype=torch.int64)


@pytest.fixture
def split():
    data = Interactions(sequences=[np.array(s) for s in SEQUENCES], user_ids=list("abcd"), item_ids=list(range(10)))
    return leave_one_out(data, max_history=5)


def test_exact_metrics_over_several_batches(split):
    ranker = ScriptedRanker(TEST_LISTS)
    out = Evaluator(split, ks=(1, 3, 5), batch_size=3).evaluate(ranker, "test")
    assert ranker.calls == 2 and out["users"] == 4
    assert out["recall@1"] == pytest.approx(1 / 4)
    assert out["recall@3"] == pytest.approx(2 / 4)
    assert out["recall@5"] == pytest.approx(3 / 4)
    assert out["ndcg@1"] == pytest.approx(1 / 4)
    assert out["ndcg@3"] == pytest.approx((1 + 0.5) / 4)
    assert out["ndcg@5"] == pytest.approx((1 + 0.5 + 1 / math.log2(6)) / 4)


def test_validation_part_uses_the_validation_targets(split):
    lists = {(0,): [1, 2, 3], (3,): [9, 8, 4], (6,): [0, 1, 2], (9,): [5, 0, 1]}
    out = Evaluator(split, ks=(1, 3)).evaluate(ScriptedRanker(lists), "valid")
    assert out["recall@1"] == pytest.approx(1 / 4) and out["recall@3"] == pytest.approx(3 / 4)
    assert out["ndcg@3"] == pytest.approx((1 + 0.5 + 1 / math.log2(3)) / 4)


def test_rejects_wrong_shapes_and_duplicate_items(split):
    with pytest.raises(ValueError, match="expected"):
        Evaluator(split, ks=(1, 3)).evaluate(ScriptedRanker({k: v[:2] for k, v in TEST_LISTS.items()}))
    dup = {**TEST_LISTS, (6, 7): [0, 0, 2, 3, 4]}
    with pytest.raises(ValueError, match="names an item twice"):
        Evaluator(split, ks=(5,)).evaluate(ScriptedRanker(dup))


def test_mask_history_rejects_a_ranker_that_returns_history(split):
    leaky = {**TEST_LISTS, (9, 0): [0, 3, 4, 5, 1]}  # item 0 is in that user's history
    with pytest.raises(ValueError, match="from the user's history"):
        Evaluator(split, ks=(5,), mask_history=True).evaluate(ScriptedRanker(leaky))
    # the same ranking is legal without masking (the default protocol)
    Evaluator(split, ks=(5,)).evaluate(ScriptedRanker(leaky))


class ScoreRanker:
    """Scores that favour exactly the history items: masking must still keep them out."""

    def __init__(self, n_items: int):
        self.n_items = n_items

    def rank(self, history: torch.Tensor, k: int, exclude_history: bool = False) -> torch.Tensor:
        scores = torch.zeros(history.shape[0], self.n_items)
        for r, row in enumerate(history):
            scores[r, row[row != PAD]] = 100.0
        return topk_from_scores(scores, k, history if exclude_history else None)


def test_score_ranker_with_masking_never_returns_history(split):
    out = Evaluator(split, ks=(1, 3), mask_history=True).evaluate(ScoreRanker(10), "test")
    assert out["users"] == 4
    history = torch.tensor([[0, 1], [3, 4], [6, 7], [9, 0]])
    topk = ScoreRanker(10).rank(history, 8, exclude_history=True)
    assert not (topk.unsqueeze(2) == history.unsqueeze(1)).any()
    assert (topk >= 0).all()


def test_valid_users_subset_is_fixed_and_exact(split):
    ranker = ScriptedRanker(TEST_LISTS)
    ev = Evaluator(split, ks=(1, 5), max_users=2, seed=3)
    first, again = ev.evaluate(ranker), ev.evaluate(ranker)
    chosen = ev.samples("test").user.tolist()
    assert len(chosen) == 2 and first == {**again, "users_per_s": first["users_per_s"]}
    assert Evaluator(split, ks=(1, 5), max_users=2, seed=3).samples("test").user.tolist() == chosen
    per_user_recall5 = {0: 1.0, 1: 1.0, 2: 0.0, 3: 1.0}
    assert first["users"] == 2
    assert first["recall@5"] == pytest.approx(np.mean([per_user_recall5[u] for u in chosen]))
    assert Evaluator(split, ks=(1, 5), max_users=10).evaluate(ranker)["users"] == 4  # larger than U: all


def test_topk_pads_when_the_catalog_is_smaller_than_k():
    scores = torch.tensor([[0.1, 0.9, 0.5]])
    assert topk_from_scores(scores, 5).tolist() == [[1, 2, 0, PAD, PAD]]
    assert topk_from_scores(scores, 5, torch.tensor([[PAD, 1]])).tolist() == [[2, 0, PAD, PAD, PAD]]


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 12), st.integers(1, 6), st.integers(1, 15), st.integers(0, 2**31 - 1))
def test_topk_from_scores_masks_history(n_items, rows, k, seed):
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.normal(size=(rows, n_items)))
    history = torch.from_numpy(rng.integers(-1, n_items, size=(rows, int(rng.integers(1, 6)))))
    topk = topk_from_scores(scores, k, history)
    assert topk.shape == (rows, k)
    for r in range(rows):
        hist = {int(x) for x in history[r] if x != PAD}
        got = [int(x) for x in topk[r]]
        items = [x for x in got if x != PAD]
        assert not hist & set(items) and len(items) == len(set(items))
        assert len(items) == min(k, n_items - len(hist))  # padding only where nothing is left
        assert got[:len(items)] == items  # padding at the end
        expected = sorted(set(range(n_items)) - hist, key=lambda i: -float(scores[r, i]))[:len(items)]
        assert items == expected
