"""What ``train.batch_size`` does to the CPU cost of a training pair: steps of a trained run at
several batch sizes, timed round-robin on batches drawn from each size's epoch.

    python benchmarks/tuning/batch_size.py RUN_DIR [--recipe tiger] [--sizes 256 512 1024] [--steps 40]

Every epoch trains the same pairs, so the epoch's CPU time is the mean step times the batches per
epoch; a larger batch is worth it only if the matrix products get more efficient per pair. Whether
the fewer, larger steps learn as much per epoch is a question for a real run (this probe does not
answer it). Timed on the run's latest weights, one thread, with the run's own stride and recipe;
every size's steps are interleaved so a neighbour's load hits all alike.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from window_stride import interleaved, timed_step  # noqa: E402

from pitrec.train.api import recipe_at_checkpoint  # noqa: E402
from pitrec.train.trainer import build_adamw  # noqa: E402
from pitrec.utils.runtime import set_threads  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--recipe", default="tiger")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    set_threads(1)
    recipe, _ = recipe_at_checkpoint(args.recipe, args.run_dir)
    cfg = recipe.cfg
    opt = build_adamw(recipe.param_groups(), cfg.train.lr, cfg.train.optimizer_impl)
    rng = np.random.default_rng(0)
    warmup = 3  # steps per size not timed: new shapes build kernels
    plans = {}
    for size in args.sizes:
        cfg.train.batch_size = size
        batches = recipe.train_batches(0, np.random.default_rng([cfg.run.seed, 0]))
        drawn = [batches[i] for i in rng.choice(len(batches), args.steps + warmup, replace=False)]
        plans[size] = (len(batches), drawn)
    cpu_by_size = interleaved({size: drawn for size, (_, drawn) in plans.items()},
                              lambda _, batch, i: timed_step(recipe, opt, batch, i), warmup)
    stride = cfg.train.long_history_stride
    print(f"{args.run_dir} ({args.recipe}, stride {stride}), {args.steps} random batches per size, one thread\n")
    print("| batch size | batches per epoch | mean CPU ms per step | pairs per CPU-second | "
          "epoch CPU s (mean x batches) | x first size |")
    print("|---:|---:|---:|---:|---:|---:|")
    base = None
    for size, (n_batches, drawn) in plans.items():
        cpu, pairs = cpu_by_size[size], [recipe.batch_size_of(b) for b in drawn[warmup:]]
        epoch_s = float(np.mean(cpu)) * n_batches
        base = base or epoch_s
        print(f"| {size} | {n_batches} | {1000 * np.mean(cpu):.1f} | {np.sum(pairs) / np.sum(cpu):.0f} | "
              f"{epoch_s:.0f} | {epoch_s / base:.2f} |")


if __name__ == "__main__":
    main()
