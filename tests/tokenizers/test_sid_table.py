"""SidTable: validation, statistics, JSON/Parquet round trips, clear load errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pitrec.data.errors import DataError
from pitrec.tokenizers.sid_table import SidTable


def small_table() -> SidTable:
    codes = np.array([[0, 1], [0, 1], [1, 0], [2, 3]])
    return SidTable(codes, [3, 4], {"tokenizer": "hand", "nested": {"a": [1, 2]}}, item_ids=[5, 6, 7, 8])


def test_codes_out_of_range_are_rejected():
    with pytest.raises(ValueError, match="item 1 level 0: code 3 outside"):
        SidTable(np.array([[0, 0], [3, 0]]), [3, 4])
    with pytest.raises(ValueError, match="3 item ids for 2 rows"):
        SidTable(np.zeros((2, 1)), [1], item_ids=[1, 2, 3])


def test_stats_counts_collisions_usage_and_entropy():
    s = small_table().stats()
    assert s["distinct_sids"] == 3 and s["items_in_collisions"] == 2 and s["max_collision_group"] == 2
    assert s["collision_rate"] == pytest.approx(0.25)
    assert s["distinct_prefixes"] == [3, 3]
    level0 = s["levels"][0]
    assert level0["used_codes"] == 3 and level0["usage"] == 1.0
    assert level0["entropy_bits"] == pytest.approx(1.5)  # counts 2,1,1 of 4
    assert s["levels"][1]["used_codes"] == 3 and s["levels"][1]["usage"] == pytest.approx(0.75)
    assert small_table().token_offsets() == [0, 3]


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_save_load_round_trip_is_exact(tmp_path, suffix):
    table = small_table()
    path = table.save(tmp_path / f"t{suffix}")
    back = SidTable.load(path)
    np.testing.assert_array_equal(back.codes, table.codes)
    assert back.codes.dtype == np.int64
    assert back.codebook_sizes == table.codebook_sizes and back.meta == table.meta and back.item_ids == table.item_ids
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary behind


def test_load_errors_name_the_file_and_field(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"0": ["<a_1>"]}))
    with pytest.raises(DataError, match=r"other.json: field 'format'.*sids import"):
        SidTable.load(other)
    ragged = tmp_path / "ragged.json"
    ragged.write_text(json.dumps({"format": "pitrec.sid_table", "version": 1, "codebook_sizes": [4, 4],
                                  "codes": [[0, 1], [2]]}))
    with pytest.raises(DataError, match="row 1 has 1 codes, expected 2"):
        SidTable.load(ragged)
    out_of_range = tmp_path / "range.json"
    out_of_range.write_text(json.dumps({"format": "pitrec.sid_table", "version": 1, "codebook_sizes": [2],
                                        "codes": [[0], [5]]}))
    with pytest.raises(DataError, match="item 1 level 0: code 5 outside"):
        SidTable.load(out_of_range)
    with pytest.raises(DataError, match="no such SID table"):
        SidTable.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="must end in .json or .parquet"):
        small_table().save(tmp_path / "t.json.gz")


def test_check_catalog_catches_another_catalogue():
    table = small_table()
    table.check_catalog([5, 6, 7, 8])
    table.check_catalog(["5", "6", "7", "8"])  # ids that went through JSON as strings still match
    with pytest.raises(ValueError, match="row 1 is item 6 but dense item 1 of the catalogue is 9"):
        table.check_catalog([5, 9, 7, 8])
    with pytest.raises(ValueError, match="4 rows but the catalogue has 3"):
        table.check_catalog([5, 6, 7])
