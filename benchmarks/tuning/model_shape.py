"""What the generator's shape costs per training step: a run's recipe rebuilt with config
variants (``u2t.ffn=512``, ``u2t.decoder_layers=3`` ...), timed on the same batches.

    python benchmarks/tuning/model_shape.py RUN_DIR [--recipe tiger] [--steps 40] \
        --variants "" u2t.ffn=512 "u2t.ffn=512 u2t.heads=8"

An epoch of beauty costs TIGER 150-190 CPU seconds on one thread, and its accuracy was still rising
when the 30- and 80-minute budgets ended (long_runs_beauty.md), so a cheaper step buys epochs. Whether
a smaller model learns as much per epoch is a question for a real run; this probe only prices the
step. Each variant gets fresh weights (the cost of a step does not depend on their values) and the
run's own SIDs, stride and batch size; the variants' steps are interleaved so a neighbour's load
hits all alike. "" is the run's own config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from window_stride import interleaved, timed_step  # noqa: E402

from pitrec.config import config_from_dict  # noqa: E402
from pitrec.train.api import build_recipe, prepare_data  # noqa: E402
from pitrec.train.run_dir import RunDir  # noqa: E402
from pitrec.train.trainer import build_adamw  # noqa: E402
from pitrec.utils.runtime import seed_everything, set_threads  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--recipe", default="tiger")
    ap.add_argument("--variants", nargs="+", default=["", "u2t.ffn=512"])
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    set_threads(1)
    run = RunDir(args.run_dir)
    base = config_from_dict(run.read_config_dict(), source=str(run.config_path)).with_overrides(["run.progress=false"])
    data, split = prepare_data(base)
    warmup = 3  # steps per variant not timed: new shapes build kernels
    recipes, drawn = {}, {}
    for variant in args.variants:
        cfg = base.with_overrides(variant.split())
        seed_everything(cfg.run.seed)
        recipe = build_recipe(args.recipe, cfg, data, split)
        opt = build_adamw(recipe.param_groups(), cfg.train.lr, cfg.train.optimizer_impl)
        batches = recipe.train_batches(0, np.random.default_rng([cfg.run.seed, 0]))
        pick = np.random.default_rng(0).choice(len(batches), args.steps + warmup, replace=False)
        recipes[variant] = (recipe, opt, len(batches))
        drawn[variant] = [batches[i] for i in pick]
    cpu = interleaved(drawn, lambda v, batch, i: timed_step(recipes[v][0], recipes[v][1], batch, i), warmup)
    print(f"{args.run_dir} ({args.recipe}), {args.steps} batches per variant (the same for all), one thread\n")
    print("| variant | parameters | mean CPU ms per step | epoch CPU s (mean x batches) | x run's config |")
    print("|---|---:|---:|---:|---:|")
    first = None
    for variant, (recipe, _, n_batches) in recipes.items():
        params = sum(p.numel() for m in recipe.modules().values() for p in m.parameters())
        epoch_s = float(np.mean(cpu[variant])) * n_batches
        first = first or epoch_s
        print(f"| {variant or '(run config)'} | {params:,} | {1000 * np.mean(cpu[variant]):.1f} | {epoch_s:.0f} | "
              f"{epoch_s / first:.2f} |")


if __name__ == "__main__":
    main()
