"""Per-user metrics (what ``evaluate`` averages) and the paired comparison of two models on the
same users: hand-computed cases, and properties against SciPy's own statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pitrec.data.batches import PAD
from pitrec.data.interactions import Interactions
from pitrec.data.split import leave_one_out
from pitrec.eval.evaluator import Evaluator
from pitrec.eval.paired import paired_differences

# test histories [0,1] [3,4] [6,7] [9,0]; targets 2, 5, 8, 1 at rank 0, rank 2, absent, rank 4
SEQUENCES = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 0, 1]]
LISTS = {(0, 1): [2, 3, 4, 5, 6], (3, 4): [0, 1, 5, 3, 4], (6, 7): [0, 1, 2, 3, 4], (9, 0): [2, 3, 4, 5, 1]}


class ScriptedRanker:
    def rank(self, history: torch.Tensor, k: int, exclude_history: bool = False) -> torch.Tensor:
        return torch.tensor([LISTS[tuple(int(x) for x in row if x != PAD)][:k] for row in history])


@pytest.fixture
def split():
    data = Interactions(sequences=[np.array(s) for s in SEQUENCES], user_ids=list("abcd"), item_ids=list(range(10)))
    return leave_one_out(data, max_history=5)


def test_per_user_metrics_are_what_evaluate_averages(split):
    evaluator = Evaluator(split, ks=(3, 5), batch_size=3)
    users, per_user = evaluator.per_user(ScriptedRanker(), "test")
    assert users.tolist() == [0, 1, 2, 3]
    assert per_user["recall@3"].tolist() == [1, 1, 0, 0]
    assert per_user["ndcg@5"] == pytest.approx([1, 0.5, 0, 1 / math.log2(6)])
    means = evaluator.evaluate(ScriptedRanker(), "test")
    assert {m: float(v.mean()) for m, v in per_user.items()} == {m: means[m] for m in per_user}


def test_hand_computed_pair():
    a = {"recall@10": np.array([1.0, 0.0, 0.0, 1.0, 1.0]), "ndcg@10": np.array([1.0, 0, 0, 0.5, 0.5])}
    b = {"recall@10": np.array([1.0, 1.0, 0.0, 0.0, 1.0]), "ndcg@10": np.array([0.5, 1.0, 0, 0, 0.5])}
    recall, ndcg = paired_differences(a, b)
    assert (recall.metric, recall.mean_a, recall.mean_b, recall.difference) == ("recall@10", 0.6, 0.6, 0.0)
    assert (recall.b_better_users, recall.a_better_users, recall.users) == (1, 1, 5)
    assert ndcg.difference == pytest.approx((-0.5 + 1 - 0.5) / 5) and (ndcg.b_better_users, ndcg.a_better_users) == (1, 2)
    assert recall.p_value == pytest.approx(1.0) and recall.low <= 0 <= recall.high


def test_a_constant_shift_has_no_spread():
    a = {"ndcg@10": np.array([0.1, 0.2, 0.3])}
    same = paired_differences(a, a)[0]
    shifted = paired_differences(a, {"ndcg@10": a["ndcg@10"] + 0.25})[0]
    assert (same.difference, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert shifted.low == shifted.high == pytest.approx(0.25) and shifted.p_value == 0.0
    assert shifted.b_better_users == 3


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.5, 1.0]), st.sampled_from([0.0, 0.43, 1.0])), min_size=3, max_size=40))
def test_interval_holds_the_mean_and_swapping_the_runs_mirrors_it(pairs):
    x, y = (np.array(v) for v in zip(*pairs))
    d = y - x
    if np.ptp(d) <= 1e-12:
        return  # covered by the constant-shift case
    forward = paired_differences({"m": x}, {"m": y}, resamples=500)[0]
    backward = paired_differences({"m": y}, {"m": x}, resamples=500)[0]
    assert forward.difference == pytest.approx(d.mean())
    assert forward.low - 1e-12 <= forward.difference <= forward.high + 1e-12
    assert (backward.low, backward.high) == pytest.approx((-forward.high, -forward.low))
    assert forward.p_value == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)
    assert forward.b_better_users + forward.a_better_users == int((d != 0).sum())


def test_refuses_unpaired_input():
    with pytest.raises(ValueError, match="no metric in common"):
        paired_differences({"a": np.zeros(3)}, {"b": np.zeros(3)})
    with pytest.raises(ValueError, match="one length"):
        paired_differences({"m": np.zeros(3)}, {"m": np.zeros(4)})
    with pytest.raises(ValueError, match="at least 2 users"):
        paired_differences({"m": np.zeros(1)}, {"m": np.ones(1)})
