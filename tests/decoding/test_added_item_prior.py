"""Items added after training (cold start) carry a prior, ``pit.added_item_weight``, on their score:
Item-to-Token places unseen content on popular trained items' SIDs, and without it an added item
ties with or outranks the trained item whose SID it shares for every user."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pitrec.decoding.aggregate import aggregate_beams
from pitrec.index.trie import Trie
from pitrec.serve.engines.pit import added_item_prior

SIZES = [2, 2]


def _trie() -> Trie:
    """Item 0 on SID (0,0); item 1 on (0,1); item 2 (the added one) shares (0,0) with item 0."""
    return Trie.build(np.array([[0, 0], [0, 1], [0, 0]]), SIZES, items=np.array([0, 1, 2]), n_items=3)


@pytest.mark.parametrize("rule", ["max", "sum", "weighted"])
def test_the_prior_shifts_an_items_score_by_its_log_and_reorders_the_ranking(rule):
    trie = _trie()
    leaves = trie.lookup(torch.tensor([[0, 0], [0, 1]])).unsqueeze(0)  # one user, two beams
    log_probs = torch.tensor([[math.log(0.6), math.log(0.4)]])
    edge_log_q = torch.zeros(len(trie.leaf_items))  # one SID per item: q = 1
    items, scores = aggregate_beams(leaves, log_probs, trie, 3, rule, edge_log_q)
    # the added item ties with item 0 on their shared SID (ties go by item id)
    assert items.tolist() == [[0, 2, 1]]
    assert scores[0, 0] == scores[0, 1] == pytest.approx(math.log(0.6))
    prior = torch.tensor([0.0, 0.0, math.log(0.5)])
    items, scores = aggregate_beams(leaves, log_probs, trie, 3, rule, edge_log_q, item_log_prior=prior)
    assert items.tolist() == [[0, 1, 2]]  # 0.6 * 0.5 = 0.3 < 0.4: the added item drops below item 1
    assert scores[0].tolist() == pytest.approx([math.log(0.6), math.log(0.4), math.log(0.3)])


def test_a_prior_of_the_wrong_shape_is_refused():
    trie = _trie()
    leaves = trie.lookup(torch.tensor([[0, 0]])).unsqueeze(0)
    with pytest.raises(ValueError, match="one value per item"):
        aggregate_beams(leaves, torch.zeros(1, 1), trie, 2, "max", item_log_prior=torch.zeros(2))


def test_only_items_added_since_training_get_the_prior():
    assert added_item_prior(5, 5, 0.5, "cpu") is None  # nothing added
    assert added_item_prior(7, 5, 1.0, "cpu") is None  # weight 1 changes nothing
    assert added_item_prior(7, 5, 0.25, "cpu").tolist() == pytest.approx([0] * 5 + [math.log(0.25)] * 2)
