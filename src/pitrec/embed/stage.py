"""The embedding stage: ``item_embeddings(cfg, data)`` -> float32 ``(n_items, d)``.

Encoding 12k titles with MiniLM takes minutes on a laptop CPU, and every tokenizer, seed and
method of a benchmark needs the same vectors, so they are cached on disk under
``<embed.cache_dir>/embeddings/<key>.npy`` where ``key`` hashes the exact item texts, the
attribute ids, and the encoder's identity (model, source, settings). Anything that would change
the vectors changes the key; a rerun with the same inputs loads the file instead of encoding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pitrec.data.errors import DataError
from pitrec.data.interactions import Interactions
from pitrec.embed.encoders import ContentEncoder, EncoderUnavailable
from pitrec.embed.text import item_texts
from pitrec.registry import ENCODERS
from pitrec.utils.io import atomic_save_npy, atomic_write_json

log = logging.getLogger(__name__)
CACHE_FORMAT = 1


@dataclass
class EmbeddingResult:
    vectors: np.ndarray  # (n_items, d) float32
    info: dict[str, Any] = field(default_factory=dict)  # encoder identity, timing, cache path/hit


def item_embeddings(cfg, data: Interactions) -> np.ndarray:
    """Content embeddings of every dense item, from the cache when the inputs are unchanged."""
    return compute_item_embeddings(cfg, data).vectors


def compute_item_embeddings(cfg, data: Interactions) -> EmbeddingResult:
    ec = cfg.embed
    if ec.encoder == "npy":
        return EmbeddingResult(load_precomputed(ec.npy_path, data.n_items),
                               {"encoder": "npy", "path": ec.npy_path, "cache_hit": False})
    encoder = make_encoder(ec)
    texts = item_texts(data, ec.include_attributes)
    key = cache_key(texts, data, encoder.identity())
    path = Path(ec.cache_dir).expanduser() / "embeddings" / f"{key}.npy"
    info: dict[str, Any] = {**encoder.identity(), "key": key, "cache_path": str(path), "n_items": data.n_items}
    if ec.use_cache and path.is_file():
        vectors = np.load(path, allow_pickle=False)
        if vectors.shape[0] == data.n_items:
            meta_path = path.with_suffix(".json")
            saved = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            return EmbeddingResult(vectors, {**info, "cache_hit": True, "encode_seconds": saved.get("encode_seconds")})
        log.warning("cached embeddings %s have %d rows for %d items; re-encoding", path, vectors.shape[0], data.n_items)
    start = time.perf_counter()
    vectors = np.ascontiguousarray(encoder.encode(texts, progress=cfg.run.progress), dtype=np.float32)
    info.update(cache_hit=False, encode_seconds=time.perf_counter() - start, dim=int(vectors.shape[1]))
    if vectors.shape[0] != data.n_items:
        raise RuntimeError(f"encoder {encoder.name} returned {vectors.shape[0]} rows for {data.n_items} items")
    if ec.use_cache:
        atomic_save_npy(path, vectors)
        atomic_write_json(path.with_suffix(".json"), info)
    return EmbeddingResult(vectors, info)


def make_encoder(ec) -> ContentEncoder:
    """The configured encoder; an unloadable sentence-transformers model falls back to TF-IDF
    (with a warning saying so) when ``embed.fallback_to_tfidf`` allows it."""
    cls = ENCODERS.get(ec.encoder)
    try:
        return cls(ec)
    except EncoderUnavailable as exc:
        if not ec.fallback_to_tfidf or ec.encoder == "tfidf":
            raise
        message = (f"content encoder {ec.encoder!r} unavailable: {exc}. Falling back to TF-IDF + "
                   f"TruncatedSVD ({ec.tfidf_dim} dims); set embed.fallback_to_tfidf=false to fail instead.")
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        log.warning(message)
        return ENCODERS.get("tfidf")(ec)


def cache_key(texts: list[str], data: Interactions, identity: dict[str, Any]) -> str:
    attrs = None
    if data.item_attributes is not None:
        raw = data.attribute_ids
        attrs = [[raw[a] if raw is not None else a for a in row] for row in data.item_attributes]
    payload = json.dumps({"format": CACHE_FORMAT, "texts": texts, "attributes": attrs, "encoder": identity},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


def load_precomputed(path: str | None, n_items: int) -> np.ndarray:
    """A user-supplied ``.npy``: one row per dense item, in dense item order."""
    if not path:
        raise DataError(None, "embed.encoder=npy needs embed.npy_path (a .npy file, one row per item)")
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(p, "no such embeddings file")
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise DataError(p, f"not a readable .npy array ({exc})") from None
    if arr.ndim != 2:
        raise DataError(p, f"expected a 2-D array (n_items, d), got shape {arr.shape}")
    if arr.shape[0] != n_items:
        raise DataError(p, f"{arr.shape[0]} rows but the catalogue has {n_items} items "
                           f"(row i must be the vector of dense item i)")
    if not np.isfinite(arr).all():
        row = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise DataError(p, f"row {row} holds NaN or infinite values", field=f"row {row}")
    return np.ascontiguousarray(arr, dtype=np.float32)
