"""The SID stage: ``sid_table(cfg, data, embeddings, run=None)`` -> a ``SidTable`` with the
configured collision policy applied.

Fitting an RQ-VAE takes minutes and every seed/method of a benchmark should decode over the
same SIDs, so tables are cached as artifacts under ``<cache>/sids/<key>/`` (``sid_table.json``,
``config.yaml``, ``stats.json``), where ``key`` hashes the embeddings, the tokenizer config
(cache settings excluded), the seed, the catalogue's raw item ids and, for imports, the bytes of
the imported file. A run directory gets its own copy (``sid_table.json``, ``sid_stats.json``,
``sid_config.yaml``) so it can be served without the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import yaml

from pitrec.data.interactions import Interactions
from pitrec.registry import TOKENIZERS
from pitrec.tokenizers.collisions import apply_collision_policy
from pitrec.tokenizers.sid_table import SidTable
from pitrec.utils.io import atomic_dir, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)
KEY_FORMAT = 1


def sid_table(cfg, data: Interactions, embeddings: np.ndarray | None, run=None) -> SidTable:
    """Build (or load from the cache) the SID table of ``data``'s items; copy it into ``run``."""
    tc = cfg.tokenizer
    seed = tokenizer_seed(cfg)
    tokenizer = TOKENIZERS.get(tc.name)(tc, progress=cfg.run.progress)
    key = sid_cache_key(tc, seed, data, embeddings if tokenizer.needs_embeddings else None)
    folder = Path(tc.cache_dir or cfg.embed.cache_dir).expanduser() / "sids" / key
    table = _load_saved(folder, data) if tc.use_cache else None
    if table is None:
        raw = tokenizer.fit(embeddings, data, seed)
        table = apply_collision_policy(raw, tc.collision)
        table.item_ids = list(data.item_ids)
        if tc.use_cache:
            with atomic_dir(folder) as tmp:
                write_artifacts(table, tc, tmp, "sid_table.json", "config.yaml", "stats.json")
        _log_summary(table)
    if run is not None:
        write_artifacts(table, tc, Path(run.path), "sid_table.json", "sid_config.yaml", "sid_stats.json")
    return table


def trained_sid_table(run_dir: str | Path | None, data: Interactions) -> SidTable | None:
    """The SID table a run directory's checkpoint was trained on (its ``sid_table.json``), or
    None when there is none. Re-evaluating or resuming a run reads it instead of building the
    stage again: a rebuild fits on inputs whose last float bits depend on the machine and on its
    BLAS thread count (the collaborative SVD: beauty's seed-0 table under OMP_NUM_THREADS=1 is not
    the one built with 2 threads, and has other codebook sizes), and the checkpoint would not fit it."""
    return None if run_dir is None else _load_saved(Path(run_dir), data, "the run directory (the checkpoint's own)")


def tokenizer_seed(cfg) -> int:
    """``tokenizer.seed``, else ``run.seed``: every seeded step of the SID stage uses this one."""
    return cfg.tokenizer.seed if cfg.tokenizer.seed is not None else cfg.run.seed


def write_artifacts(table: SidTable, tc, folder: Path, table_name: str, config_name: str, stats_name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    table.save(folder / table_name)
    atomic_write_text(folder / config_name, yaml.safe_dump({"tokenizer": tc.model_dump(mode="json")}, sort_keys=False))
    atomic_write_json(folder / stats_name, table.stats())


def sid_cache_key(tc, seed: int, data: Interactions, embeddings: np.ndarray | None) -> str:
    h = hashlib.sha256()
    settings = tc.model_dump(mode="json", exclude={"cache_dir", "use_cache", "seed"})
    if tc.name != "rqvae":
        settings.pop("rqvae")
    if not tc.name.startswith("rqkmeans"):
        settings.pop("kmeans")
    h.update(json.dumps({"format": KEY_FORMAT, "tokenizer": settings, "seed": seed,
                         "items": [str(i) for i in data.item_ids]}, sort_keys=True).encode())
    if embeddings is not None:
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        h.update(str(emb.shape).encode())
        h.update(emb.tobytes())
    if tc.name == "import" and tc.import_path and Path(tc.import_path).expanduser().is_file():
        h.update(Path(tc.import_path).expanduser().read_bytes())
    return h.hexdigest()[:24]


def _load_saved(folder: Path, data: Interactions, what: str = "cache") -> SidTable | None:
    """``folder/sid_table.json`` checked against ``data``'s catalogue, or None when it is absent."""
    path = folder / "sid_table.json"
    if not path.is_file():
        return None
    table = SidTable.load(path)
    table.check_catalog(list(data.item_ids), source=str(path))
    log.info("SID table loaded from %s %s", what, folder)
    return table


def _log_summary(table: SidTable) -> None:
    s = table.stats()
    before = s.get("before_policy", {})
    log.info("SID table (%s): %d items, %d levels %s, collision rate before policy %.4f, distinct %d",
             s.get("tokenizer"), s["n_items"], s["n_levels"], s["codebook_sizes"],
             before.get("collision_rate", s["collision_rate"]), s["distinct_sids"])
