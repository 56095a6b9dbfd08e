"""Do training steps slow down as a run goes on, and is it subnormal floats?

    python benchmarks/tuning/denormal_probe.py RUN_DIR [--recipe tiger] [--steps 30] [--rounds 3]

TIGER's epochs cost more CPU seconds late in a run than early (beauty, one thread: 148 s in epoch 1
of the 80-minute run, 175-190 s from epoch 5 on), with the same batches and shapes. Subnormal
(denormal) floats are a known cause on x86: arithmetic on them takes a slow microcode path, and
they appear as a model grows confident (softmax tails, their gradients) and in Adam's moments.
This times optimiser steps of the run's latest checkpoint (weights and AdamW state) against the
same recipe freshly initialised, each with flush-to-zero off and on (``torch.set_flush_denormal``),
interleaved round-robin on the same batches so a neighbour's load hits every kind alike; and
counts the subnormal values in the weights and the optimiser's moments. One thread.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from pitrec.train.api import build_recipe, recipe_at_checkpoint
from pitrec.train.checkpoint import load_checkpoint
from pitrec.train.run_dir import RunDir
from pitrec.train.trainer import build_adamw
from pitrec.utils.runtime import seed_everything, set_threads
from window_stride import timed_step  # this folder's; the Trainer's step, timed

TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32


def subnormal_share(tensors) -> tuple[int, int]:
    sub = total = 0
    for t in tensors:
        if t.is_floating_point():
            a = t.detach().abs()
            sub += int(((a > 0) & (a < TINY)).sum())
            total += a.numel()
    return sub, total


def optimizer_moments(opt: torch.optim.Optimizer):
    for state in opt.state.values():
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                yield state[key]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--recipe", default="tiger")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per kind and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    set_threads(1)
    trained, _ = recipe_at_checkpoint(args.recipe, args.run_dir)
    cfg = trained.cfg
    opt_trained = build_adamw(trained.param_groups(), cfg.train.lr, cfg.train.optimizer_impl)
    load_checkpoint(RunDir(args.run_dir).latest, trained.modules(), opt_trained)
    seed_everything(cfg.run.seed)
    fresh = build_recipe(args.recipe, cfg, trained.data, trained.split)  # the run's epoch-0 weights
    opt_fresh = build_adamw(fresh.param_groups(), cfg.train.lr, cfg.train.optimizer_impl)

    params = [p for m in trained.modules().values() for p in m.parameters()]
    print("subnormal weights: %d of %d" % subnormal_share(params))
    print("subnormal AdamW moments: %d of %d" % subnormal_share(optimizer_moments(opt_trained)))

    epoch = trained.train_batches(0, np.random.default_rng(0))
    per_round = args.steps + 3
    # spread over the epoch: batches differ in windows and lengths, so the first ones are no sample
    batches = [epoch[i] for i in np.linspace(0, len(epoch) - 1, args.rounds * per_round).astype(int)]
    kinds = {("trained", False): (trained, opt_trained), ("trained", True): (trained, opt_trained),
             ("fresh", False): (fresh, opt_fresh), ("fresh", True): (fresh, opt_fresh)}
    cpu = {k: [] for k in kinds}
    for rnd in range(args.rounds):
        for i, batch in enumerate(batches[rnd * per_round: (rnd + 1) * per_round]):
            for (name, flush), (recipe, opt) in kinds.items():
                torch.set_flush_denormal(flush)
                spent = timed_step(recipe, opt, batch, i)
                if i >= 3:  # the first steps of a shape build kernels
                    cpu[(name, flush)].append(spent)
    torch.set_flush_denormal(False)
    base = np.median(cpu[("fresh", False)])
    print(f"\n{args.run_dir}, {args.recipe}, {len(cpu[('fresh', False)])} steps per kind, one thread\n")
    mean_base = np.mean(cpu[("fresh", False)])
    print("| weights | flush-to-zero | median CPU ms per step | x fresh, off | mean CPU ms per step | x fresh, off |")
    print("|---|---|---:|---:|---:|---:|")
    for (name, flush), values in cpu.items():
        m, a = float(np.median(values)), float(np.mean(values))
        print(f"| {name} | {'on' if flush else 'off'} | {1000 * m:.1f} | {m / base:.3f} | {1000 * a:.1f} | {a / mean_base:.3f} |")


if __name__ == "__main__":
    main()
