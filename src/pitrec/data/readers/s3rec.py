"""S3-Rec format, exactly the files of ``shared/data/amazon2014/{beauty,sports}``:

- ``sequences.txt[.gz]``: ``user_id item_id item_id ...`` (space separated, chronological)
- ``items.tsv[.gz]`` (optional): header ``item_id  asin  title``
- ``item_attributes.json[.gz]`` (optional): ``{"item_id": [attribute_id, ...]}``
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pitrec.data.errors import DataError
from pitrec.data.interactions import Interactions
from pitrec.data.readers.common import find_file, open_text, parse_int, sorted_ids
from pitrec.registry import READERS


def is_s3rec(path: Path) -> bool:
    return path.is_dir() and find_file(path, "sequences.txt", required=False) is not None


@READERS.register("s3rec")
def read_s3rec(path: str | Path, cfg=None) -> Interactions:
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(folder, "S3-Rec data is a folder holding sequences.txt[.gz]")
    seq_path = find_file(folder, "sequences.txt")
    raw_users: list[int] = []
    raw_seqs: list[list[int]] = []
    first_line: dict[int, int] = {}
    with open_text(seq_path) as fh:
        for lineno, line in enumerate(fh, 1):
            tokens = line.split()
            if not tokens:
                raise DataError(seq_path, "empty line (expected 'user_id item_id ...')", line=lineno)
            user = parse_int(tokens[0], seq_path, lineno, "user_id")
            if len(tokens) < 2:
                raise DataError(seq_path, f"user {user} has no items", line=lineno, field="item_id")
            if user in first_line:
                raise DataError(seq_path, f"duplicate user {user} (first seen on line {first_line[user]})",
                                line=lineno, field="user_id")
            first_line[user] = lineno
            raw_users.append(user)
            raw_seqs.append([parse_int(t, seq_path, lineno, f"item_id #{k}") for k, t in enumerate(tokens[1:], 1)])
    if not raw_users:
        raise DataError(seq_path, "file is empty: no user sequences")

    item_raw = sorted_ids({i for s in raw_seqs for i in s})
    titles, extra_items = _read_items(folder, set(item_raw), raw_seqs, seq_path)
    attrs, attr_ids = _read_attributes(folder, item_raw)
    index = {raw: i for i, raw in enumerate(item_raw)}
    dropped = {}
    if extra_items:
        # items listed in the items table that no user ever interacted with: they can't be a
        # target or history, so they are not part of the ranked catalog; say so, don't hide it
        dropped["items_table_without_interactions"] = extra_items
    return Interactions(
        sequences=[np.array([index[i] for i in s], dtype=np.int64) for s in raw_seqs],
        user_ids=raw_users,
        item_ids=item_raw,
        item_text=[titles.get(i, "") for i in item_raw] if titles is not None else None,
        item_attributes=attrs,
        attribute_ids=attr_ids,
        name=folder.name,
        source=str(folder),
        dropped=dropped,
    )


def _read_items(folder: Path, needed: set[int], raw_seqs, seq_path) -> tuple[dict[int, str] | None, int]:
    path = find_file(folder, "items.tsv", required=False)
    if path is None:
        return None, 0
    titles: dict[int, str] = {}
    seen_line: dict[int, int] = {}
    with open_text(path) as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
        if not header or header == [""]:
            raise DataError(path, "file is empty (expected a header 'item_id<TAB>asin<TAB>title')", line=1)
        cols = {name: k for k, name in enumerate(header)}
        for required in ("item_id", "title"):
            if required not in cols:
                raise DataError(path, f"missing column {required!r} in header {header}", line=1, field=required)
        for lineno, line in enumerate(fh, 2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != len(header):
                raise DataError(path, f"expected {len(header)} tab-separated fields, got {len(parts)}", line=lineno)
            item = parse_int(parts[cols["item_id"]], path, lineno, "item_id")
            if item in seen_line:
                raise DataError(path, f"duplicate item {item} (first on line {seen_line[item]})", line=lineno, field="item_id")
            seen_line[item] = lineno
            titles[item] = parts[cols["title"]].strip()
    missing = needed - titles.keys()
    if missing:
        first = min(missing)
        where = next(k for k, s in enumerate(raw_seqs, 1) if first in s)
        raise DataError(path, f"{len(missing)} item(s) used in {seq_path.name} are missing from this items table "
                              f"(e.g. item {first}, used on line {where} of {seq_path.name})", field="item_id")
    return titles, len(titles.keys() - needed)


def _read_attributes(folder: Path, item_raw: list[int]):
    path = find_file(folder, "item_attributes.json", required=False)
    if path is None:
        return None, None
    with open_text(path) as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    if not isinstance(data, dict):
        raise DataError(path, "expected an object {item_id: [attribute_id, ...]}")
    per_item: dict[int, list[int]] = {}
    for key, values in data.items():
        item = parse_int(key, path, None, f"key {key!r}")
        if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise DataError(path, f"attributes of item {key} must be a list of integers, got {values!r}", field=key)
        per_item[item] = values
    attr_raw = sorted_ids({a for v in per_item.values() for a in v})
    aindex = {a: k for k, a in enumerate(attr_raw)}
    return [[aindex[a] for a in per_item.get(i, [])] for i in item_raw], attr_raw
