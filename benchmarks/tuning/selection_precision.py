"""Minimum-loss SID selection scored in float32 vs bfloat16, on a trained PIT run.

For ``--batches`` training batches (windows of the run's own batch size, drawn with a fixed seed)
it runs the windowed selection both ways on the run's checkpoint and beam index, and reports:
how many targets had a choice, how often the two precisions pick the same SID, the float32 cost
(nats) that bfloat16's pick gives up where they differ, and the seconds each spends scoring.

    python benchmarks/tuning/selection_precision.py runs/sched/pitcf30cos --batches 30 --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pitrec.data.batches import PAD
from pitrec.train.evaluate_run import load_trained_run
from pitrec.train.selection import min_loss_sids_prefix, selection_cost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a PIT run directory (causal encoder: windowed training)")
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    t = load_trained_run(args.run, {"run": {"num_threads": args.threads, "progress": False}})
    recipe, cfg = t.recipe, t.cfg
    if t.method != "pit" or recipe.windows is None:
        raise SystemExit(f"{args.run}: needs a PIT run with u2t.encoder_attention=causal (windowed selection)")
    B = cfg.pit.candidates
    batches = recipe.windows.batch_indices(cfg.train.batch_size, np.random.default_rng(0))[: args.batches]
    totals = {"targets": 0, "with_choice": 0, "agree": 0, "regret_sum": 0.0, "regret_max": 0.0,
              "float32_s": 0.0, "bfloat16_s": 0.0}
    with torch.no_grad():
        for index in batches:
            w = recipe.windows.batch(index)
            items, real = w.items, w.targets
            valid = items != PAD
            memory = recipe.u2t.encode_windows(recipe.history_codes[items.clamp(min=0)], valid)
            mask, _ = recipe.u2t.prefix_mask(valid, w.n_last)
            targets = items[:, -w.n_last:]
            picks = {}
            for precision in ("float32", "bfloat16"):
                start = time.perf_counter()
                picks[precision] = min_loss_sids_prefix(recipe.u2t, recipe.index, memory, mask, targets, real, B,
                                                        cfg.pit.collision_penalty, precision)
                totals[f"{precision}_s"] += time.perf_counter() - start
            exact, _, multi, _ = picks["float32"]
            fast = picks["bfloat16"][0]
            differ = (fast != exact).any(1)
            totals["targets"] += len(exact)
            totals["with_choice"] += int(multi.sum())
            totals["agree"] += int((~differ & multi).sum())
            if differ.any():
                rows, cols = torch.nonzero(real, as_tuple=True)
                m = items.shape[1]
                for k in torch.nonzero(differ).flatten().tolist():
                    r, c = rows[k], cols[k]
                    hist = items[r:r + 1, :m - w.n_last + c]
                    one = recipe.u2t.encode(recipe.history_codes[hist.clamp(min=0)], hist == PAD)
                    pair = torch.stack([exact[k], fast[k]])[None]
                    cost = selection_cost(recipe.u2t, recipe.index, one, pair, torch.ones(1, 2, dtype=torch.bool),
                                          cfg.pit.collision_penalty)[0]
                    regret = float(cost[1] - cost[0])
                    totals["regret_sum"] += regret
                    totals["regret_max"] = max(totals["regret_max"], regret)
    n_differ = totals["with_choice"] - totals["agree"]
    print(f"run {args.run} ({t.checkpoint}), {len(batches)} batches of {cfg.train.batch_size}, B={B}, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    print("| targets | with a choice | same pick | mean regret where different (nats) | max regret | "
          "float32 scoring s | bfloat16 scoring s | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {totals['targets']} | {totals['with_choice']} | {totals['agree'] / max(totals['with_choice'], 1):.2%} ({n_differ} differ) | "
          f"{totals['regret_sum'] / max(n_differ, 1):.4f} | {totals['regret_max']:.4f} | {totals['float32_s']:.2f} | "
          f"{totals['bfloat16_s']:.2f} | {totals['float32_s'] / max(totals['bfloat16_s'], 1e-9):.2f}x |")


if __name__ == "__main__":
    main()
