"""Does glibc handing freed memory back to the kernel slow decoding down?

    python benchmarks/tuning/decode_alloc_probe.py RUN_DIR [--batches 6] [--batch 256] [--repeats 2] [--threads 1]

Constrained beam search frees and allocates blocks of a few MiB at every level of every batch (the
KV cache reordered by beam, the scores of every beam x code); under glibc's defaults blocks that
large come from fresh mmaps whose pages the kernel must zero on first touch. This ranks the same
test users with the served engine (``Recommender``, the run's best checkpoint) in child processes,
alternating glibc's defaults and ``run.retain_freed_memory`` (``pitrec.utils.runtime``), and
reports CPU ms per batch (user and kernel), minor page faults per batch, peak RSS, and whether
both rankings were identical. One thread by default: the per-process CPU time is what a loaded
machine pays, whatever else runs beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time

import numpy as np


def child(run_dir: str, batches: int, batch: int, threads: int, retain: bool) -> dict:
    from pitrec.serve.recommender import Recommender, _padded
    from pitrec.train.api import prepare_data

    rec = Recommender.load(run_dir, persist=False, threads=threads, retain_memory=retain)
    _, split = prepare_data(rec.run.cfg)
    users = np.random.default_rng(0).choice(split.n_users, size=(batches + 1) * batch, replace=False)
    histories = [split.test_history[u][-rec.run.cfg.data.max_history:] for u in users]
    engine, digest = rec.engine, hashlib.sha256()
    engine.rank(_padded(histories[:batch]), 10, False, False)  # warm-up: the heap grows once
    before, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for i in range(1, batches + 1):
        ranked = engine.rank(_padded(histories[i * batch:(i + 1) * batch]), 10, False, False)
        digest.update(json.dumps([[r.item for r in row] for row in ranked]).encode())
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"retain": retain, "user_ms": 1000 * (after.ru_utime - before.ru_utime) / batches,
            "sys_ms": 1000 * (after.ru_stime - before.ru_stime) / batches,
            "faults": (after.ru_minflt - before.ru_minflt) / batches,
            "wall_ms": 1000 * (time.perf_counter() - wall) / batches,
            "peak_rss_mb": after.ru_maxrss / 1024, "ranking_sha": digest.hexdigest()[:12]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", choices=["default", "retain"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.run_dir, args.batches, args.batch, args.threads, args.child == "retain")))
        return
    rows = []
    for _ in range(args.repeats):
        for mode in ("default", "retain"):
            out = subprocess.run([sys.executable, __file__, args.run_dir, "--batches", str(args.batches), "--batch",
                                  str(args.batch), "--threads", str(args.threads), "--child", mode],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    print(f"\n{args.run_dir}: {args.batches} batches of {args.batch} users per process, top-10, "
          f"{args.threads} thread(s), alternating\n")
    print("| malloc | user ms per batch | kernel ms per batch | CPU ms per batch | users per CPU-s | "
          "minor faults per batch | wall ms per batch | peak RSS MB | ranking |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        cpu = r["user_ms"] + r["sys_ms"]
        print(f"| {'retain freed memory' if r['retain'] else 'glibc defaults'} | {r['user_ms']:.0f} | {r['sys_ms']:.0f} | "
              f"{cpu:.0f} | {1000 * args.batch / cpu:.0f} | {r['faults']:,.0f} | {r['wall_ms']:.0f} | "
              f"{r['peak_rss_mb']:,.0f} | `{r['ranking_sha']}` |")


if __name__ == "__main__":
    main()
