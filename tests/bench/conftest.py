"""Fixtures for the benchmark harness: results records built by hand (so schema, statistics and
reports are tested without training) and a tiny bench config on the synthetic data."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

METRICS = ("recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20")


@pytest.fixture
def make_run() -> Callable[..., dict[str, Any]]:
    def make(method: str = "sasrec", variant: str = "full", seed: int = 0, base: float = 0.1, **extra) -> dict[str, Any]:
        metrics = {m: base + i / 1000 for i, m in enumerate(METRICS)}
        return {"method": method, "variant": variant, "seed": seed, "metrics": metrics, "train_seconds": 10.0 + seed,
                "train_samples_per_s": 1000.0, "eval_users_per_s": 5000.0, "peak_rss_mb": 300.0, **extra}

    return make


@pytest.fixture
def write_bench(tmp_path: Path) -> Callable[..., Path]:
    """A bench config on tiny synthetic data with runs and results under ``tmp_path``."""

    def write(**changes) -> Path:
        doc = {
            "name": "test",
            "datasets": {"tiny": {"path": "synthetic",
                                  "data": {"synthetic_users": 120, "synthetic_items": 50, "synthetic_clusters": 4}}},
            "methods": [{"method": "popularity"},
                        {"method": "sasrec", "overrides": {"train": {"epochs": 1, "batch_size": 64},
                                                           "sasrec": {"hidden": 8, "layers": 1, "heads": 1,
                                                                      "ffn": 16, "max_len": 10}}}],
            "seeds": [0],
            "overrides": {"run": {"num_threads": 1}},
            "runs_dir": str(tmp_path / "runs"),
            "results_dir": str(tmp_path / "results"),
            "progress": False,
            **changes,
        }
        path = tmp_path / "bench.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return write
