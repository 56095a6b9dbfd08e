"""What ``train.long_history_stride`` saves per epoch: training steps of a trained run, timed on
batches drawn from each stride's epoch.

    python benchmarks/tuning/window_stride.py RUN_DIR [--recipe tiger] [--strides 1 5 10] [--steps 120]

A step's cost follows how many windows its batch holds (one-target windows of long users cost a
full encoder pass each), so the epoch's mean step, not the median, sets the epoch time. For each
stride this draws ``--steps`` batches at random from that stride's epoch and times them
round-robin with the other strides (a neighbour's load hits all alike), on the run's latest
weights, one thread. Reports windows and encoded positions per epoch and the mean CPU ms per step;
the epoch CPU seconds are mean x batches per epoch (every stride has the same targets, so about
the same batches).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pitrec.train.api import recipe_at_checkpoint
from pitrec.train.prefix_windows import PrefixWindows
from pitrec.train.trainer import build_adamw, clip_per_module
from pitrec.utils.runtime import set_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--recipe", default="tiger")
    ap.add_argument("--strides", type=int, nargs="+", default=[1, 5, 10])
    ap.add_argument("--steps", type=int, default=120)
    args = ap.parse_args()
    set_threads(1)
    recipe, _ = recipe_at_checkpoint(args.recipe, args.run_dir)
    cfg = recipe.cfg
    opt = build_adamw(recipe.param_groups(), cfg.train.lr, cfg.train.optimizer_impl)
    rng = np.random.default_rng(0)
    plans = {}
    for k in args.strides:
        windows = PrefixWindows(recipe.split.train, cfg.data.max_history, k)
        batches = windows.batch_indices(cfg.train.batch_size, np.random.default_rng([cfg.run.seed, 0]))
        drawn = [batches[i] for i in rng.choice(len(batches), args.steps + 3, replace=False)]
        plans[k] = (windows, len(batches), drawn, [])
    for i in range(args.steps + 3):
        for k, (windows, _, drawn, cpu) in plans.items():
            recipe.windows = windows
            recipe.train(True)
            c0 = time.process_time()
            loss = recipe.training_step(drawn[i], i)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_per_module(recipe.modules().values(), cfg.train.grad_clip)
            opt.step()
            if i >= 3:  # the first steps of new shapes build kernels
                cpu.append(time.process_time() - c0)
    print(f"{args.run_dir} ({args.recipe}), {args.steps} random batches per stride, one thread\n")
    print("| stride | windows | encoded positions | batches per epoch | mean CPU ms per step | median | "
          "epoch CPU s (mean x batches) | x stride 1 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = None
    for k, (windows, n_batches, _, cpu) in plans.items():
        epoch_s = float(np.mean(cpu)) * n_batches
        base = base or epoch_s
        print(f"| {k} | {len(windows):,} | {int(windows.length.sum()):,} | {n_batches} | {1000 * np.mean(cpu):.1f} | "
              f"{1000 * np.median(cpu):.1f} | {epoch_s:.0f} | {epoch_s / base:.2f} |")


if __name__ == "__main__":
    main()
