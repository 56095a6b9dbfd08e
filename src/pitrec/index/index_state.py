"""Persistence, churn bookkeeping, edge-list validation and array helpers of ``BeamIndex``, kept
apart from the index operations so that file and checking concerns do not crowd the algorithm.

On disk an index is a directory of two files written atomically together: ``edges.safetensors``
(the edge list and the reference snapshot of the last refresh, so churn statistics survive a
resume) and ``index.json`` (format, ``version``, sizes, a SHA-256 of the tensor file, and the
statistics for people). The checksum turns a truncated or edited tensor file into a clear error
at load time instead of a silently different index.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pitrec.utils.io import atomic_dir

FORMAT = "pitrec.beam_index"
FORMAT_VERSION = 1
TENSORS_FILE = "edges.safetensors"
META_FILE = "index.json"
_TENSOR_DTYPES = {"edge_items": torch.int64, "edge_codes": torch.int64, "edge_weights": torch.float64,
                  "ref_edge_items": torch.int64, "ref_edge_codes": torch.int64, "ref_primary_codes": torch.int64}
_META_FIELDS = {"version": int, "n_items": int, "codebook_sizes": list, "max_sids_per_item": int,
                "new_edge_weight": (int, float), "last_churn": dict}


class BeamIndexError(ValueError):
    """A malformed index, or an operation asked of it with inconsistent arguments."""


class SidKeys:
    """SID codes (N, L) <-> one int64 mixed-radix key each, ``sum(codes[l] * stride[l])``.

    The key order is the lexicographic order of the codes, so "same SID" and "sort by SID"
    become scalar numpy operations. Codes are validated here, once, for every entry point.
    """

    def __init__(self, codebook_sizes: Sequence[int], where: str):
        self.codebook_sizes = [int(s) for s in codebook_sizes]
        if not self.codebook_sizes or min(self.codebook_sizes) < 1:
            raise BeamIndexError(f"{where}: codebook_sizes must be positive, got {list(codebook_sizes)}")
        if float(np.prod(np.asarray(self.codebook_sizes, dtype=np.float64))) >= 2**62:
            raise BeamIndexError(f"{where}: SID space {self.codebook_sizes} too large for int64 keys")
        self.sizes = np.asarray(self.codebook_sizes, dtype=np.int64)
        self.strides = np.concatenate([np.cumprod(self.sizes[::-1])[::-1][1:], [1]]).astype(np.int64)

    def encode(self, codes: Any, where: str) -> np.ndarray:
        c = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
        if c.ndim != 2 or c.shape[1] != len(self.sizes):
            raise BeamIndexError(f"{where}: expected (N, {len(self.sizes)}) codes, got shape {c.shape}")
        if len(c) and not np.issubdtype(c.dtype, np.integer):
            raise BeamIndexError(f"{where}: codes must be integers, got {c.dtype}")
        c = c.astype(np.int64)
        bad = np.argwhere((c < 0) | (c >= self.sizes))
        if len(bad):
            r, lvl = bad[0]
            raise BeamIndexError(f"{where}: row {r} level {lvl}: code {c[r, lvl]} outside [0, {self.sizes[lvl]})")
        return c @ self.strides if len(c) else np.zeros(0, dtype=np.int64)

    def decode(self, keys: np.ndarray) -> np.ndarray:
        return (keys[..., None] // self.strides) % self.sizes


@dataclass(frozen=True)
class Snapshot:
    """The (item, SID-key) edge set and primary SID keys at one moment, to measure churn."""

    edge_items: np.ndarray
    edge_keys: np.ndarray
    primary_keys: np.ndarray


def churn_between(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """How much the tokenisation moved: shares of items whose primary SID changed (over items
    present in both), and of edges added / removed relative to the earlier edge count."""
    n_common = min(len(before.primary_keys), len(after.primary_keys))
    changed = before.primary_keys[:n_common] != after.primary_keys[:n_common]
    items = np.concatenate([before.edge_items, after.edge_items])
    keys = np.concatenate([before.edge_keys, after.edge_keys])
    from_after = np.arange(len(items)) >= len(before.edge_items)
    order, first = group_rows(items, keys)
    sizes = np.diff(np.append(first, len(order)))
    lone = sizes == 1  # groups (edges) present in only one of the two snapshots
    side = from_after[order[first]]
    n_before = max(1, len(before.edge_items))
    return {
        "primary_changed": float(changed.mean()) if n_common else 0.0,
        "edges_added": float((lone & side).sum() / n_before),
        "edges_removed": float((lone & ~side).sum() / n_before),
    }


def group_rows(items: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable order grouping equal (item, SID) rows, and the position of each group's first row.

    Sorts one combined int64 key when it fits (numpy's stable integer sort is a radix sort, ~10x
    faster than ``lexsort`` on two columns: this runs on every training step via
    ``record_selections``), else falls back to ``lexsort``.
    """
    if not len(items):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    span = int(keys.max()) + 1
    if (int(items.max()) + 1) * span < 2**62:
        combined = items * span + keys
        order = np.argsort(combined, kind="stable")
        c = combined[order]
        return order, np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    order = np.lexsort((keys, items))
    i, k = items[order], keys[order]
    return order, np.flatnonzero(np.r_[True, (i[1:] != i[:-1]) | (k[1:] != k[:-1])])


