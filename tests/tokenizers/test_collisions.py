"""Collision policies: extra_level makes every SID unique; keep and error do what they say."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pitrec.tokenizers.collisions import apply_collision_policy, disambiguation_suffix
from pitrec.tokenizers.sid_table import SidTable


def colliding() -> SidTable:
    return SidTable(np.array([[1, 1], [0, 2], [1, 1], [1, 1], [0, 2], [3, 0]]), [4, 4], {"tokenizer": "t"})


def test_extra_level_numbers_each_group_in_item_order():
    table = apply_collision_policy(colliding(), "extra_level")
    assert table.codes[:, 2].tolist() == [0, 0, 1, 2, 1, 0]
    assert table.codebook_sizes == [4, 4, 3] and table.is_unique()
    before = table.stats()["before_policy"]
    assert before["distinct_sids"] == 3 and before["max_collision_group"] == 3 and before["items_in_collisions"] == 5
    np.testing.assert_array_equal(table.codes[:, :2], colliding().codes)  # semantic levels untouched


def test_extra_level_is_appended_even_without_collisions():
    table = apply_collision_policy(SidTable(np.array([[0], [1]]), [2]), "extra_level")
    assert table.codebook_sizes == [2, 1] and table.codes[:, 1].tolist() == [0, 0]


def test_keep_and_error():
    kept = apply_collision_policy(colliding(), "keep")
    assert not kept.is_unique() and kept.meta["collision_policy"] == "keep"
    with pytest.raises(ValueError, match="3 item\\(s\\) share a SID.*largest group 3"):
        apply_collision_policy(colliding(), "error")
    assert apply_collision_policy(SidTable(np.array([[0], [1]]), [2]), "error").n_levels == 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=40))
def test_suffix_makes_any_table_unique(rows):
    codes = np.array(rows)
    suffix = disambiguation_suffix(codes)
    full = np.concatenate([codes, suffix[:, None]], axis=1)
    assert len(np.unique(full, axis=0)) == len(rows)
    _, counts = np.unique(codes, axis=0, return_counts=True)
    assert suffix.max() + 1 == counts.max()
