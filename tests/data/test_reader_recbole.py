"""RecBole atomic files: typed headers, timestamp order, the .item file, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from pitrec.config import load_config
from pitrec.data.errors import DataError
from pitrec.data.readers import detect_format, load_interactions

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path, *overrides: str):
    return load_interactions(load_config(overrides=[f"data.path={path}", *overrides]).data)


def test_orders_by_timestamp_with_ties_in_file_order(tmp_path):
    write(tmp_path / "shop", "shop.inter", HEADER + "u1\t10\t5\t300\n"
                                                    "u1\t11\t4\t100\n"
                                                    "u1\t12\t3\t100\n"
                                                    "u2\t12\t1\t6\n"
                                                    "u2\t10\t1\t5\n")
    data = load(tmp_path / "shop")
    assert detect_format(tmp_path / "shop") == "recbole"
    assert data.name == "shop"
    assert data.user_ids == ["u1", "u2"]  # string ids stay strings
    assert data.item_ids == [10, 11, 12]  # canonical integer tokens become ints
    assert [data.raw_items(s) for s in data.sequences] == [[11, 12, 10], [10, 12]]
    assert data.item_text is None and data.item_attributes is None


def test_extra_columns_any_order_and_inter_file_path(tmp_path):
    inter = write(tmp_path, "x.inter", "timestamp:float\tlabel:token\titem_id:token\tuser_id:token\n"
                                       "2\ta\t007\t1\n1\tb\t8\t1\n3\tc\t9\t1\n")
    data = load(inter)
    assert data.item_ids == ["007", "8", "9"]  # "007" is not a canonical int: all stay strings, zero kept
    assert data.raw_items(data.sequences[0]) == ["8", "007", "9"]
    assert data.user_ids == [1]


def test_item_file_gives_text_and_attributes(tmp_path):
    folder = tmp_path / "beauty"
    write(folder, "beauty.inter", HEADER + "a\t1\t5\t1\na\t2\t5\t2\na\t3\t5\t3\n")
    write(folder, "beauty.item", "item_id:token\ttitle:token_seq\tcategories:token_seq\tbrand:token\tprice:float\n"
                                 "1\tred lipstick\tmakeup lips\tacme\t3.5\n"
                                 "2\tblue brush\ttools\t\t1\n"
                                 "3\t\t\tacme\t2\n"
                                 "4\tnever bought\tmakeup\tzed\t9\n")
    data = load(folder)
    assert data.item_text == ["red lipstick", "blue brush", ""]
    attrs = [[data.attribute_ids[a] for a in item] for item in data.item_attributes]
    assert attrs == [["categories=makeup", "categories=lips", "brand=acme"], ["categories=tools"], ["brand=acme"]]
    assert data.dropped == {"items_table_without_interactions": 1}


def test_item_text_without_title_joins_token_fields(tmp_path):
    folder = tmp_path / "m"
    write(folder, "m.inter", HEADER + "a\t1\t5\t1\na\t2\t5\t2\na\t1\t5\t3\n")
    write(folder, "m.item", "item_id:token\tname:token_seq\tyear:token\tgenre:token_seq\n"
                            "1\tthe film\t1999\tdrama\n2\tsequel\t2001\tdrama comedy\n")
    data = load(folder)
    assert data.item_text == ["the film 1999", "sequel 2001"]
    assert [len(a) for a in data.item_attributes] == [1, 2]


@pytest.mark.parametrize("body, line, field, words", [
    ("u1\t1\t5\t1\nu1\t2\t5\n", 3, None, "expected 4 tab-separated fields"),
    ("u1\t1\t5\t1\nu1\t2\t5\t2\textra\n", 3, None, "got 5"),
    ("u1\t1\t5\t1\nu1\t2\t5\tyesterday\n", 3, "timestamp", "unparseable timestamp 'yesterday'"),
    ("u1\t1\t5\t1\n\t2\t5\t2\n", 3, "user_id", "missing user id"),
    ("u1\t1\t5\t1\nu1\tnan\t5\t2\n", 3, "item_id", "missing item id"),
    ("u1\t1\t5\t1\nu1\t2\t5\t\n", 3, "timestamp", "missing timestamp"),
])
def test_bad_lines_name_file_line_and_field(tmp_path, body, line, field, words):
    inter = write(tmp_path, "bad.inter", HEADER + body)
    with pytest.raises(DataError) as exc:
        load(inter)
    assert exc.value.path == str(inter)
    assert exc.value.line == line
    assert exc.value.field == field
    assert words in str(exc.value)


def test_blank_lines_are_skipped_and_line_numbers_stay_exact(tmp_path):
    inter = write(tmp_path, "b.inter", HEADER + "u1\t1\t5\t1\n\nu1\t2\t5\t2\n\nu1\t3\t5\tx\n")
    with pytest.raises(DataError) as exc:
        load(inter)
    assert exc.value.line == 6


@pytest.mark.parametrize("text, field, words", [
    ("", None, "file is empty"),
    ("user_id\titem_id\ttimestamp\n", "user_id", "is not 'name:type'"),
    ("user_id:token\titem_id:token\n", "timestamp", "missing field 'timestamp'"),
    ("user_id:token\tuser_id:float\n", "user_id", "appears twice"),
    (HEADER, None, "no interactions"),
])
def test_bad_headers_and_empty_files(tmp_path, text, field, words):
    inter = write(tmp_path, "h.inter", text)
    with pytest.raises(DataError) as exc:
        load(inter)
    assert exc.value.field == field
    assert words in str(exc.value)


def test_file_order_when_time_col_is_empty(tmp_path):
    inter = write(tmp_path, "n.inter", "user_id:token\titem_id:token\nu\t3\nu\t1\nu\t2\n")
    data = load(inter, "data.time_col=")
    assert data.raw_items(data.sequences[0]) == [3, 1, 2]


def test_items_missing_from_item_file_are_an_error(tmp_path):
    folder = tmp_path / "s"
    write(folder, "s.inter", HEADER + "a\t1\t5\t1\na\t2\t5\t2\na\t3\t5\t3\n")
    write(folder, "s.item", "item_id:token\ttitle:token_seq\n1\tone\n2\ttwo\n")
    with pytest.raises(DataError, match=r"1 item\(s\) used in the interactions are missing.*item 3.*line 4 of"):
        load(folder)


def test_duplicate_item_in_item_file(tmp_path):
    folder = tmp_path / "d"
    write(folder, "d.inter", HEADER + "a\t1\t5\t1\n")
    write(folder, "d.item", "item_id:token\ttitle:token_seq\n1\tone\n1\tagain\n")
    with pytest.raises(DataError, match="duplicate item 1") as exc:
        load(folder)
    assert exc.value.line == 3


def test_folder_with_several_inter_files_is_ambiguous(tmp_path):
    write(tmp_path / "f", "a.inter", HEADER)
    write(tmp_path / "f", "b.inter", HEADER)
    with pytest.raises(DataError, match="several .inter files"):
        load(tmp_path / "f")
