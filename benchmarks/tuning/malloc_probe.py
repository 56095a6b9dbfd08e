"""Does glibc's malloc returning memory to the kernel slow training down?

    python benchmarks/tuning/malloc_probe.py RUN_DIR [--recipe tiger] [--steps 120] [--repeats 2]

Bench workers fault in pages all the time (an 80-minute TIGER run: 82 million minor page faults,
bursts of 50,000 a second with 8% of its CPU time in the kernel). Window batches change shape every
step; glibc serves large blocks with mmap and trims the heap when they are freed, so the next
step's tensors land on fresh pages that the kernel must zero. This times the same training steps
(the run's latest weights, one thread, the same batches drawn from an epoch) in child processes,
alternating: glibc's defaults, and ``pitrec.utils.runtime.retain_freed_memory()``, which raises the mmap and
trim thresholds so freed memory is reused. Reports CPU ms per step (user and kernel),
minor page faults per step and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def child(run_dir: str, recipe_name: str, steps: int, retain: bool) -> dict:
    from pitrec.utils.runtime import retain_freed_memory, set_threads

    if retain and not retain_freed_memory():
        raise RuntimeError("mallopt is not available here (glibc only)")
    from pitrec.train.api import recipe_at_checkpoint
    from pitrec.train.trainer import build_adamw
    from window_stride import timed_step  # this folder's; the Trainer's step

    set_threads(1)
    recipe, _ = recipe_at_checkpoint(recipe_name, run_dir)
    cfg = recipe.cfg
    opt = build_adamw(recipe.param_groups(), cfg.train.lr, cfg.train.optimizer_impl)
    epoch = recipe.train_batches(0, np.random.default_rng([cfg.run.seed, 0]))
    batches = [epoch[i] for i in np.random.default_rng(0).choice(len(epoch), steps + 10, replace=False)]
    for i, batch in enumerate(batches):
        if i == 10:  # the first steps of new shapes build kernels and grow the heap
            before, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        timed_step(recipe, opt, batch, i)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"retain": retain, "user_ms": 1000 * (after.ru_utime - before.ru_utime) / steps,
            "sys_ms": 1000 * (after.ru_stime - before.ru_stime) / steps,
            "faults": (after.ru_minflt - before.ru_minflt) / steps,
            "wall_ms": 1000 * (time.perf_counter() - wall) / steps, "peak_rss_mb": after.ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--recipe", default="tiger")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", choices=["default", "retain"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.run_dir, args.recipe, args.steps, args.child == "retain")))
        return
    rows = []
    for _ in range(args.repeats):
        for mode in ("default", "retain"):
            out = subprocess.run([sys.executable, __file__, args.run_dir, "--recipe", args.recipe, "--steps",
                                  str(args.steps), "--child", mode], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    print(f"\n{args.run_dir} ({args.recipe}), {args.steps} steps per process, one thread, alternating\n")
    print("| malloc | user ms per step | kernel ms per step | CPU ms per step | minor faults per step | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {'retain freed memory' if r['retain'] else 'glibc defaults'} | {r['user_ms']:.1f} | {r['sys_ms']:.1f} | "
              f"{r['user_ms'] + r['sys_ms']:.1f} | {r['faults']:,.0f} | {r['peak_rss_mb']:,.0f} |")


if __name__ == "__main__":
    main()
