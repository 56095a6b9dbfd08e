"""Interaction tables (RecBole atomic files, CSV, Parquet) -> ``Interactions``.

The readers only differ in how they find their columns; everything after that lives here, so the
rules are the same for every tabular format:

- every row keeps where it came from (file + line, or file + row for Parquet), so a bad value is
  reported where the user can find it;
- text files are read with pyarrow, which (unlike pandas) rejects a line with too few *or* too
  many fields instead of padding it; lines without any value (blank, or only separators) carry
  no data and are skipped, and line numbers stay exact;
- ids: a text column whose values are all canonical integers (``12``, not ``012`` or ``12.0``)
  becomes ints, anything else stays strings, so the user's own ids come back unchanged; typed
  (Parquet) columns keep their type; missing ids (empty, ``nan``, ``NA``, ``null``...) are errors;
- dense ids follow the sorted raw ids, so they do not depend on the row order of an export;
- each user's items are ordered by timestamp, ties kept in file order (a stable sort); exact
  duplicate rows are kept: they are interactions too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pitrec.data.errors import DataError
from pitrec.data.interactions import Interactions

MISSING_MARKERS = ("", "nan", "NaN", "NAN", "NA", "N/A", "n/a", "null", "NULL", "None")
_CANONICAL_INT = r"-?(?:0|[1-9][0-9]{0,17})"


@dataclass
class Rows:
    """A table read from one or more files, with the origin of every row."""

    frame: pd.DataFrame
    files: list[Path]
    file_index: np.ndarray  # (n,) index into ``files``
    position: np.ndarray  # (n,) 1-based line (text) or row (Parquet) in that file
    by_line: bool = True  # False: ``position`` counts table rows (Parquet has no lines)

    def error(self, row: int, message: str, column: str | None = None) -> DataError:
        path = self.files[int(self.file_index[row])]
        pos = int(self.position[row])
        if self.by_line:
            return DataError(path, message, line=pos, field=column)
        return DataError(path, message, row=pos, field=column)

    def where(self, row: int) -> str:
        path = self.files[int(self.file_index[row])]
        return f"{'line' if self.by_line else 'row'} {int(self.position[row])} of {path}"

    @staticmethod
    def concat(parts: Sequence["Rows"]) -> "Rows":
        files: list[Path] = []
        index = []
        for part in parts:
            index.append(part.file_index + len(files))
            files.extend(part.files)
        return Rows(
            frame=pd.concat([p.frame for p in parts], ignore_index=True),
            files=files,
            file_index=np.concatenate(index),
            position=np.concatenate([p.position for p in parts]),
            by_line=all(p.by_line for p in parts),
        )


def read_text_table(path: Path, delimiter: str, quoted: bool, column_names: list[str] | None = None) -> Rows:
    """All columns as strings. ``column_names`` given: the first line is a header to skip (the
    caller parsed it); otherwise pyarrow takes the names from the first line."""
    bad: list[tuple[int | None, int, int]] = []

    def on_bad_row(row) -> str:
        bad.append((row.number, row.expected_columns, row.actual_columns))
        return "error"

    read = pacsv.ReadOptions(use_threads=False, column_names=column_names, skip_rows=1 if column_names else 0)
    parse = pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quoted else False,
                               ignore_empty_lines=False, invalid_row_handler=on_bad_row)
    names = column_names or _header_names(path, read, parse)
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False)
    try:
        table = pacsv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        if bad:
            line, expected, actual = bad[0]
            raise DataError(path, f"malformed line: expected {expected} {_sep_name(delimiter)}-separated fields "
                                  f"(as in the header), got {actual}", line=line) from None
        text = str(exc)
        if "Empty CSV file" in text:
            raise DataError(path, "file is empty (expected a header line)", line=1) from None
        raise DataError(path, f"cannot parse: {text}") from None
    frame = table.to_pandas()
    position = np.arange(len(frame), dtype=np.int64) + 2  # line 1 is the header
    blank = (frame == "").all(axis=1).to_numpy() if len(frame.columns) else np.zeros(len(frame), bool)
    keep = ~blank
    return Rows(frame[keep].reset_index(drop=True), [path], np.zeros(int(keep.sum()), np.int32), position[keep])


def _header_names(path: Path, read: pacsv.ReadOptions, parse: pacsv.ParseOptions) -> list[str]:
    # bad rows are reported by the full read, with their line; here they must not mask the header
    parse = pacsv.ParseOptions(delimiter=parse.delimiter, quote_char=parse.quote_char,
                               ignore_empty_lines=False, invalid_row_handler=lambda row: "skip")
    try:
        reader = pacsv.open_csv(path, read_options=read, parse_options=parse)
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise DataError(path, "file is empty (expected a header line)", line=1) from None
        raise DataError(path, f"cannot parse the header: {exc}", line=1) from None
    names = reader.schema.names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(path, f"duplicate column name(s) {dupes} in the header", line=1)
    return names


def _sep_name(delimiter: str) -> str:
    return {"\t": "tab", ",": "comma"}.get(delimiter, repr(delimiter))


def read_parquet_table(path: Path) -> Rows:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(path, f"not a readable Parquet file: {exc}") from None
    frame = table.to_pandas()
    return Rows(frame, [path], np.zeros(len(frame), np.int32), np.arange(1, len(frame) + 1, dtype=np.int64),
                by_line=False)


def require_columns(rows: Rows, columns: Sequence[str], hint: str = "") -> None:
    missing = [c for c in columns if c not in rows.frame.columns]
    if missing:
        path = rows.files[0] if rows.files else None
        raise DataError(path, f"missing column {missing[0]!r}; columns are {list(rows.frame.columns)}{hint}",
                        line=1 if rows.by_line else None, field=missing[0])


# ---------------------------------------------------------------- ids and timestamps


def parse_ids(rows: Rows, column: str, what: str | None = None) -> np.ndarray:
    """The column as raw ids (int64 or object array of str); missing or unusable ids are errors."""
    values = rows.frame[column]
    what = what or column
    if pd.api.types.is_bool_dtype(values.dtype):
        raise rows.error(0, f"{what} must be integers or strings, not booleans", column)
    if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
        return values.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(values.dtype) or pd.api.types.is_integer_dtype(values.dtype):
        floats = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.flatnonzero(~np.isfinite(floats))
        if len(bad):
            raise rows.error(int(bad[0]), f"missing {what} (NaN)", column)
        fractional = np.flatnonzero(floats != np.round(floats))
        if len(fractional):
            raise rows.error(int(fractional[0]), f"{what} {floats[fractional[0]]!r} is not an integer id", column)
        return floats.astype(np.int64)
    as_text = values.astype(object)
    missing = as_text.isna() | as_text.isin(MISSING_MARKERS)
    if missing.any():
        row = int(np.flatnonzero(missing.to_numpy())[0])
        raise rows.error(row, f"missing {what} ({as_text.iloc[row]!r})", column)
    if not all(isinstance(v, str) for v in as_text):
        row = next(k for k, v in enumerate(as_text) if not isinstance(v, str))
        raise rows.error(row, f"{what} must be integers or strings, got {type(as_text.iloc[row]).__name__}", column)
    text = as_text.astype(str).str.strip()
    if text.str.fullmatch(_CANONICAL_INT).all():
        return text.astype(np.int64).to_numpy()
    return text.to_numpy(dtype=object)


def parse_times(rows: Rows, column: str) -> np.ndarray:
    """Numbers (any unit, as long as larger is later) or dates (ISO 8601, or a Parquet timestamp
    column) -> a sortable numeric array."""
    values = rows.frame[column]
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        missing = values.isna().to_numpy()
        if missing.any():
            raise rows.error(int(np.flatnonzero(missing)[0]), "missing timestamp", column)
        return values.to_numpy().astype("datetime64[ns]").astype(np.int64)
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        _check_finite(rows, column, numbers, values)
        return values.to_numpy(dtype=np.int64) if pd.api.types.is_integer_dtype(values.dtype) else numbers
    text = values.astype(object).where(values.notna(), "").astype(str).str.strip()
    empty = (text == "").to_numpy()
    if empty.any():
        raise rows.error(int(np.flatnonzero(empty)[0]), "missing timestamp", column)
    numbers = pd.to_numeric(text, errors="coerce")
    parsed = numbers.notna().to_numpy()
    if parsed.all():
        _check_finite(rows, column, numbers.to_numpy(dtype=np.float64), text)
        return numbers.to_numpy()
    if parsed.any():
        row = int(np.flatnonzero(~parsed)[0])
        raise rows.error(row, f"unparseable timestamp {text.iloc[row]!r}: other rows hold numbers", column)
    dates = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
    failed = dates.isna().to_numpy()
    if failed.any():
        row = int(np.flatnonzero(failed)[0])
        raise rows.error(row, f"unparseable timestamp {text.iloc[row]!r} (expected a number or an ISO-8601 date)",
                         column)
    return dates.dt.tz_localize(None).to_numpy().astype("datetime64[ns]").astype(np.int64)


def _check_finite(rows: Rows, column: str, numbers: np.ndarray, shown: pd.Series) -> None:
    bad = np.flatnonzero(~np.isfinite(numbers))
    if len(bad):
        raise rows.error(int(bad[0]), f"unparseable timestamp {shown.iloc[int(bad[0])]!r}", column)


def infer_token_ids(tokens: Sequence[str]) -> list[Hashable]:
    """Ids written as text (attribute tokens): ints if every token is a canonical integer."""
    series = pd.Series(list(tokens), dtype=object).astype(str)
    if len(series) and series.str.fullmatch(_CANONICAL_INT).all():
        return series.astype(np.int64).tolist()
    return series.tolist()


def densify(raw: np.ndarray) -> tuple[np.ndarray, list[Hashable]]:
    """Raw ids -> (dense codes, sorted raw ids); numbers sort numerically, strings as text."""
    codes, uniques = pd.factorize(raw, sort=False)
    uniques = np.asarray(uniques)
    order = np.argsort(uniques.astype(str) if uniques.dtype == object else uniques, kind="stable")
    rank = np.empty(len(uniques), dtype=np.int64)
    rank[order] = np.arange(len(uniques))
    return rank[codes], uniques[order].tolist()


# ---------------------------------------------------------------- items table and assembly


@dataclass
class ItemTable:
    """Per item (keyed by ``str(raw id)``, so ``12`` and ``"12"`` match): its text and raw
    attribute ids, and the row it came from."""

    rows: Rows
    row_of: dict[str, int]
    text: dict[str, str] | None = None
    attributes: dict[str, list[Hashable]] | None = None

    @staticmethod
    def index(rows: Rows, ids: np.ndarray, column: str) -> dict[str, int]:
        row_of: dict[str, int] = {}
        for row, raw in enumerate(ids.tolist()):
            key = str(raw)
            if key in row_of:
                raise rows.error(row, f"duplicate item {raw!r} (first at {rows.where(row_of[key])})", column)
            row_of[key] = row
        return row_of


@dataclass
class Assembly:
    """Everything a tabular reader hands over; ``build`` turns it into ``Interactions``."""

    rows: Rows
    users: np.ndarray
    items: np.ndarray
    times: np.ndarray | None
    item_column: str
    name: str
    source: str
    items_table: ItemTable | None = None
    dropped: dict[str, int] = field(default_factory=dict)

    def build(self) -> Interactions:
        if len(self.users) == 0:
            raise DataError(self.rows.files[0] if self.rows.files else self.source,
                            "no interactions (the table has a header but no data rows)")
        user_code, user_raw = densify(self.users)
        item_code, item_raw = densify(self.items)
        if self.times is None:
            order = np.argsort(user_code, kind="stable")
        else:
            order = np.lexsort((self.times, user_code))  # stable: ties stay in file order
        counts = np.bincount(user_code, minlength=len(user_raw))
        sequences = np.split(item_code[order], np.cumsum(counts)[:-1])
        text, attributes, attribute_ids = self._item_features(item_code, item_raw)
        return Interactions(
            sequences=[s.astype(np.int64) for s in sequences],
            user_ids=user_raw,
            item_ids=item_raw,
            item_text=text,
            item_attributes=attributes,
            attribute_ids=attribute_ids,
            name=self.name,
            source=self.source,
            dropped=dict(self.dropped),
        )

    def _item_features(self, item_code: np.ndarray, item_raw: list[Hashable]):
        table = self.items_table
        if table is None:
            return None, None, None
        keys = [str(raw) for raw in item_raw]
        missing = [k for k, key in enumerate(keys) if key not in table.row_of]
        if missing:
            first = missing[0]
            used_at = int(np.flatnonzero(item_code == first)[0])
            raise DataError(table.rows.files[0], f"{len(missing)} item(s) used in the interactions are missing from "
                                                 f"this items table (e.g. item {item_raw[first]!r}, used at "
                                                 f"{self.rows.where(used_at)})", field=self.item_column)
        unused = len(table.row_of) - len(keys)
        if unused:
            # listed items no user touched can be neither history nor target: not part of the catalog
            self.dropped["items_table_without_interactions"] = unused
        text = [table.text[key] for key in keys] if table.text is not None else None
        if table.attributes is None:
            return text, None, None
        per_item = [table.attributes[key] for key in keys]
        raw_attrs = sorted({a for attrs in per_item for a in attrs}, key=lambda a: (isinstance(a, str), a))
        index = {a: k for k, a in enumerate(raw_attrs)}
        return text, [[index[a] for a in attrs] for attrs in per_item], raw_attrs
