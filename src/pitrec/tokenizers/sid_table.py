"""``SidTable``: one semantic ID (a tuple of codes, one per level) per item.

Contract used by every later stage: ``codes[i, l]`` is the level-``l`` code of dense item ``i``
and lies in ``[0, codebook_sizes[l])``. After a tokenizer's collision policy has run, rows are
unique (no two items share a SID); imported tables may collide and say so in ``stats()``.

Files: ``save``/``load`` pick the format from the suffix, ``.json`` (readable, diffable) or
``.parquet`` (one column per level, config in the schema metadata). Both store the raw item ids
when known, so a table can be checked against the catalogue it is used with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable

import numpy as np

from pitrec.data.errors import DataError
from pitrec.utils.io import atomic_path, atomic_write_json

FORMAT = "pitrec.sid_table"
VERSION = 1


@dataclass
class SidTable:
    codes: np.ndarray  # (n_items, n_levels) int64
    codebook_sizes: list[int]
    meta: dict[str, Any] = field(default_factory=dict)  # tokenizer name, config, fit statistics
    item_ids: list[Hashable] | None = None  # raw id of each row's item, when known

    def __post_init__(self) -> None:
        self.codes = np.asarray(self.codes, dtype=np.int64)
        self.codebook_sizes = [int(k) for k in self.codebook_sizes]
        if self.codes.ndim != 2:
            raise ValueError(f"codes must be (n_items, n_levels), got shape {self.codes.shape}")
        if len(self.codebook_sizes) != self.codes.shape[1]:
            raise ValueError(f"{len(self.codebook_sizes)} codebook sizes for {self.codes.shape[1]} levels")
        sizes = np.asarray(self.codebook_sizes)
        if len(self.codes) and ((self.codes < 0).any() or (self.codes >= sizes).any()):
            bad = np.argwhere((self.codes < 0) | (self.codes >= sizes))[0]
            raise ValueError(f"item {bad[0]} level {bad[1]}: code {self.codes[bad[0], bad[1]]} outside [0, {sizes[bad[1]]})")
        if self.item_ids is not None and len(self.item_ids) != len(self.codes):
            raise ValueError(f"{len(self.item_ids)} item ids for {len(self.codes)} rows of codes")

    @property
    def n_items(self) -> int:
        return int(self.codes.shape[0])

    @property
    def n_levels(self) -> int:
        return int(self.codes.shape[1])

    def token_offsets(self) -> list[int]:
        """``offset[l] = sum(codebook_sizes[:l])``: level ``l`` code ``c`` is token ``offset[l] + c``."""
        return [int(x) for x in np.concatenate([[0], np.cumsum(self.codebook_sizes)[:-1]])]

    def is_unique(self) -> bool:
        return collision_summary(self.codes)["distinct_sids"] == self.n_items

    def check_catalog(self, item_ids: list[Hashable], source: str = "SID table") -> None:
        """Fail loudly when this table was built for another catalogue (different items or order)."""
        if len(item_ids) != self.n_items:
            raise ValueError(f"{source}: {self.n_items} rows but the catalogue has {len(item_ids)} items")
        if self.item_ids is not None:
            for i, (a, b) in enumerate(zip(self.item_ids, item_ids)):
                if a != b and str(a) != str(b):
                    raise ValueError(f"{source}: row {i} is item {a!r} but dense item {i} of the catalogue is {b!r}")

    def stats(self) -> dict[str, Any]:
        """Distinct SIDs, collision rate, per-level codebook usage and entropy (bits); the
        collision figures measured before the collision policy ran are under ``before_policy``."""
        levels = []
        for l, size in enumerate(self.codebook_sizes):
            counts = np.bincount(self.codes[:, l], minlength=size)
            p = counts[counts > 0] / max(1, self.n_items)
            entropy = float(-(p * np.log2(p)).sum())
            levels.append({"level": l, "codebook_size": size, "used_codes": int((counts > 0).sum()),
                           "usage": float((counts > 0).sum() / size), "entropy_bits": entropy,
                           "normalized_entropy": entropy / np.log2(size) if size > 1 else 1.0,
                           "max_code_count": int(counts.max()) if self.n_items else 0})
        prefixes = [len(np.unique(self.codes[:, : d + 1], axis=0)) for d in range(self.n_levels)]
        out = {"n_items": self.n_items, "n_levels": self.n_levels, "codebook_sizes": list(self.codebook_sizes),
               **collision_summary(self.codes), "distinct_prefixes": prefixes, "levels": levels}
        for key in ("tokenizer", "fit_seconds", "collision_policy", "before_policy"):
            if key in self.meta:
                out[key] = self.meta[key]
        return out

    # -- files ------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Atomic write, as ``.json`` or ``.parquet`` (by suffix)."""
        path = Path(path)
        if path.suffix not in (".json", ".parquet"):
            raise ValueError(f"{path}: a SID table file must end in .json or .parquet")
        if path.suffix == ".parquet":
            _save_parquet(self, path)
        else:
            atomic_write_json(path, {"format": FORMAT, "version": VERSION, "n_items": self.n_items,
                                     "codebook_sizes": self.codebook_sizes, "item_ids": self.item_ids,
                                     "meta": self.meta, "codes": self.codes.tolist()}, indent=None)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SidTable":
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "no such SID table file")
        if path.suffix == ".parquet":
            return _load_parquet(path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(path, f"not a JSON SID table ({exc})") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise DataError(path, f"not a pitrec SID table (expected \"format\": \"{FORMAT}\"); "
                                  "use `pitrec sids import` for external tables", field="format")
        if obj.get("version") != VERSION:
            raise DataError(path, f"unsupported version {obj.get('version')!r} (this pitrec reads {VERSION})", field="version")
        for key in ("codes", "codebook_sizes"):
            if not isinstance(obj.get(key), list):
                raise DataError(path, f"missing or not a list: {key}", field=key)
        codes = obj["codes"]
        width = len(obj["codebook_sizes"])
        for i, row in enumerate(codes):
            if not isinstance(row, list) or len(row) != width:
                raise DataError(path, f"row {i} has {len(row) if isinstance(row, list) else row!r} codes, "
                                      f"expected {width}", field="codes")
        try:
            return cls(np.array(codes, dtype=np.int64).reshape(len(codes), width), obj["codebook_sizes"],
                       obj.get("meta") or {}, obj.get("item_ids"))
        except (ValueError, TypeError) as exc:
            raise DataError(path, str(exc), field="codes") from None


def collision_summary(codes: np.ndarray) -> dict[str, Any]:
    """How many items share their full SID with another item."""
    n = len(codes)
    if n == 0:
        return {"distinct_sids": 0, "collision_rate": 0.0, "items_in_collisions": 0, "max_collision_group": 0}
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    group = counts[inverse.reshape(-1)]
    return {"distinct_sids": int(len(counts)), "collision_rate": float(1 - len(counts) / n),
            "items_in_collisions": int((group > 1).sum()), "max_collision_group": int(counts.max())}


def _save_parquet(table: SidTable, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, Any] = {}
    if table.item_ids is not None:
        columns["item_id"] = pa.array(table.item_ids)
    for l in range(table.n_levels):
        columns[f"level_{l}"] = pa.array(table.codes[:, l], type=pa.int64())
    header = {"format": FORMAT, "version": VERSION, "codebook_sizes": table.codebook_sizes, "meta": table.meta}
    arrow = pa.table(columns).replace_schema_metadata({"pitrec": json.dumps(header)})
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)


def _load_parquet(path: Path) -> SidTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        arrow = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(path, f"not a readable Parquet file ({exc})") from None
    raw = (arrow.schema.metadata or {}).get(b"pitrec")
    if raw is None:
        raise DataError(path, "Parquet file without pitrec SID-table metadata")
    header = json.loads(raw)
    sizes = header["codebook_sizes"]
    missing = [f"level_{l}" for l in range(len(sizes)) if f"level_{l}" not in arrow.column_names]
    if missing:
        raise DataError(path, f"missing column(s) {missing}", field=missing[0])
    codes = np.stack([arrow.column(f"level_{l}").to_numpy() for l in range(len(sizes))], axis=1) if sizes else np.zeros((arrow.num_rows, 0))
    item_ids = arrow.column("item_id").to_pylist() if "item_id" in arrow.column_names else None
    try:
        return SidTable(codes, sizes, header.get("meta") or {}, item_ids)
    except ValueError as exc:
        raise DataError(path, str(exc)) from None
