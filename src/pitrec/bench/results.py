"""The results file ``benchmarks/results/<dataset>.json``: the contract of
``docs/architecture.md`` ("Results schema"), validated on every read and write.

Benchmarks are run piecewise (popularity today, SASRec tomorrow, PIT next week), so a write
merges: runs with the same (method, variant, seed) are replaced, all others kept, and the summary
is recomputed from the merged runs. Every run keeps its own git sha, machine and date, because
the file-level ones only describe the latest write.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pitrec.bench.spec import MAIN_VARIANT, BenchError
from pitrec.utils.io import atomic_write_json

REQUIRED_METRICS = tuple(f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20))
SPEED_KEYS = ("train_seconds", "train_samples_per_s", "eval_users_per_s", "peak_rss_mb")
# Summarised besides the metrics when runs carry them (timings of whole subprocesses, epochs).
EXTRA_SUMMARY_KEYS = ("wall_seconds", "train_cpu_seconds", "epochs", "time_to_accuracy_s")
METHOD_ORDER = ("popularity", "content-knn", "sasrec", "tiger", "pit")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class MetricStat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mean: float
    std: float
    n: int = Field(ge=1)


class ProtocolRecord(_Open):
    split: str
    ranking: str
    max_history: int
    ks: list[int]


class RunRecord(_Open):
    method: str
    variant: str
    seed: int
    metrics: dict[str, float]
    train_seconds: float
    train_samples_per_s: float
    eval_users_per_s: float
    peak_rss_mb: float

    @field_validator("metrics")
    @classmethod
    def _required_metrics(cls, v: dict[str, float]) -> dict[str, float]:
        missing = [m for m in REQUIRED_METRICS if m not in v]
        if missing:
            raise ValueError(f"missing metrics {missing}")
        return v


class ResultsFile(_Open):
    dataset: str
    protocol: ProtocolRecord
    git_sha: str
    machine: str
    command: str
    created: str
    runs: list[RunRecord]
    summary: dict[str, dict[str, MetricStat]]


def summary_label(method: str, variant: str) -> str:
    return method if variant == MAIN_VARIANT else f"{method}/{variant}"


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def run_record(method: str, variant: str, seed: int, test_metrics: dict[str, Any], ks: list[int],
               extras: dict[str, Any]) -> dict[str, Any]:
    """A results ``runs[]`` entry from a run's ``test_metrics.json`` (written by the Trainer).

    Scalar keys the recipe adds to its result (e.g. PIT's ``time_to_accuracy_s``) are carried over.
    """
    test = test_metrics["test"]
    names = [f"{m}@{k}" for m in ("recall", "ndcg") for k in ks]
    missing = [n for n in names if n not in test]
    if missing:
        raise BenchError(f"{extras.get('run_dir', 'run')}: test_metrics.json lacks {missing}")
    record: dict[str, Any] = {"method": method, "variant": variant, "seed": seed,
                              "metrics": {n: float(test[n]) for n in names},
                              **{k: float(test_metrics[k]) for k in SPEED_KEYS},
                              "epochs": test_metrics.get("epochs_run"), "eval_users": test.get("users")}
    skip = {"method", "test", "dataset", "seed", "epochs_run", *record}
    for key, value in test_metrics.items():
        if key not in skip and (value is None or isinstance(value, (int, float, str, bool))):
            record[key] = value
    record.update(extras)
    return record


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean, sample standard deviation (n-1; 0 for a single run) and count per label and metric."""
    groups: dict[str, list[dict]] = {}
    for run in _sorted(runs):
        groups.setdefault(summary_label(run["method"], run["variant"]), []).append(run)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for label, group in groups.items():
        stats: dict[str, dict[str, float]] = {}
        metric_names = [m for m in group[0]["metrics"]]
        columns = {m: [r["metrics"].get(m) for r in group] for m in metric_names}
        columns.update({k: [r.get(k) for r in group] for k in (*SPEED_KEYS, *EXTRA_SUMMARY_KEYS)})
        for name, values in columns.items():
            present = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if present:
                stats[name] = mean_std(present)
        out[label] = stats
    return out


def mean_std(values: list[float]) -> dict[str, float]:
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}


def merge_runs(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New runs replace old ones with the same (method, variant, seed); the rest are kept."""
    merged = {(r["method"], r["variant"], r["seed"]): r for r in old}
    merged.update({(r["method"], r["variant"], r["seed"]): r for r in new})
    return _sorted(list(merged.values()))


def _sorted(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(r: dict) -> tuple:
        m = r["method"]
        rank = METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER)
        return rank, m, r["variant"] != MAIN_VARIANT, r["variant"], r["seed"]

    return sorted(runs, key=key)


def build_results(dataset: str, protocol: dict[str, Any], new_runs: list[dict[str, Any]], provenance: dict[str, Any],
                  existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """The merged results document; ``provenance`` holds git_sha, machine, command (and extras)."""
    old_runs: list[dict[str, Any]] = []
    if existing is not None:
        if existing["protocol"] != protocol:
            raise BenchError(f"results for {dataset} were made with protocol {existing['protocol']}, this "
                             f"benchmark uses {protocol}; numbers would not be comparable. Move the old file "
                             "away or write to another results_dir")
        old_runs = existing["runs"]
    runs = merge_runs(old_runs, new_runs)
    doc = {"dataset": dataset, "protocol": protocol, **provenance, "created": now_iso(),
           "runs": runs, "summary": summarize(runs)}
    validate(doc, f"results for {dataset}")
    return doc


def validate(doc: Any, source: str) -> dict[str, Any]:
    try:
        ResultsFile.model_validate(doc)
    except ValidationError as exc:
        msgs = [f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()]
        raise BenchError(f"{source}: not a valid results file: " + "; ".join(msgs)) from None
    return doc


def results_path(results_dir: str | Path, dataset: str) -> Path:
    return Path(results_dir) / f"{dataset}.json"


def load_results(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"results file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise BenchError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    return validate(doc, str(path))


def is_bench_results(path: str | Path) -> bool:
    """True for a per-dataset ``pitrec bench run`` results file (it names its dataset and protocol).

    Other benchmark scripts write JSON into the same folder; this tells them apart without
    validating, so a damaged results file still fails loudly in :func:`load_results`.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return True
    return isinstance(doc, dict) and "dataset" in doc and "protocol" in doc


def write_results(path: str | Path, doc: dict[str, Any]) -> Path:
    validate(doc, str(path))
    atomic_write_json(path, doc)
    return Path(path)


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """Where a standalone benchmark's figures come from: git sha, machine, command line, time."""
    import shlex
    import sys

    from pitrec.utils.runtime import git_sha, machine_info, machine_summary

    args = sys.argv if argv is None else argv
    return {"git_sha": git_sha(), "machine": machine_summary(), "machine_info": machine_info(),
            "command": "python " + " ".join(shlex.quote(a) for a in args),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def save_labelled_record(json_path: str | Path, record: dict[str, Any], render) -> dict[str, Any]:
    """Add ``record`` to a standalone benchmark's ``{"runs": [...]}`` file, replacing the run with
    the same label, and rewrite the Markdown beside it (``render(doc)``); both written atomically,
    under a lock so that two runs finishing together do not lose each other's record."""
    import fcntl

    from pitrec.utils.io import atomic_write_text

    path = Path(json_path)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"runs": []}
        doc["runs"] = [r for r in doc["runs"] if r["label"] != record["label"]] + [record]
        atomic_write_json(path, doc)
        atomic_write_text(path.with_suffix(".md"), render(doc))
    return doc
