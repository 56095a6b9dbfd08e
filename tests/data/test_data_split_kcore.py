"""Leave-one-out split (exact slices) and k-core filtering (exact drop counts on a case with
a three-round cascade)."""

from __future__ import annotations

import numpy as np
import pytest

from pitrec.data.filtering import kcore
from pitrec.data.interactions import Interactions
from pitrec.data.split import leave_one_out


def make(seqs: list[list[int]], users=None, n_items: int | None = None) -> Interactions:
    n_items = n_items if n_items is not None else max(max(s) for s in seqs) + 1
    return Interactions(sequences=[np.array(s, dtype=np.int64) for s in seqs],
                        user_ids=users or list(range(len(seqs))),
                        item_ids=[f"i{k}" for k in range(n_items)],
                        item_text=[f"text {k}" for k in range(n_items)])


def test_leave_one_out_slices():
    split = leave_one_out(make([[0, 1, 2, 3, 4], [5, 6, 7]]), max_history=7)
    assert [s.tolist() for s in split.train] == [[0, 1, 2], [5]]
    assert [s.tolist() for s in split.valid_history] == [[0, 1, 2], [5]]
    assert split.valid_target.tolist() == [3, 6]
    assert [s.tolist() for s in split.test_history] == [[0, 1, 2, 3], [5, 6]]
    assert split.test_target.tolist() == [4, 7]
    assert split.n_users == 2 and split.n_items == 8 and split.max_history == 7
    assert split.n_train_targets() == 2
    assert split.train_item_counts().tolist() == [1, 1, 1, 0, 0, 1, 0, 0]
    assert split.part("test")[1] is split.test_target
    with pytest.raises(ValueError, match="'valid' or 'test'"):
        split.part("train")


def test_short_users_raise_with_advice():
    with pytest.raises(ValueError, match=r"1 user\(s\) have fewer than 3.*\['bob'\].*data.kcore_users=3"):
        leave_one_out(make([[0, 1, 2], [1, 2]], users=["amy", "bob"]))


def test_kcore_cascade_exact_counts():
    data = make([[0, 1, 2, 3], [0, 1, 2], [0, 4, 7], [5, 0, 1, 7], [1, 2, 6, 6]], users=list("abcde"))
    out = kcore(data, min_user=3, min_item=2)
    # round 1 drops items 3, 4, 5 -> user c is too short; round 2 drops item 7 -> user d; round 3 is stable
    assert out.user_ids == ["a", "b", "e"]
    assert out.item_ids == ["i0", "i1", "i2", "i6"]
    assert out.item_text == ["text 0", "text 1", "text 2", "text 6"]
    assert [s.tolist() for s in out.sequences] == [[0, 1, 2], [0, 1, 2], [1, 2, 3, 3]]
    assert out.dropped == {"kcore_users": 2, "kcore_items": 4, "kcore_interactions": 8}
    assert data.n_interactions == out.n_interactions + 8


def test_kcore_users_only_drops_orphaned_items_and_accumulates_counts():
    data = make([[0, 1, 2], [3, 4]])
    data.dropped = {"kcore_users": 1}
    out = kcore(data, min_user=3, min_item=0)
    assert out.user_ids == [0] and out.item_ids == ["i0", "i1", "i2"]
    assert out.dropped == {"kcore_users": 2, "kcore_items": 2, "kcore_interactions": 2}
    assert kcore(data, 0, 0) is data
