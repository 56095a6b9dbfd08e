"""Tiny SASRec runs on synthetic data (seconds each), so every Trainer guarantee is checked end
to end: data -> recipe -> Trainer -> run directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pitrec.config import Config, load_config
from pitrec.train.api import train_run

TINY_OVERRIDES = [
    "data.synthetic_users=120", "data.synthetic_items=50", "data.synthetic_clusters=4", "data.max_history=8",
    "sasrec.hidden=16", "sasrec.ffn=32", "sasrec.max_len=8", "sasrec.dropout=0.2", "sasrec.attn_dropout=0.2",
    "train.epochs=3", "train.batch_size=32", "train.lr=0.005", "train.patience=5",
    # one thread: tiny matrices gain nothing from two, and on a loaded machine two spin and cost 10x
    "run.progress=false", "run.seed=11", "run.num_threads=1",
]

# figures that measure the machine, not the model: they differ between any two runs
TIMING_KEYS = {"train_seconds", "train_cpu_seconds", "train_samples_per_s", "eval_users_per_s", "peak_rss_mb",
               "users_per_s", "epoch_seconds", "samples_per_s"}


def _tiny_cfg(out: Path | None, *overrides: str) -> Config:
    extra = [f"run.out={out}"] if out is not None else []
    return load_config("sasrec", overrides=TINY_OVERRIDES + extra + list(overrides))


def _without_timings(record):
    if isinstance(record, dict):
        return {k: _without_timings(v) for k, v in record.items() if k not in TIMING_KEYS}
    if isinstance(record, list):
        return [_without_timings(v) for v in record]
    return record


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """``train_run`` pins torch's thread count for the process; give the next test its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_cfg():
    """``tiny_cfg(out_dir_or_None, "section.key=value", ...)`` -> the tiny SASRec Config."""
    return _tiny_cfg


@pytest.fixture(scope="session")
def without_timings():
    """Drop the machine-dependent timing figures (recursively) from a result or log record."""
    return _without_timings


@pytest.fixture(scope="session")
def straight_run(tmp_path_factory) -> tuple[Path, dict]:
    """One uninterrupted tiny run (3 epochs), shared by the tests that inspect or compare with it."""
    out = tmp_path_factory.mktemp("straight") / "run"
    return out, train_run("sasrec", _tiny_cfg(out))
