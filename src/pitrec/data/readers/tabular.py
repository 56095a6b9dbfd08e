"""Generic interaction tables: CSV/TSV (optionally gzipped) or Parquet, one file or a folder.

Interactions: one row per (user, item, timestamp), the columns named by ``data.user_col``,
``data.item_col`` and ``data.time_col`` (other columns are ignored). An empty ``data.time_col``
means the rows are already chronological and file order is used. A folder is read as the
concatenation of all its files of the format, in name order.

Items table (optional): ``data.items_file``, or a file named ``items.<csv|csv.gz|tsv|tsv.gz|parquet>``
inside the data folder. Its id column is ``data.item_col``; item text comes from a ``text``
column, else a ``title`` column; attributes from an ``attributes`` column holding a list (Parquet)
or a ``|``-separated string (``brand_7|cat_2``). At least one of text or attributes is required.
"""

from __future__ import annotations

from pathlib import Path
from typing import Hashable

import numpy as np

from pitrec.data.errors import DataError
from pitrec.data.interactions import Interactions
from pitrec.data.readers.table import (
    Assembly, ItemTable, Rows, infer_token_ids, parse_ids, parse_times, read_parquet_table, read_text_table,
    require_columns,
)
from pitrec.registry import READERS

SUFFIXES = {"csv": (".csv", ".csv.gz", ".tsv", ".tsv.gz"), "parquet": (".parquet",)}
ITEMS_STEM = "items"


@READERS.register("csv")
def read_csv(path: Path, cfg) -> Interactions:
    return read_tabular(Path(path), cfg, "csv")


@READERS.register("parquet")
def read_parquet(path: Path, cfg) -> Interactions:
    return read_tabular(Path(path), cfg, "parquet")


def read_tabular(path: Path, cfg, fmt: str) -> Interactions:
    files, items_path = _locate(path, cfg, fmt)
    columns = [cfg.user_col, cfg.item_col] + ([cfg.time_col] if cfg.time_col else [])
    hint = " (set data.user_col / data.item_col / data.time_col to the names used in your file)"
    parts = []
    for f in files:
        part = read_table_file(f)
        require_columns(part, columns, hint)
        part.frame = part.frame[columns]
        parts.append(part)
    rows = Rows.concat(parts)
    return Assembly(
        rows=rows,
        users=parse_ids(rows, cfg.user_col, "user id"),
        items=parse_ids(rows, cfg.item_col, "item id"),
        times=parse_times(rows, cfg.time_col) if cfg.time_col else None,
        item_column=cfg.item_col,
        name=_stem(path) if path.is_file() else path.name,
        source=str(path),
        items_table=read_items_table(items_path, cfg.item_col) if items_path is not None else None,
    ).build()


def read_table_file(path: Path) -> Rows:
    name = path.name.lower()
    if name.endswith(SUFFIXES["parquet"]):
        return read_parquet_table(path)
    if name.endswith(SUFFIXES["csv"]):
        return read_text_table(path, "\t" if name.endswith((".tsv", ".tsv.gz")) else ",", quoted=True)
    raise DataError(path, f"expected a {' / '.join(SUFFIXES['csv'] + SUFFIXES['parquet'])} file")


def _locate(path: Path, cfg, fmt: str) -> tuple[list[Path], Path | None]:
    """The interaction files and the items table (None when there is none)."""
    items_path = Path(cfg.items_file).expanduser() if cfg.items_file else None
    if items_path is not None and not items_path.is_file():
        raise DataError(items_path, "items table not found", field="data.items_file")
    if path.is_file():
        return [path], items_path
    if not path.is_dir():
        raise DataError(path, "no such file or folder")
    tables = sorted(f for f in path.iterdir() if f.is_file() and is_items_table(f))
    files = sorted(f for f in path.iterdir()
                   if f.is_file() and f.name.lower().endswith(SUFFIXES[fmt]) and not is_items_table(f))
    if tables:
        if items_path is not None and items_path.resolve() != tables[0].resolve():
            raise DataError(path, f"the folder holds an items table ({tables[0].name}) but data.items_file names "
                                  f"{items_path}; keep one")
        if len(tables) > 1:
            raise DataError(path, f"more than one items table: {[t.name for t in tables]}")
        items_path = tables[0]
    if not files:
        patterns = ", ".join("*" + suffix for suffix in SUFFIXES[fmt])
        raise DataError(path, f"no {fmt} interaction files ({patterns}) in this folder")
    return files, items_path


def is_items_table(path: Path) -> bool:
    """``items.csv`` / ``items.parquet`` ... inside a data folder is its items table."""
    name = path.name.lower()
    return name.endswith(SUFFIXES["csv"] + SUFFIXES["parquet"]) and _stem(path).lower() == ITEMS_STEM


def _stem(path: Path) -> str:
    """``ratings.csv.gz`` -> ``ratings``."""
    name = path.name
    for suffix in sorted(SUFFIXES["csv"] + SUFFIXES["parquet"], key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_items_table(path: Path, item_col: str) -> ItemTable:
    rows = read_table_file(path)
    require_columns(rows, [item_col], " (the items table's id column is data.item_col)")
    if len(rows.frame) == 0:
        raise DataError(path, "items table has a header but no items")
    columns = set(rows.frame.columns)
    text_col = "text" if "text" in columns else "title" if "title" in columns else None
    attr_col = "attributes" if "attributes" in columns else None
    if text_col is None and attr_col is None:
        raise DataError(path, f"items table needs a 'text' (or 'title') or an 'attributes' column; "
                              f"columns are {list(rows.frame.columns)}", line=1 if rows.by_line else None)
    ids = parse_ids(rows, item_col, "item id")
    row_of = ItemTable.index(rows, ids, item_col)
    table = ItemTable(rows=rows, row_of=row_of)
    keys = [str(raw) for raw in ids.tolist()]
    if text_col is not None:
        table.text = {key: _text(value) for key, value in zip(keys, rows.frame[text_col].tolist())}
    if attr_col is not None:
        table.attributes = dict(zip(keys, _attribute_lists(rows, attr_col)))
    return table


def _text(value) -> str:
    """A missing title is an empty text (an item may have none), not an error."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def _attribute_lists(rows: Rows, column: str) -> list[list[Hashable]]:
    lists: list[list[Hashable]] = []
    from_text = True
    for row, value in enumerate(rows.frame[column].tolist()):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            lists.append([])
        elif isinstance(value, str):
            lists.append([t.strip() for t in value.split("|") if t.strip()])
        elif isinstance(value, (list, tuple, np.ndarray)):
            from_text = False
            lists.append([v.item() if isinstance(v, np.generic) else v for v in value])
        else:
            raise rows.error(row, f"attributes must be a list or a '|'-separated string, got {value!r}", column)
    if from_text:
        # written as text: '3|17' means the integer attributes 3 and 17 when every token is an integer
        flat = infer_token_ids([a for attrs in lists for a in attrs])
        out, start = [], 0
        for attrs in lists:
            out.append(flat[start:start + len(attrs)])
            start += len(attrs)
        return out
    return lists
