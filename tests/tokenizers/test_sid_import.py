"""Importing external SID tables: key mapping, strict errors, and LETTER's released Beauty table."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from pitrec.data.errors import DataError
from pitrec.data.interactions import Interactions
from pitrec.tokenizers.collisions import apply_collision_policy
from pitrec.tokenizers.importer import import_table


@pytest.fixture()
def catalogue() -> Interactions:
    return Interactions(sequences=[np.array([0, 1, 2])], user_ids=[1], item_ids=[1, 2, 3])


def write(tmp_path, obj, name="ids.json.gz"):
    path = tmp_path / name
    with (gzip.open(path, "wt") if name.endswith(".gz") else open(path, "w")) as fh:
        json.dump(obj, fh)
    return path


def test_letter_style_tokens_map_through_the_key_offset(tmp_path, catalogue):
    # keys are 0-based (raw item id - 1), listed out of order
    path = write(tmp_path, {"2": ["<a_1>", "<b_0>"], "0": ["<a_3>", "<b_2>"], "1": ["<a_1>", "<b_0>"]})
    table = import_table(path, catalogue, key_offset=1)
    assert table.codes.tolist() == [[3, 2], [1, 0], [1, 0]]
    assert table.codebook_sizes == [4, 3] and table.item_ids == [1, 2, 3]
    assert table.meta["tokenizer"] == "import" and table.meta["import_key_offset"] == 1
    unique = apply_collision_policy(table, "extra_level")
    assert unique.is_unique() and unique.stats()["before_policy"]["distinct_sids"] == 2


def test_integer_codes_and_raw_keys(tmp_path, catalogue):
    path = write(tmp_path, {"1": [0, 5], "2": [1, 5], "3": [2, 4]}, name="ids.json")
    assert import_table(path, catalogue, key_offset=0).codes.tolist() == [[0, 5], [1, 5], [2, 4]]


@pytest.mark.parametrize("obj, message", [
    ({"0": ["<a_1>"], "1": ["<a_1>"], "7": ["<a_2>"], "2": ["<a_0>"]}, r"1 key\(s\) match no item.*\['7'\]"),
    ({"0": ["<a_1>"], "1": ["<a_1>"]}, r"1 catalogue item\(s\) have no SID.*\[3\].*keys like '2'"),
    ({"0": ["<a_1>", "<b_1>"], "1": ["<a_1>"], "2": ["<a_0>", "<b_0>"]}, "key '1' has 1 codes, the first key has 2"),
    ({"0": ["<a_1>"], "1": ["<b_1>"], "2": ["<a_0>"]}, "key '1' has level prefixes"),
    ({"0": ["<a_x>"], "1": ["<a_1>"], "2": ["<a_0>"]}, r"key '0': code '<a_x>' is neither"),
    ({"0": [], "1": ["<a_1>"], "2": ["<a_0>"]}, "value of key '0' must be a non-empty list"),
])
def test_bad_tables_fail_naming_the_problem(tmp_path, catalogue, obj, message):
    with pytest.raises(DataError, match=message):
        import_table(write(tmp_path, obj), catalogue, key_offset=1)


def test_a_pitrec_table_is_checked_against_the_catalogue(tmp_path, catalogue):
    from pitrec.tokenizers.sid_table import SidTable

    path = SidTable(np.array([[0], [1], [2]]), [3], item_ids=[1, 2, 4]).save(tmp_path / "t.json")
    with pytest.raises(DataError, match="row 2 is item 4 but dense item 2 of the catalogue is 3"):
        import_table(path, catalogue)
    good = SidTable(np.array([[0], [1], [2]]), [3], item_ids=[1, 2, 3]).save(tmp_path / "g.parquet")
    assert import_table(good, catalogue).codes[:, 0].tolist() == [0, 1, 2]


def test_letter_beauty_table(shared_data):
    from pitrec.data.readers.s3rec import read_s3rec

    beauty = read_s3rec(shared_data / "beauty")
    raw = import_table(shared_data / "beauty" / "letter_semantic_ids.json.gz", beauty, key_offset=1)
    assert raw.codes.shape == (12101, 4) and raw.codebook_sizes == [256, 256, 256, 256]
    assert len(np.unique(raw.codes, axis=0)) == 12088
    kept = apply_collision_policy(raw, "keep")
    assert kept.stats()["distinct_sids"] == 12088
    unique = apply_collision_policy(raw, "extra_level")
    assert unique.is_unique() and unique.n_levels == 5
    assert unique.stats()["before_policy"]["distinct_sids"] == 12088
