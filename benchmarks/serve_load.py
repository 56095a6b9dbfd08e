"""Load test of `pitrec serve`: concurrent clients ask for recommendations while items are added
(and feedback recorded) on the same server, for a bounded time and request count.

The server runs in a subprocess on loopback (a fresh state directory, so the run directory is
never written); the clients are threads with one HTTP connection each, so the figures include
HTTP, JSON and the thread pool, not just the model. Each run is one entry, keyed by ``--label``,
in ``benchmarks/results/serve_load.json`` and the table in ``serve_load.md``.

    python benchmarks/serve_load.py RUN_DIR --label synthetic-pit [--seconds 60] [--clients 4]

Histories are random catalogue items, 1 to ``--max-history`` of them (uniform length): the service
cost depends on history length and k, not on which items they are. On a shared machine the other
tenants' load changes the numbers: the load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from pitrec.utils.io import atomic_write_json, atomic_write_text
from pitrec.utils.runtime import git_sha, machine_info

RESULTS = Path(__file__).resolve().parent / "results"
MAX_SECONDS = 600


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--label", required=True, help="results key, e.g. synthetic-pit or beauty-pit")
    p.add_argument("--seconds", type=float, default=60.0, help=f"load duration (at most {MAX_SECONDS})")
    p.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    p.add_argument("--max-requests", type=int, default=200_000, help="stop after this many recommendations")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--max-history", type=int, default=10)
    p.add_argument("--insert-every", type=float, default=1.0, help="seconds between item inserts (0: none)")
    p.add_argument("--feedback-every", type=float, default=1.0, help="seconds between feedback posts (0: none)")
    p.add_argument("--threads", type=int, default=1, help="server torch threads")
    p.add_argument("--max-batch", type=int, default=64, help="server micro-batch size (0: one model pass per request)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="the server's generator precision")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS / "serve_load")
    p.add_argument("--note", default="", help="free text stored with the result")
    args = p.parse_args(argv)
    if not 0 < args.seconds <= MAX_SECONDS or args.clients < 1 or args.max_requests < 1:
        p.error(f"need 0 < --seconds <= {MAX_SECONDS}, --clients >= 1 and --max-requests >= 1")
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, state_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pitrec.cli", "serve", str(args.run_dir), "--host", "127.0.0.1", "--port", str(port),
           "--state-dir", str(state_dir), "--threads", str(args.threads), "--max-batch", str(args.max_batch),
           "--dtype", args.dtype, "--log-level", "warning"]
    return subprocess.Popen(cmd, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def wait_healthy(base: str, server: subprocess.Popen, log_path: Path, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"{base}/health", timeout=2.0).raise_for_status().json()
        except httpx.HTTPError:
            time.sleep(0.5)
    raise TimeoutError(f"the server did not answer /health within {timeout:.0f} s")


class Recorder:
    """Thread-safe latency and error bookkeeping per request kind."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.versions: set[int] = set()

    def add(self, kind: str, seconds: float, response: httpx.Response | None, error: str | None = None) -> None:
        with self.lock:
            if error is None and response is not None and response.is_success:
                self.latency.setdefault(kind, []).append(seconds)
                self.versions.add(int(response.json()["version"]))
            else:
                detail = error if error is not None else f"{response.status_code} {response.text[:200]}"
                self.errors.append(f"{kind}: {detail}")

    def count(self, kind: str) -> int:
        with self.lock:
            return len(self.latency.get(kind, []))


def timed_post(client: httpx.Client, recorder: Recorder, kind: str, path: str, body: dict) -> None:
    start = time.perf_counter()
    try:
        response = client.post(path, json=body)
        recorder.add(kind, time.perf_counter() - start, response)
    except httpx.HTTPError as exc:
        recorder.add(kind, time.perf_counter() - start, None, f"{type(exc).__name__}: {exc}")


def run_load(args: argparse.Namespace, base: str, catalog: dict) -> tuple[Recorder, float]:
    items, titles = catalog["item_ids"], catalog.get("item_text") or [""]
    attributes = catalog.get("attribute_ids") or []
    words = sorted({w for t in titles for w in (t or "").split()}) or ["item"]
    recorder, stop = Recorder(), threading.Event()
    added: list[Any] = []

    def history(rng: random.Random) -> list:
        return [rng.choice(items) for _ in range(rng.randint(1, args.max_history))]

    def client_loop(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=60.0) as client:
            while not stop.is_set() and recorder.count("recommend") < args.max_requests:
                timed_post(client, recorder, "recommend", "/recommend", {"history": history(rng), "k": args.k})

    def writer_loop(kind: str, every: float, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=60.0) as client:
            n = 0
            while not stop.wait(every):
                if kind == "insert":
                    item_id = f"load-{args.seed}-{n}"
                    body = {"id": item_id, "title": " ".join(rng.choices(words, k=6)),
                            "attributes": rng.sample(attributes, min(2, len(attributes)))}
                    timed_post(client, recorder, "insert", "/items", body)
                    added.append(item_id)
                else:
                    target = rng.choice(added) if added and rng.random() < 0.5 else rng.choice(items)
                    timed_post(client, recorder, "feedback", "/feedback", {"history": history(rng), "item": target})
                n += 1

    threads = [threading.Thread(target=client_loop, args=(args.seed * 1000 + i,)) for i in range(args.clients)]
    if args.insert_every > 0:
        threads.append(threading.Thread(target=writer_loop, args=("insert", args.insert_every, args.seed + 1)))
    if args.feedback_every > 0:
        threads.append(threading.Thread(target=writer_loop, args=("feedback", args.feedback_every, args.seed + 2)))
    start = time.perf_counter()
    for t in threads:
        t.start()
    while time.perf_counter() - start < args.seconds and recorder.count("recommend") < args.max_requests:
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join()
    return recorder, time.perf_counter() - start


