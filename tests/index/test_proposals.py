"""I2T proposals merged into the index must keep every SID naming one item."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from pitrec.index.proposals import unique_proposals

EDGE_ITEMS = np.array([0, 1, 2])
EDGE_CODES = np.array([[1, 1, 0], [1, 1, 1], [2, 0, 0]])


def test_a_colliding_proposal_gets_the_first_free_last_token():
    codes = np.array([[[1, 1, 0]]])  # item 3 proposes item 0's SID
    out, alive, counts = unique_proposals(EDGE_ITEMS, EDGE_CODES, np.array([3]), codes, np.zeros((1, 1)),
                                          np.ones((1, 1), bool), free_last_level=True, last_level_size=4)
    assert alive[0, 0] and out[0, 0].tolist() == [1, 1, 2]  # 0 and 1 are taken under prefix (1, 1)
    assert counts["reassigned_share"] == 1.0


def test_own_sids_are_kept_and_a_full_prefix_drops_the_proposal():
    codes = np.array([[[2, 0, 0]], [[1, 1, 0]]])
    out, alive, _ = unique_proposals(EDGE_ITEMS, EDGE_CODES, np.array([2, 3]), codes, np.zeros((2, 1)),
                                     np.ones((2, 1), bool), free_last_level=True, last_level_size=2)
    assert alive[0, 0] and out[0, 0].tolist() == [2, 0, 0]  # item 2 already holds it
    assert not alive[1, 0]  # prefix (1, 1) has no free token among 2


def test_without_a_disambiguation_level_collisions_are_dropped():
    codes = np.array([[[1, 1, 1]]])
    _, alive, counts = unique_proposals(EDGE_ITEMS, EDGE_CODES, np.array([4]), codes, np.zeros((1, 1)),
                                        np.ones((1, 1), bool), free_last_level=False, last_level_size=4)
    assert not alive[0, 0] and counts["dropped_share"] == 1.0


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_after_merging_no_sid_names_two_items(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 10_000)))
    n_items, C, size = 12, 3, 3
    codes = rng.integers(0, size, size=(n_items, C, 3))
    scores = rng.normal(size=(n_items, C))
    alive = rng.random((n_items, C)) < 0.8
    base = np.array([[i // 4, i % 4 // 2, i % 2] for i in range(n_items)])  # unique warm-up SIDs
    out, ok, _ = unique_proposals(np.arange(n_items), base, np.arange(n_items), codes, scores, alive,
                                  free_last_level=data.draw(st.booleans()), last_level_size=size)
    owner: dict[tuple, int] = {tuple(c): i for i, c in enumerate(base.tolist())}
    for i in range(n_items):
        for c in range(C):
            if ok[i, c]:
                key = tuple(out[i, c].tolist())
                assert owner.setdefault(key, i) == i
    assert not (ok & ~alive).any()  # nothing dead is revived
