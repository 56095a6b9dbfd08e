"""CSV / Parquet interaction tables and items tables: ids keep their type, order by time, and
every bad value is reported with file, line (or Parquet row) and column."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from pitrec.config import load_config
from pitrec.data.errors import DataError
from pitrec.data.readers import detect_format, load_interactions


def load(path: Path, *overrides: str):
    return load_interactions(load_config(overrides=[f"data.path={path}", *overrides]).data)


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


ROWS = "user_id,item_id,timestamp\nb,20,5\na,10,3\na,30,1\nb,10,5\na,20,2\n"


def test_csv_groups_sorts_and_keeps_raw_ids(tmp_path):
    data = load(write_csv(tmp_path / "log.csv", ROWS))
    assert data.name == "log"
    assert data.user_ids == ["a", "b"] and data.item_ids == [10, 20, 30]
    assert [data.raw_items(s) for s in data.sequences] == [[30, 20, 10], [20, 10]]  # b's tie: file order


def test_dense_ids_do_not_depend_on_row_order(tmp_path):
    lines = ROWS.splitlines()
    shuffled = "\n".join([lines[0], *reversed(lines[1:])]) + "\n"
    a = load(write_csv(tmp_path / "a.csv", ROWS))
    b = load(write_csv(tmp_path / "b.csv", shuffled))
    assert a.item_ids == b.item_ids and a.user_ids == b.user_ids


def test_exact_duplicate_rows_are_kept(tmp_path):
    data = load(write_csv(tmp_path / "d.csv", "user_id,item_id,timestamp\n1,5,1\n1,5,1\n1,6,2\n"))
    assert data.n_interactions == 3 and data.raw_items(data.sequences[0]) == [5, 5, 6]


def test_iso_dates_custom_columns_and_tsv_gz(tmp_path):
    path = tmp_path / "events.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("who\twhat\twhen\n7\tx\t2024-03-02T10:00:00\n7\ty\t2024-03-01\n7\tz\t2024-03-02T09:00:00Z\n")
    data = load(path, "data.user_col=who", "data.item_col=what", "data.time_col=when")
    assert data.user_ids == [7]
    assert data.raw_items(data.sequences[0]) == ["y", "z", "x"]


def test_parquet_keeps_column_types_and_reads_a_folder(tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    pd.DataFrame({"user_id": [1, 1], "item_id": ["012", "b"],
                  "timestamp": pd.to_datetime(["2024-01-02", "2024-01-01"])}).to_parquet(folder / "part-0.parquet")
    pd.DataFrame({"user_id": [2, 1], "item_id": ["b", "c"],
                  "timestamp": pd.to_datetime(["2024-01-01", "2024-01-03"])}).to_parquet(folder / "part-1.parquet")
    assert detect_format(folder) == "parquet"
    data = load(folder)
    assert data.name == "pq" and data.user_ids == [1, 2] and data.item_ids == ["012", "b", "c"]
    assert [data.raw_items(s) for s in data.sequences] == [["b", "012", "c"], ["b"]]


def test_items_table_in_folder_with_text_and_attribute_lists(tmp_path):
    folder = tmp_path / "shop"
    write_csv(folder / "interactions.csv", "user_id,item_id,timestamp\nu,1,1\nu,2,2\nu,3,3\n")
    pd.DataFrame({"item_id": [3, 2, 1, 9], "title": ["three", None, "one", "unused"],
                  "attributes": [["red", "big"], [], ["red"], ["x"]]}).to_parquet(folder / "items.parquet")
    assert detect_format(folder) == "csv"  # the items table does not make the folder ambiguous
    data = load(folder)
    assert data.item_text == ["one", "", "three"]
    assert [[data.attribute_ids[a] for a in attrs] for attrs in data.item_attributes] == [["red"], [], ["red", "big"]]
    assert data.dropped == {"items_table_without_interactions": 1}


def test_items_file_option_with_pipe_separated_attributes(tmp_path):
    inter = write_csv(tmp_path / "i.csv", "user_id,item_id,timestamp\nu,a,1\nu,b,2\nu,a,3\n")
    items = write_csv(tmp_path / "meta" / "catalog.csv", "item_id,text,attributes\na,apple,3|17\nb,banana,\n")
    data = load(inter, f"data.items_file={items}")
    assert data.item_text == ["apple", "banana"]
    assert data.attribute_ids == [3, 17]  # integer tokens become ints
    assert data.item_attributes == [[0, 1], []]


@pytest.mark.parametrize("text, line, field, words", [
    ("user_id,item_id,timestamp\n1,2,3\n1,2\n", 3, None, "expected 3 comma-separated fields"),
    ("user_id,item_id,timestamp\n1,2,3\n1,2,3,4\n", 3, None, "got 4"),
    ("user_id,item_id,timestamp\n1,2,3\n,2,4\n", 3, "user_id", "missing user id"),
    ("user_id,item_id,timestamp\n1,2,3\n1,NaN,4\n", 3, "item_id", "missing item id"),
    ("user_id,item_id,timestamp\n1,2,3\n1,4,5\n1,5,soon\n", 4, "timestamp", "unparseable timestamp 'soon'"),
    ("user_id,item_id,timestamp\n1,2,2024-01-01\n1,4,not a date\n", 3, "timestamp", "ISO-8601"),
    ("user_id,item_id,ts\n1,2,3\n", 1, "timestamp", "missing column 'timestamp'"),
    ("", 1, None, "file is empty"),
])
def test_bad_csv_names_file_line_and_field(tmp_path, text, line, field, words):
    path = write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(DataError) as exc:
        load(path)
    assert (exc.value.path, exc.value.line, exc.value.field) == (str(path), line, field)
    assert words in str(exc.value)


def test_header_only_csv_has_no_interactions(tmp_path):
    with pytest.raises(DataError, match="no interactions"):
        load(write_csv(tmp_path / "h.csv", "user_id,item_id,timestamp\n"))


def test_parquet_nan_id_reports_the_row(tmp_path):
    path = tmp_path / "n.parquet"
    pd.DataFrame({"user_id": [1.0, 2.0, float("nan")], "item_id": [1, 2, 3], "timestamp": [1, 2, 3]}).to_parquet(path)
    with pytest.raises(DataError, match=r"n\.parquet row 3: field 'user_id': missing user id") as exc:
        load(path)
    assert exc.value.row == 3 and exc.value.line is None


def test_parquet_integral_float_ids_become_ints(tmp_path):
    path = tmp_path / "f.parquet"
    pd.DataFrame({"user_id": [1.0, 1.0, 1.0], "item_id": [5, 6, 7], "timestamp": [3.5, 1.5, 2.5]}).to_parquet(path)
    data = load(path)
    assert data.user_ids == [1] and data.raw_items(data.sequences[0]) == [6, 7, 5]


def test_items_missing_from_items_table(tmp_path):
    inter = write_csv(tmp_path / "i.csv", "user_id,item_id,timestamp\nu,a,1\nu,b,2\nu,c,3\n")
    items = write_csv(tmp_path / "t.csv", "item_id,title\na,apple\nb,banana\n")
    with pytest.raises(DataError, match=r"item 'c', used at line 4 of .*i\.csv") as exc:
        load(inter, f"data.items_file={items}")
    assert exc.value.path == str(items)


def test_duplicate_items_and_missing_text_columns_in_items_table(tmp_path):
    inter = write_csv(tmp_path / "i.csv", "user_id,item_id,timestamp\nu,a,1\n")
    dup = write_csv(tmp_path / "dup.csv", "item_id,title\na,x\nb,y\na,z\n")
    with pytest.raises(DataError, match="duplicate item 'a' .first at line 2") as exc:
        load(inter, f"data.items_file={dup}")
    assert exc.value.line == 4
    bare = write_csv(tmp_path / "bare.csv", "item_id,price\na,1\n")
    with pytest.raises(DataError, match="needs a 'text' .or 'title'. or an 'attributes' column"):
        load(inter, f"data.items_file={bare}")
    with pytest.raises(DataError, match="items table not found"):
        load(inter, f"data.items_file={tmp_path / 'nope.csv'}")


def test_folder_with_csv_and_parquet_interactions_is_ambiguous(tmp_path):
    write_csv(tmp_path / "a.csv", ROWS)
    pd.read_csv(tmp_path / "a.csv").to_parquet(tmp_path / "b.parquet")
    with pytest.raises(DataError, match="both CSV and Parquet"):
        load(tmp_path)
    assert load(tmp_path, "data.format=parquet").n_interactions == 5