def summarise(latencies: list[float], seconds: float) -> dict[str, float]:
    if not latencies:
        return {"requests": 0}
    ms = np.asarray(latencies) * 1000
    return {"requests": len(ms), "per_s": len(ms) / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with gzip.open(args.run_dir / "catalog.json.gz", "rt", encoding="utf-8") as fh:
        catalog = json.load(fh)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        log_path = Path(tmp) / "server.log"
        boot = time.perf_counter()
        server = start_server(args, Path(tmp) / "state", port, log_path)
        try:
            health = wait_healthy(base, server, log_path)
            startup = time.perf_counter() - boot
            # the first insert fits the text encoder (seconds): do it before the clock starts
            warmup = {"id": f"load-{args.seed}-warmup", "title": "warm up"}
            first = httpx.post(f"{base}/items", json=warmup, timeout=600)
            load_before = os.getloadavg()
            recorder, seconds = run_load(args, base, catalog)
            load_after = os.getloadavg()
            stats = httpx.get(f"{base}/stats", timeout=30).json()
        finally:
            server.terminate()
            server.wait(timeout=60)
    result = {
        "label": args.label, "run_dir": str(args.run_dir), "method": health["method"],
        "catalogue_items": health["items"], "seconds": seconds, "server_startup_s": startup,
        "first_insert": {"status": first.status_code, "detail": first.json().get("detail")},
        "clients": args.clients, "max_batch": args.max_batch, "k": args.k, "max_history": args.max_history,
        "server_torch_threads": args.threads, "dtype": args.dtype,
        "insert_every_s": args.insert_every, "feedback_every_s": args.feedback_every,
        "recommend": summarise(recorder.latency.get("recommend", []), seconds),
        "insert": summarise(recorder.latency.get("insert", []), seconds),
        "feedback": summarise(recorder.latency.get("feedback", []), seconds),
        "errors": len(recorder.errors), "error_examples": recorder.errors[:10],
        "index_versions_seen": [min(recorder.versions), max(recorder.versions)] if recorder.versions else [],
        "final_stats": {k: stats[k] for k in ("version", "items", "items_added", "feedback_accepted", "sids", "edges",
                                               "batching")},
        "load_average_before": load_before, "load_average_after": load_after,
        "git_sha": git_sha(), "machine": machine_info(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/serve_load.py", *(sys.argv[1:] if argv is None else argv)]),
        "note": args.note,
    }
    write_results(args.out, result)
    print(json.dumps({k: result[k] for k in ("label", "recommend", "insert", "feedback", "errors")}, indent=1))
    return 0 if not recorder.errors else 1


def write_results(out: Path, result: dict) -> None:
    path = out.with_suffix(".json")
    runs = json.loads(path.read_text())["runs"] if path.is_file() else []
    runs = [r for r in runs if r["label"] != result["label"]] + [result]
    atomic_write_json(path, {"runs": runs})
    atomic_write_text(out.with_suffix(".md"), render(runs))


def render(runs: list[dict]) -> str:
    lines = ["# `pitrec serve` under load", "",
             "Generated by `benchmarks/serve_load.py` (command, git sha and machine per run in `serve_load.json`).",
             "Concurrent clients POST /recommend for the whole window while one thread adds an item and another "
             "posts feedback at a fixed interval; latencies are client-side, over loopback HTTP, with the clients "
             "on the same machine as the server. A `-dirty` git sha means uncommitted edits somewhere in the shared "
             "checkout (other helpers' work in progress).", "",
             "| run | method | items | clients | max batch (mean) | k | recommend/s | p50 ms | p99 ms | "
             "inserts (p50 ms) | feedback (p50 ms) | errors | versions | load avg before/after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for r in runs:
        rec, ins, fb = r["recommend"], r["insert"], r["feedback"]
        versions = "-".join(str(v) for v in r["index_versions_seen"])
        mean_batch = r["final_stats"].get("batching", {}).get("mean_batch", 1.0)
        lines.append(f"| {r['label']} | {r['method']} | {r['catalogue_items']:,} | {r['clients']} | "
                     f"{r['max_batch']} ({mean_batch:.1f}) | {r['k']} | {rec.get('per_s', 0):.1f} | "
                     f"{rec.get('p50_ms', nan):.1f} | {rec.get('p99_ms', nan):.1f} | "
                     f"{ins['requests']} ({ins.get('p50_ms', nan):.0f}) | "
                     f"{fb['requests']} ({fb.get('p50_ms', nan):.0f}) | {r['errors']} | {versions} | "
                     f"{r['load_average_before'][0]:.1f} / {r['load_average_after'][0]:.1f} |")
    lines.append("")
    for r in runs:
        m = r["machine"]
        lines += [f"- **{r['label']}**: `{r['command']}` at {r['git_sha']} on {m['processor']} "
                  f"({m['cpu_count']} cores), {r['date']}, {r['seconds']:.0f} s, server start-up "
                  f"{r['server_startup_s']:.0f} s.", f"  {r['note']}" if r["note"] else ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
