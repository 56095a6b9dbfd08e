"""S3-Rec layout (the shared Amazon files): good input, and every kind of bad input named by
file, line and field."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from pitrec.data.errors import DataError
from pitrec.data.readers.s3rec import read_s3rec


def make(folder: Path, sequences: str, items: str | None = None, attributes: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "sequences.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write(sequences)
    if items is not None:
        (folder / "items.tsv").write_text(items, encoding="utf-8")
    if attributes is not None:
        (folder / "item_attributes.json").write_text(attributes, encoding="utf-8")
    return folder


def test_reads_sequences_titles_and_attributes(tmp_path):
    folder = make(tmp_path / "mini", "7 3 1 3\n2 1 2\n",
                  items="item_id\tasin\ttitle\n1\tA1\tone\n2\tA2\t\n3\tA3\tthree\n4\tA4\tunused\n",
                  attributes=json.dumps({"1": [10, 20], "3": [20]}))
    data = read_s3rec(folder)
    assert data.user_ids == [7, 2]  # file order
    assert data.item_ids == [1, 2, 3]
    assert [data.raw_items(s) for s in data.sequences] == [[3, 1, 3], [1, 2]]
    assert data.item_text == ["one", "", "three"]
    assert data.attribute_ids == [10, 20] and data.item_attributes == [[0, 1], [], [1]]
    assert data.dropped == {"items_table_without_interactions": 1}


@pytest.mark.parametrize("sequences, line, field, words", [
    ("1 2 3\nx 2 3\n", 2, "user_id", "expected an integer id, got 'x'"),
    ("1 2 3\n2 2 b3\n", 2, "item_id #2", "got 'b3'"),
    ("1 2 3\n1 4 5\n", 2, "user_id", "duplicate user 1 (first seen on line 1)"),
    ("1 2 3\n\n2 3 4\n", 2, None, "empty line"),
    ("1 2 3\n5\n", 2, "item_id", "user 5 has no items"),
    ("", None, None, "file is empty"),
])
def test_bad_sequences(tmp_path, sequences, line, field, words):
    folder = make(tmp_path / "bad", sequences)
    with pytest.raises(DataError) as exc:
        read_s3rec(folder)
    assert exc.value.path == str(folder / "sequences.txt.gz")
    assert (exc.value.line, exc.value.field) == (line, field)
    assert words in str(exc.value)


def test_items_missing_from_items_table(tmp_path):
    folder = make(tmp_path / "m", "1 1 2\n2 2 9\n", items="item_id\tasin\ttitle\n1\tA\ta\n2\tB\tb\n")
    with pytest.raises(DataError, match=r"1 item\(s\) used in sequences.txt.gz are missing.*item 9, used on line 2"):
        read_s3rec(folder)


@pytest.mark.parametrize("items, line, words", [
    ("", 1, "file is empty"),
    ("item_id\tasin\n1\tA\n", 1, "missing column 'title'"),
    ("item_id\tasin\ttitle\n1\tA\ta\n2\tB\n", 3, "expected 3 tab-separated fields, got 2"),
    ("item_id\tasin\ttitle\n1\tA\ta\n1\tB\tb\n", 3, "duplicate item 1"),
    ("item_id\tasin\ttitle\nseven\tA\ta\n", 2, "expected an integer id"),
])
def test_bad_items_table(tmp_path, items, line, words):
    folder = make(tmp_path / "i", "1 1 2\n", items=items)
    with pytest.raises(DataError) as exc:
        read_s3rec(folder)
    assert exc.value.path == str(folder / "items.tsv") and exc.value.line == line
    assert words in str(exc.value)


@pytest.mark.parametrize("attributes, words", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected an object"),
    ('{"1": ["red"]}', "must be a list of integers"),
    ('{"one": [1]}', "expected an integer id, got 'one'"),
])
def test_bad_attributes(tmp_path, attributes, words):
    folder = make(tmp_path / "a", "1 1 2\n", attributes=attributes)
    with pytest.raises(DataError, match=words):
        read_s3rec(folder)


def test_folder_without_sequences(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="sequences.txt"):
        read_s3rec(tmp_path / "empty")
