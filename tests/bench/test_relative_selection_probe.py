"""The relative-selection probe's leave-one-out edge means, on a hand-computed fixture."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "tuning"))
from relative_selection import leave_one_out_means  # noqa: E402


def test_leave_one_out_means_exclude_the_row_itself_and_padding():
    items = np.array([1, 1, 1, 2])
    keys = np.array([[10, 20], [10, 20], [10, 30], [10, 20]])
    cost = np.array([[1.0, 5.0], [3.0, 7.0], [2.0, np.inf], [4.0, 4.0]])
    got = leave_one_out_means(items, keys, cost)
    expected = np.array([[2.5, 7.0], [1.5, 5.0], [2.0, np.nan], [np.nan, np.nan]])  # item 2: no other user
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)])
