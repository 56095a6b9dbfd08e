"""What ``train.long_history_stride`` saves per epoch: training steps of a trained run, timed on
batches drawn from each stride's epoch.

    python benchmarks/tuning/window_stride.py RUN_DIR [--recipe tiger] [--strides 1 5 10] [--steps 120]
        [--consecutive 150]

A step's cost follows how many windows its batch holds (one-target windows of long users cost a
full encoder pass each), so the epoch's mean step, not the median, sets the epoch time. For each
stride this draws ``--steps`` batches at random from that stride's epoch and times them
round-robin with the other strides (a neighbour's load hits all alike), on the run's latest
weights, one thread. Reports windows and encoded positions per epoch and the mean CPU ms per step;
the epoch CPU seconds are mean x batches per epoch (every stride has the same targets, so about
the same batches). ``--consecutive N`` first times N consecutive steps of the exact (stride 1)
epoch: median, mean and tail of the step, and how it follows the batch's window count. Also printed:
the share of targets, and of encoded positions, in one-target windows.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pitrec.train.api import recipe_at_checkpoint
from pitrec.train.prefix_windows import PrefixWindows
from pitrec.train.trainer import build_adamw, clip_per_module
from pitrec.utils.runtime import set_threads


def timed_step(recipe, opt, batch, i: int) -> float:
    recipe.train(True)
    c0 = time.process_time()
    loss = recipe.training_step(batch, i)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    clip_per_module(recipe.modules().values(), recipe.cfg.train.grad_clip)
    opt.step()
    return time.process_time() - c0


def interleaved(drawn: dict, step, warmup: int = 3) -> dict[object, list[float]]:
    """CPU seconds of ``step(key, batch, i)`` for the batches ``drawn[key]``: step i of every key
    before step i + 1 of any, so that a neighbour's load hits all keys alike. The first ``warmup``
    steps of each key (new shapes build kernels) are not kept."""
    times: dict[object, list[float]] = {key: [] for key in drawn}
    for i in range(len(next(iter(drawn.values())))):
        for key, batches in drawn.items():
            spent = step(key, batches[i], i)
            if i >= warmup:
                times[key].append(spent)
    return times


def consecutive(recipe, opt, windows: PrefixWindows, n: int) -> None:
    """The first ``n`` steps of the exact epoch, in order: how unalike steps are."""
    recipe.windows = windows
    batches = windows.batch_indices(recipe.cfg.train.batch_size, np.random.default_rng([recipe.cfg.run.seed, 0]))[:n + 5]
    cpu = np.array([timed_step(recipe, opt, b, i) for i, b in enumerate(batches)][5:])
    n_windows = np.array([len(b) for b in batches[5:]])
    print(f"{len(cpu)} consecutive steps, stride 1: CPU ms per step median {1000 * np.median(cpu):.0f}, "
          f"mean {1000 * cpu.mean():.0f}, p90 {1000 * np.percentile(cpu, 90):.0f}, max {1000 * cpu.max():.0f}; "
          f"windows per batch {n_windows.min()}-{n_windows.max()} (median {np.median(n_windows):.0f}), "
          f"correlation of CPU time with windows {np.corrcoef(n_windows, cpu)[0, 1]:.2f}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--recipe", default="tiger")
    ap.add_argument("--strides", type=int, nargs="+", default=[1, 5, 10])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--consecutive", type=int, default=0)
    args = ap.parse_args()
    set_threads(1)
    recipe, _ = recipe_at_checkpoint(args.recipe, args.run_dir)
    cfg = recipe.cfg
    opt = build_adamw(recipe.param_groups(), cfg.train.lr, cfg.train.optimizer_impl)
    exact = PrefixWindows(recipe.split.train, cfg.data.max_history)
    single = (exact.n_targets == 1) & (exact.length == cfg.data.max_history + 1)
    print(f"one-target windows of long users: {single.sum():,} of {len(exact):,} windows, "
          f"{single.sum() / exact.total_targets():.1%} of the targets, "
          f"{exact.length[single].sum() / exact.length.sum():.1%} of the encoded positions\n")
    if args.consecutive:
        consecutive(recipe, opt, exact, args.consecutive)
    rng = np.random.default_rng(0)
    plans = {}
    for k in args.strides:
        windows = PrefixWindows(recipe.split.train, cfg.data.max_history, k)
        batches = windows.batch_indices(cfg.train.batch_size, np.random.default_rng([cfg.run.seed, 0]))
        drawn = [batches[i] for i in rng.choice(len(batches), args.steps + 3, replace=False)]
        plans[k] = (windows, len(batches), drawn)

    def step(k, batch, i):
        recipe.windows = plans[k][0]
        return timed_step(recipe, opt, batch, i)

    cpu_by_stride = interleaved({k: plan[2] for k, plan in plans.items()}, step)
    print(f"{args.run_dir} ({args.recipe}), {args.steps} random batches per stride, one thread\n")
    print("| stride | windows | encoded positions | batches per epoch | mean CPU ms per step | median | "
          "epoch CPU s (mean x batches) | x stride 1 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = None
    for k, (windows, n_batches, _) in plans.items():
        cpu = cpu_by_stride[k]
        epoch_s = float(np.mean(cpu)) * n_batches
        base = base or epoch_s
        print(f"| {k} | {len(windows):,} | {int(windows.length.sum()):,} | {n_batches} | {1000 * np.mean(cpu):.1f} | "
              f"{1000 * np.median(cpu):.1f} | {epoch_s:.0f} | {epoch_s / base:.2f} |")


if __name__ == "__main__":
    main()
