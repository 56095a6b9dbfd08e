"""Import an external semantic-ID table (e.g. LETTER's ``Beauty.index.json``).

Accepted files (``.gz`` allowed): a table written by ``SidTable.save`` (checked against the
catalogue by raw item id), or a JSON object ``{key: [code, ...]}`` whose codes are integers or
tokens like ``"<a_183>"`` (level letter, code). Keys map to raw item ids as
``int(key) + tokenizer.import_key_offset`` (LETTER's keys are ``item_id - 1``, hence the default
offset 1; with offset 0 non-numeric keys are taken as raw ids verbatim). Every key must name an
item of the catalogue and every item must have a row: anything else is an error naming the keys
or items, never a silently shortened table. Codebook size of a level = its largest code + 1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from pitrec.data.errors import DataError
from pitrec.data.interactions import Interactions
from pitrec.data.readers.common import open_text
from pitrec.registry import TOKENIZERS
from pitrec.tokenizers.base import Tokenizer
from pitrec.tokenizers.sid_table import FORMAT, SidTable

TOKEN = re.compile(r"^<([A-Za-z]+)_(\d+)>$")


@TOKENIZERS.register("import")
class ImportedTable(Tokenizer):
    name = "import"
    needs_embeddings = False

    def fit(self, embeddings: np.ndarray | None, data: Interactions, seed: int) -> SidTable:
        if not self.cfg.import_path:
            raise ValueError("tokenizer.name=import needs tokenizer.import_path (the table to import)")
        return import_table(self.cfg.import_path, data, self.cfg.import_key_offset)


def import_table(path: str | Path, data: Interactions, key_offset: int = 1) -> SidTable:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(path, "no such SID table file")
    if path.suffix == ".parquet":
        table = SidTable.load(path)
        _check_pitrec_table(table, data, path)
        return _with_import_meta(table, path, key_offset)
    try:
        with open_text(path) as fh:
            obj = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise DataError(path, f"not a readable JSON SID table ({exc})") from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        table = SidTable.load(path) if path.suffix != ".gz" else _from_pitrec_dict(obj, path)
        _check_pitrec_table(table, data, path)
        return _with_import_meta(table, path, key_offset)
    if not isinstance(obj, dict) or not obj:
        raise DataError(path, "expected a non-empty JSON object {item key: [code, ...]}")
    return _with_import_meta(_from_mapping(obj, data, key_offset, path), path, key_offset)


def _from_pitrec_dict(obj: dict, path: Path) -> SidTable:
    try:
        return SidTable(np.asarray(obj["codes"], dtype=np.int64), obj["codebook_sizes"], obj.get("meta") or {},
                        obj.get("item_ids"))
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(path, f"malformed pitrec SID table ({exc})") from None


def _check_pitrec_table(table: SidTable, data: Interactions, path: Path) -> None:
    try:
        table.check_catalog(list(data.item_ids), source=str(path))
    except ValueError as exc:
        raise DataError(path, str(exc)) from None


def _from_mapping(obj: dict[str, Any], data: Interactions, key_offset: int, path: Path) -> SidTable:
    rows: dict[int, list[int]] = {}
    unknown: list[str] = []
    width, letters = None, None
    for key, value in obj.items():
        if not isinstance(value, list) or not value:
            raise DataError(path, f"value of key {key!r} must be a non-empty list of codes, got {value!r}", field=key)
        codes, key_letters = zip(*(_parse_code(v, key, path) for v in value))
        if width is None:
            width, letters = len(codes), key_letters
        elif len(codes) != width:
            raise DataError(path, f"key {key!r} has {len(codes)} codes, the first key has {width}", field=key)
        elif key_letters != letters:
            raise DataError(path, f"key {key!r} has level prefixes {key_letters}, the first key has {letters}", field=key)
        dense = _dense_item(key, key_offset, data)
        if dense is None:
            unknown.append(key)
            continue
        if dense in rows:
            raise DataError(path, f"key {key!r} maps to item {data.item_ids[dense]!r}, which an earlier key "
                                  f"already named", field=key)
        rows[dense] = list(codes)
    if unknown:
        raise DataError(path, f"{len(unknown)} key(s) match no item of the catalogue with key offset "
                              f"{key_offset} (raw id = key + offset), e.g. {unknown[:5]}", field=unknown[0])
    missing = [data.item_ids[i] for i in range(data.n_items) if i not in rows]
    if missing:
        raise DataError(path, f"{len(missing)} catalogue item(s) have no SID in this table, e.g. raw ids "
                              f"{missing[:5]} (expected keys like {_example_key(missing[0], key_offset)!r})")
    codes = np.array([rows[i] for i in range(data.n_items)], dtype=np.int64)
    return SidTable(codes, [int(c) + 1 for c in codes.max(axis=0)], {}, list(data.item_ids))


def _parse_code(value: Any, key: str, path: Path) -> tuple[int, str]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value, ""
    if isinstance(value, str):
        m = TOKEN.match(value.strip())
        if m:
            return int(m.group(2)), m.group(1)
        if value.strip().isdigit():
            return int(value), ""
    raise DataError(path, f"key {key!r}: code {value!r} is neither a non-negative integer nor a token like "
                          f"'<a_12>'", field=key)


def _dense_item(key: str, key_offset: int, data: Interactions) -> int | None:
    try:
        raw: Any = int(key) + key_offset
    except ValueError:
        if key_offset != 0:
            return None
        raw = key
    try:
        return data.dense_items([raw])[0]
    except KeyError:
        return None


def _example_key(raw: Any, key_offset: int) -> str:
    try:
        return str(int(raw) - key_offset)
    except (TypeError, ValueError):
        return str(raw)


def _with_import_meta(table: SidTable, path: Path, key_offset: int) -> SidTable:
    meta = {"tokenizer": "import", "import_path": str(path), "import_key_offset": key_offset,
            "source_meta": table.meta}
    return SidTable(table.codes, table.codebook_sizes, meta, list(table.item_ids) if table.item_ids is not None else None)
