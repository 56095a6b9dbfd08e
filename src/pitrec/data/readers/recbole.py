"""RecBole atomic files: ``NAME.inter`` and an optional ``NAME.item`` beside it.

Both are tab-separated with a typed header, ``user_id:token<TAB>item_id:token<TAB>rating:float
<TAB>timestamp:float``; fields are found by the name before ``:`` (``data.user_col``,
``data.item_col``, ``data.time_col``: ``user_id``, ``item_id``, ``timestamp`` by default), other
fields are allowed and ignored. Quotes have no special meaning (RecBole does not quote).

What the ``.item`` file contributes:
- attributes: the fields named in ``ATTRIBUTE_FIELDS`` (``categories:token_seq``, ``brand:token``
  ...); each value becomes the attribute ``"<field>=<value>"``, so a brand and a category that
  share a name stay distinct;
- text: the fields whose name contains ``title`` (``title``, ``movie_title``) if there are any,
  otherwise every other ``:token`` / ``:token_seq`` field, joined with spaces in column order.
Numeric (``:float``) item fields are not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Hashable

from pitrec.data.errors import DataError
from pitrec.data.interactions import Interactions
from pitrec.data.readers.common import open_text
from pitrec.data.readers.table import Assembly, ItemTable, Rows, parse_ids, parse_times, read_text_table
from pitrec.registry import READERS

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
TEXT_TYPES = ("token", "token_seq")
ATTRIBUTE_FIELDS = ("categories", "category", "brand", "genre")


@READERS.register("recbole")
def read_recbole(path: Path, cfg) -> Interactions:
    inter = _inter_file(Path(path))
    fields = _header(inter)
    hint = " (set data.user_col / data.item_col / data.time_col to the field names used in your file)"
    wanted = [cfg.user_col, cfg.item_col] + ([cfg.time_col] if cfg.time_col else [])
    for name in wanted:
        if name not in fields:
            raise DataError(inter, f"missing field {name!r}; the header has {list(fields)}{hint}", line=1, field=name)
    rows = read_text_table(inter, "\t", quoted=False, column_names=list(fields.values()))
    rows.frame = rows.frame.rename(columns={column: name for name, column in fields.items()})
    item_file = inter.with_suffix(".item")
    return Assembly(
        rows=rows,
        users=parse_ids(rows, cfg.user_col, "user id"),
        items=parse_ids(rows, cfg.item_col, "item id"),
        times=parse_times(rows, cfg.time_col) if cfg.time_col else None,
        item_column=cfg.item_col,
        name=inter.stem,
        source=str(inter),
        items_table=_read_items(item_file, cfg.item_col) if item_file.is_file() else None,
    ).build()


def _inter_file(path: Path) -> Path:
    if path.is_file():
        if path.suffix != ".inter":
            raise DataError(path, "expected a RecBole .inter file (or the folder holding NAME.inter)")
        return path
    if not path.is_dir():
        raise DataError(path, "no such file or folder")
    candidates = sorted(path.glob("*.inter"))
    preferred = path / f"{path.name}.inter"
    if preferred in candidates:
        return preferred
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DataError(path, "no .inter file in this folder")
    raise DataError(path, f"several .inter files ({[c.name for c in candidates]}) and none is named "
                          f"{preferred.name}; pass the file itself as the data path")


def _header(path: Path) -> dict[str, str]:
    """Field name -> the column as written (``user_id`` -> ``user_id:token``)."""
    with open_text(path) as fh:
        line = fh.readline().rstrip("\r\n").lstrip("\ufeff")
    if not line:
        raise DataError(path, "file is empty (expected a typed header like 'user_id:token<TAB>item_id:token')",
                        line=1)
    fields: dict[str, str] = {}
    for column in line.split("\t"):
        name, sep, kind = column.partition(":")
        if not sep or kind not in FIELD_TYPES:
            raise DataError(path, f"header field {column!r} is not 'name:type' with type one of {list(FIELD_TYPES)}",
                            line=1, field=column)
        if name in fields:
            raise DataError(path, f"field {name!r} appears twice in the header", line=1, field=name)
        fields[name] = column
    return fields


def _read_items(path: Path, item_col: str) -> ItemTable:
    fields = _header(path)
    if item_col not in fields:
        raise DataError(path, f"missing field {item_col!r}; the header has {list(fields)}", line=1, field=item_col)
    rows = read_text_table(path, "\t", quoted=False, column_names=list(fields.values()))
    if len(rows.frame) == 0:
        raise DataError(path, "the .item file has a header but no items")
    ids = parse_ids(rows, fields[item_col], "item id")
    table = ItemTable(rows=rows, row_of=ItemTable.index(rows, ids, fields[item_col]))
    keys = [str(raw) for raw in ids.tolist()]
    kinds = {name: column.partition(":")[2] for name, column in fields.items()}
    attr_fields = [n for n in fields if n in ATTRIBUTE_FIELDS]
    candidates = [n for n in fields if n != item_col and n not in attr_fields and kinds[n] in TEXT_TYPES]
    text_fields = [n for n in candidates if "title" in n] or candidates
    if text_fields:
        parts = [rows.frame[fields[n]].str.strip() for n in text_fields]
        joined = [" ".join(p for p in values if p) for values in zip(*(p.tolist() for p in parts))]
        table.text = dict(zip(keys, joined))
    if attr_fields:
        table.attributes = dict(zip(keys, _attributes(rows, fields, attr_fields)))
    return table


def _attributes(rows: Rows, fields: dict[str, str], names: list[str]) -> list[list[Hashable]]:
    columns = [rows.frame[fields[n]].tolist() for n in names]
    return [[f"{n}={v}" for n, values in zip(names, columns) for v in values[row].split()]
            for row in range(len(rows.frame))]
