"""The tensorised trie against a plain Python reference (sets of prefixes, dict of leaves)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pitrec.index.trie import Trie


@st.composite
def sid_sets(draw):
    """Random small SID tables, duplicates (collisions) and multi-SID items included."""
    levels = draw(st.integers(1, 4))
    sizes = [draw(st.integers(1, 5)) for _ in range(levels)]
    n = draw(st.integers(1, 25))
    codes = np.array([[draw(st.integers(0, s - 1)) for s in sizes] for _ in range(n)], dtype=np.int64)
    n_items = draw(st.integers(1, 12))
    items = np.array([draw(st.integers(0, n_items - 1)) for _ in range(n)], dtype=np.int64)
    return codes, sizes, items, n_items


def _prefix_walk(trie: Trie, prefix: tuple[int, ...]) -> int:
    node = trie.root(1)
    for level, c in enumerate(prefix):
        node = trie.advance(node, level, torch.tensor([c]))
    return int(node[0])


@settings(max_examples=60, deadline=None)
@given(sid_sets())
def test_valid_mask_and_advance_match_reference(case):
    codes, sizes, items, n_items = case
    trie = Trie.build(codes, sizes, items=items, n_items=n_items)
    rows = [tuple(r) for r in codes.tolist()]
    for level in range(len(sizes)):
        prefixes = sorted({r[:level] for r in rows})
        for prefix in prefixes:
            node = _prefix_walk(trie, prefix)
            assert node >= 0
            allowed = {r[level] for r in rows if r[:level] == prefix}
            mask = trie.valid_mask(torch.tensor([node]), level)[0]
            assert set(torch.nonzero(mask).flatten().tolist()) == allowed


@settings(max_examples=60, deadline=None)
@given(sid_sets())
def test_leaves_map_to_items_one_to_many(case):
    codes, sizes, items, n_items = case
    trie = Trie.build(codes, sizes, items=items, n_items=n_items)
    expected: dict[tuple, set] = {}
    for row, item in zip(codes.tolist(), items.tolist()):
        expected.setdefault(tuple(row), set()).add(item)
    assert trie.n_leaves == len(expected)
    sids = torch.tensor(sorted(expected))
    leaves = trie.lookup(sids)
    assert (leaves >= 0).all()
    assert torch.equal(trie.leaf_codes[leaves], sids)
    flat, source = trie.items_of(leaves)
    for j, sid in enumerate(sorted(expected)):
        got = flat[source == j].tolist()
        assert got == sorted(expected[sid])  # each item once, by id


def test_shared_sid_and_item_with_several_sids():
    codes = np.array([[0, 1], [0, 1], [1, 0], [2, 2]])
    items = np.array([3, 5, 3, 0])  # items 3 and 5 share (0, 1); item 3 also owns (1, 0)
    trie = Trie.build(codes, [3, 3], items=items, n_items=6)
    leaves = trie.lookup(torch.tensor([[0, 1], [1, 0], [2, 2], [2, 1]]))
    assert leaves[3] == -1
    flat, source = trie.items_of(leaves)
    assert flat[source == 0].tolist() == [3, 5]
    assert flat[source == 1].tolist() == [3]
    assert flat[source == 2].tolist() == [0]
    assert (source == 3).sum() == 0
    assert trie.leaf_sizes(leaves).tolist() == [2, 1, 1, 0]


def test_lookup_rejects_absent_and_out_of_range_codes():
    trie = Trie.build(np.array([[0, 1], [1, 1]]), [2, 2])
    assert trie.contains(torch.tensor([[0, 1], [1, 1]])).all()
    assert not trie.contains(torch.tensor([[0, 0], [1, 0], [5, 1], [-1, 1], [1, 9]])).any()
    # a dead node (-1) allows nothing and stays dead
    assert not trie.valid_mask(torch.tensor([-1]), 1).any()
    assert trie.advance(torch.tensor([-1]), 1, torch.tensor([1])).item() == -1


def test_build_errors_name_the_problem():
    with pytest.raises(ValueError, match="row 1, level 0: code 3 outside"):
        Trie.build(np.array([[0, 0], [3, 0]]), [2, 2])
    with pytest.raises(ValueError, match="2 codebook sizes for SIDs of 3 levels"):
        Trie.build(np.zeros((2, 3), dtype=int), [2, 2])
    with pytest.raises(ValueError, match="one entry per SID row"):
        Trie.build(np.zeros((2, 2), dtype=int), [2, 2], items=np.array([0]))
    with pytest.raises(ValueError, match="non-empty"):
        Trie.build(np.zeros((0, 2), dtype=int), [2, 2])


def test_node_numbering_ignores_row_order():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(30, 3))
    a = Trie.build(codes, [4, 4, 4])
    perm = rng.permutation(30)
    b = Trie.build(codes[perm], [4, 4, 4], items=np.arange(30)[perm], n_items=30)
    for ta, tb in zip(a.children, b.children):
        assert torch.equal(ta, tb)
    assert torch.equal(a.leaf_items, b.leaf_items) and torch.equal(a.leaf_ptr, b.leaf_ptr)


def test_last_level_mask_lists_the_last_codes_after_each_prefix():
    trie = Trie.build(np.array([[0, 0, 1], [0, 0, 2], [0, 1, 0], [2, 1, 2]]), [3, 2, 3])
    got = trie.last_level_mask(torch.tensor([[0, 0, 2], [0, 1, 0], [2, 1, 0], [1, 0, 0]]))
    assert got.tolist() == [[False, True, True], [True, False, False], [False, False, True], [False, False, False]]
    with pytest.raises(ValueError, match="levels"):
        trie.last_level_mask(torch.tensor([[0, 0]]))