def add_to_known_edges(ptr: np.ndarray, keys: np.ndarray, weights: np.ndarray, items: np.ndarray,
                       rec_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``record_selections`` when every (item, SID) is already an edge, as co-evolution's are (its
    candidates come from the index): 1 added per pair, then only the touched items' edges
    re-sorted by weight (stable, so ties keep seniority). New (keys, weights) arrays, or None when
    some pair is not an edge yet. This costs the batch times the SIDs per item; the general path
    sorts every edge: with the count lookup after it, 7.6-8.1 CPU ms per step on a late beauty
    index of 41,772 edges, 0.17-0.18 ms this way (benchmarks/tuning/index_step_cost.py)."""
    if not len(items):
        return keys, weights
    rows, valid = item_windows(ptr, items)
    hit = valid & (keys[rows] == rec_keys[:, None])
    if not hit.any(axis=1).all():
        return None
    new_weights = weights.copy()
    np.add.at(new_weights, rows[np.arange(len(items)), hit.argmax(axis=1)], 1.0)
    rows, valid = item_windows(ptr, np.unique(items))
    order = np.argsort(-np.where(valid, new_weights[rows], -np.inf), axis=1, kind="stable")
    source = np.take_along_axis(rows, order, axis=1)[valid]  # valid columns are a prefix of each row
    new_keys = keys.copy()
    new_keys[rows[valid]] = keys[source]
    new_weights[rows[valid]] = new_weights[source]
    return new_keys, new_weights


def item_windows(ptr: np.ndarray, items: np.ndarray, max_c: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each item's first ``max_c`` edge rows (all by default), padded to the widest: (rows (B, W),
    valid (B, W)); padding rows point at row 0. ``W`` is at least 1, so an empty batch has a shape."""
    start, deg = ptr[items], ptr[items + 1] - ptr[items]
    if max_c is not None:
        deg = np.minimum(deg, max_c)
    col = np.arange(int(deg.max()) if len(items) else 1)
    valid = col[None, :] < deg[:, None]
    return np.where(valid, start[:, None] + col[None, :], 0), valid


def rank_within(sorted_items: np.ndarray) -> np.ndarray:
    """0, 1, 2 ... within each run of equal values of an item-sorted array."""
    if not len(sorted_items):
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[True, sorted_items[1:] != sorted_items[:-1]]
    run_start = np.maximum.accumulate(np.where(starts, np.arange(len(sorted_items)), 0))
    return np.arange(len(sorted_items)) - run_start


def checked_edges(sid: SidKeys, n_items: int, items: Any, codes: Any, weights: Any, where: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate an edge list given as (items, codes, weights); returns it as int64 items, SID keys
    and float64 weights. Every mutation of an index comes through here, so a bad edge is named once."""
    items, weights = as_numpy(items), as_numpy(weights)
    if items.ndim != 1 or weights.shape != items.shape:
        raise BeamIndexError(f"{where}: edge items {items.shape} and weights {weights.shape} must be equal 1-d shapes")
    if not np.issubdtype(items.dtype, np.integer) and len(items):
        raise BeamIndexError(f"{where}: edge items must be integers, got {items.dtype}")
    items, weights = items.astype(np.int64), weights.astype(np.float64)
    keys = sid.encode(codes, f"{where}: edge codes")
    if len(keys) != len(items):
        raise BeamIndexError(f"{where}: {len(items)} edge items but {len(keys)} edge codes")
    bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
    if len(bad):
        raise BeamIndexError(f"{where}: edge {bad[0]} (item {items[bad[0]]}) has weight {weights[bad[0]]}; weights must be finite and >= 0")
    bad = np.flatnonzero((items < 0) | (items >= n_items))
    if len(bad):
        raise BeamIndexError(f"{where}: edge {bad[0]} names item {items[bad[0]]} outside [0, {n_items})")
    return items, keys, weights


def as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def collision_share(keys: np.ndarray) -> float:
    """Share of items whose primary SID is also another item's primary SID."""
    if not len(keys):
        return 0.0
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return float((counts[inverse] > 1).mean())


def write_index_dir(directory: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                    stats: dict[str, Any]) -> None:
    with atomic_dir(directory) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / TENSORS_FILE))
        record = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta,
                  "sha256": _sha256(tmp / TENSORS_FILE),
                  "tensors": {k: list(v.shape) for k, v in tensors.items()}, "stats": stats}
        (tmp / META_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        for name in (TENSORS_FILE, META_FILE):  # durable before the directory swap makes them visible
            with open(tmp / name, "rb+") as fh:
                os.fsync(fh.fileno())


def read_index_dir(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """Load and check the files; returns tensors, metadata and a location string for errors."""
    directory = Path(directory)
    meta_path, tensor_path = directory / META_FILE, directory / TENSORS_FILE
    for p in (meta_path, tensor_path):
        if not p.is_file():
            raise BeamIndexError(f"{p}: missing (not a saved beam index directory?)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BeamIndexError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BeamIndexError(f"{meta_path}: field 'format' is not {FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise BeamIndexError(f"{meta_path}: field 'format_version' is {meta.get('format_version')!r}; this pitrec reads {FORMAT_VERSION}")
    for name, kind in _META_FIELDS.items():
        if name not in meta:
            raise BeamIndexError(f"{meta_path}: field {name!r} missing")
        if not isinstance(meta[name], kind) or isinstance(meta[name], bool):
            raise BeamIndexError(f"{meta_path}: field {name!r} has type {type(meta[name]).__name__}")
    digest = _sha256(tensor_path)
    if meta.get("sha256") != digest:
        raise BeamIndexError(f"{tensor_path}: checksum {digest[:12]}... does not match {meta_path} field 'sha256' "
                             "(file corrupt, truncated or replaced)")
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BeamIndexError(f"{tensor_path}: unreadable ({exc})") from None
    for name, dtype in _TENSOR_DTYPES.items():
        if name not in tensors:
            raise BeamIndexError(f"{tensor_path}: tensor {name!r} missing")
        if tensors[name].dtype != dtype:
            raise BeamIndexError(f"{tensor_path}: tensor {name!r} has dtype {tensors[name].dtype}, expected {dtype}")
    return tensors, meta, str(directory)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
