"""Runs a benchmark plan: each run in its own subprocess, resumable, results merged after each.

Why a subprocess per run: peak memory is then per run, and a crash (or an OOM kill) fails that
run alone; the sweep goes on and reports it at the end. Why results are written after every run:
a sweep interrupted after five hours keeps what it measured.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from pitrec.bench.plan import RunSpec, protocol_of, run_state
from pitrec.bench.plots import run_curves
from pitrec.bench.results import build_results, load_results, now_iso, results_path, run_record, write_results
from pitrec.decoding.settings import decoding_settings
from pitrec.registry import RECIPES
from pitrec.train.run_dir import RunDir
from pitrec.utils.io import atomic_write_json, read_jsonl
from pitrec.utils.runtime import git_sha, machine_info, machine_summary

BENCH_META = "bench.json"  # written by the harness beside test_metrics.json after a run succeeds
LOG_NAME = "bench.log"
WORKER = [sys.executable, "-m", "pitrec.bench.worker"]  # + the request file


@dataclass
class Outcome:
    spec: RunSpec
    action: str  # skipped | ran | resumed | rerun | redecoded | failed
    record: dict[str, Any] | None = None
    message: str = ""


def provenance(command: str) -> dict[str, Any]:
    return {"git_sha": git_sha(), "machine": machine_summary(), "command": command, "machine_info": machine_info()}


def execute(runs: list[RunSpec], results_dir: str | Path, command: str, progress: bool = True,
            say: Callable[[str], None] = tqdm.write, poll_s: float = 1.0) -> list[Outcome]:
    prov = provenance(command)
    outcomes = []
    for i, spec in enumerate(runs, 1):
        outcome = run_one(spec, f"[{i}/{len(runs)}] {spec.name}", progress, say, poll_s)
        outcomes.append(outcome)
        if outcome.record is not None:
            update_results(results_dir, spec.dataset, protocol_of(spec.cfg), [outcome.record], prov)
        elif outcome.action == "failed" and drop_stale(results_dir, spec, prov):
            say(f"{spec.name}: removed its earlier result from the results file (made with another config)")
    return outcomes


def update_results(results_dir: str | Path, dataset: str, protocol: dict, records: list[dict], prov: dict,
                   existing: dict | None = None) -> Path:
    path = results_path(results_dir, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    # two sweeps of one dataset (e.g. one per method, in parallel) must not lose each other's runs
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if existing is None and path.is_file():
            existing = load_results(path)
        return write_results(path, build_results(dataset, protocol, records, prov, existing))


def drop_stale(results_dir: str | Path, spec: RunSpec, prov: dict) -> bool:
    """After a failed run, a recorded result for the same (method, variant, seed) from another
    config describes a run directory that was replaced: keeping it would report numbers the
    current config never produced."""
    path = results_path(results_dir, spec.dataset)
    if not path.is_file():
        return False
    doc = load_results(path)
    kept = [r for r in doc["runs"] if (r["method"], r["variant"], r["seed"]) != spec.key
            or r.get("config_hash") == spec.config_hash]
    if len(kept) == len(doc["runs"]):
        return False
    update_results(results_dir, spec.dataset, doc["protocol"], [], prov, existing=dict(doc, runs=kept))
    return True


def run_one(spec: RunSpec, desc: str, progress: bool, say: Callable[[str], None], poll_s: float) -> Outcome:
    state = run_state(spec)
    if state.kind == "done":
        say(f"{desc}: skipped ({state.detail})")
        return Outcome(spec, "skipped", _record(spec), state.detail)
    action = {"new": "ran", "partial": "resumed", "changed": "rerun", "redecode": "redecoded"}[state.kind]
    if state.kind == "redecode":
        say(f"{desc}: {state.detail}")
        returncode, wall = _spawn(spec, resume=False, desc=desc, progress=progress, poll_s=poll_s,
                                  redecode=state.changes)
        if returncode != 0:
            return _failed(spec, f"{desc}: FAILED to decode again", returncode, say)
        return _finished(spec, f"{desc}: decoded again", action, wall, say)
    if state.kind == "changed":
        say(f"{desc}: {state.detail}; deleting {spec.run_dir} and re-running")
        shutil.rmtree(spec.run_dir)
    elif state.kind == "partial":
        say(f"{desc}: {state.detail}")
    # the code the worker imports is the code checked out now: a commit made while it trains
    # must not be credited with its results
    started, sha = now_iso(), git_sha()
    returncode, wall = _spawn(spec, resume=state.kind == "partial", desc=desc, progress=progress, poll_s=poll_s)
    run = RunDir(spec.run_dir)
    if returncode != 0 or not run.test_metrics_path.is_file():
        return _failed(spec, f"{desc}: FAILED", returncode, say)
    meta = {"config_hash": spec.config_hash, "wall_seconds": wall, "started": started, "finished": now_iso(),
            "resumed": state.kind == "partial", "git_sha": sha, "machine": machine_summary()}
    atomic_write_json(run.path / BENCH_META, meta)
    return _finished(spec, f"{desc}: {action}", action, wall, say)


def _failed(spec: RunSpec, headline: str, returncode: int, say: Callable[[str], None]) -> Outcome:
    log = RunDir(spec.run_dir).path / LOG_NAME
    message = f"exit code {returncode}; last lines of {log}:\n{_tail(log)}"
    say(f"{headline} ({message})")
    return Outcome(spec, "failed", None, message)


def _finished(spec: RunSpec, headline: str, action: str, wall: float, say: Callable[[str], None]) -> Outcome:
    record = _record(spec)
    say(f"{headline} in {wall:.1f} s, test ndcg@10 {record['metrics'].get('ndcg@10', float('nan')):.4f}")
    return Outcome(spec, action, record)


def _record(spec: RunSpec) -> dict[str, Any]:
    run = RunDir(spec.run_dir)
    test_metrics = _read_json(run.test_metrics_path)
    meta = _read_json(run.path / BENCH_META) if (run.path / BENCH_META).is_file() else {}
    extras = {"run_dir": str(spec.run_dir), "config_hash": spec.config_hash,
              **{k: meta[k] for k in ("wall_seconds", "git_sha", "machine", "finished", "resumed") if k in meta}}
    method = spec.method.method
    decoding = decoding_settings(spec.cfg, method)  # how the test ranking was decoded (tiger.last_level ...)
    if decoding:
        extras["decoding"] = decoding
    if test_metrics.get("redecoded"):  # measured again with other decoding settings after training
        extras["redecoded"] = test_metrics["redecoded"]
    curves = run_curves(spec.run_dir)
    if curves is not None:
        extras["curves"] = curves
    return run_record(spec.method.method, spec.method.variant, spec.seed, test_metrics, list(spec.cfg.eval.ks), extras)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _spawn(spec: RunSpec, resume: bool, desc: str, progress: bool, poll_s: float,
           redecode: dict | None = None) -> tuple[int, float]:
    """Run the worker; while it trains, follow its metrics.jsonl to show epochs, ETA and the
    best validation score."""
    run = RunDir(spec.run_dir).create()
    request = run.path / "bench_request.json"
    atomic_write_json(request, {"method": spec.method.method, "resume": resume, "config": spec.cfg.to_dict(),
                                **({"redecode": redecode} if redecode else {})})
    trainable = RECIPES.get(spec.method.method).trainable
    total = spec.cfg.train.epochs if trainable else 1  # a method without epochs is one step
    done_epochs = _epochs_logged(run) if resume else 0
    bar = tqdm(total=total, initial=done_epochs, desc=desc, unit="epoch" if trainable else "run", disable=not progress,
               dynamic_ncols=True, leave=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    with open(run.path / LOG_NAME, "a", encoding="utf-8") as log:
        verb = "redecode" if redecode else "resume" if resume else "start"
        log.write(f"\n=== {now_iso()} {verb} {spec.name} (config {spec.config_hash})\n")
        log.flush()
        proc = subprocess.Popen([*WORKER, str(request)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while True:
                try:
                    proc.wait(timeout=poll_s)
                    break
                except subprocess.TimeoutExpired:
                    _follow(run, bar, spec.cfg.eval.valid_metric)
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            if proc.returncode == 0:
                _follow(run, bar, spec.cfg.eval.valid_metric)
                if not trainable:
                    bar.update(1)
            bar.close()
    return proc.returncode, time.perf_counter() - start


def _epochs_logged(run: RunDir) -> int:
    records = read_jsonl(run.metrics_path)
    return int(records[-1].get("epoch", 0)) if records else 0


def _follow(run: RunDir, bar: tqdm, metric: str) -> None:
    try:
        records = read_jsonl(run.metrics_path)
    except ValueError:  # a damaged log is the run's problem to report; the display just waits
        return
    if not records:
        return
    epoch = int(records[-1].get("epoch", 0))
    if epoch > bar.n:
        bar.update(epoch - bar.n)
    best = records[-1].get(f"best_{metric}")
    if best is not None:
        bar.set_postfix_str(f"best valid {metric} {best:.4f}", refresh=True)


def _tail(path: Path, lines: int = 20) -> str:
    if not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
