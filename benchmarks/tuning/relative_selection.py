"""Would the relative selection rule engage? A probe on PIT runs' checkpoints.

    python benchmarks/tuning/relative_selection.py RUN_DIR [RUN_DIR ...] [--batches 100]
        [--margins 0 0.5 1 2 3] [--threads 1]

The targets of the first ``--batches`` batches of an epoch are scored as co-evolution scores them
(``selection_margin.scored_targets``). Each (item, SID) edge's mean cost is taken over the other
scored users of the item (leave-one-out, so a user's own cost does not pull the mean towards it),
which is what ``pit.selection_rule=relative``'s running means estimate during training. For the
targets whose every candidate has at least one other scored user, the probe reports how often
``relative_pick`` (the rule training applies) would switch away from the primary SID at each
margin, against the paper's minimum-loss rule, and how much a user's cost deviates from its edge's
mean (the spread the margin is measured against). One Markdown row per run.
"""

from __future__ import annotations

import argparse

import numpy as np

from pitrec.index.index_state import SidKeys
from pitrec.train.api import recipe_at_checkpoint
from pitrec.train.selection_baseline import relative_pick
from pitrec.utils.runtime import set_threads
from selection_margin import scored_targets


def leave_one_out_means(items: np.ndarray, keys: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """(N, C): each entry's edge mean over the other rows holding the same (item, SID); NaN when
    no other row does, or where the cost is padding (+inf)."""
    finite = np.isfinite(cost)
    pair = np.stack([np.broadcast_to(items[:, None], keys.shape), keys], -1)[finite]
    _, inverse, counts = np.unique(pair, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    sums = np.bincount(inverse, weights=cost[finite])
    out = np.full(cost.shape, np.nan)
    n = counts[inverse]
    out[finite] = np.where(n > 1, (sums[inverse] - cost[finite]) / np.maximum(n - 1, 1), np.nan)
    return out


def probe(run_dir: str, n_batches: int, margin_list: list[float]) -> dict:
    pit, state = recipe_at_checkpoint("pit", run_dir)
    sid = SidKeys(pit.sizes, "probe")
    items, keys, costs, n_targets = [], [], [], 0
    width = pit.cfg.pit.candidates
    for flat, codes, cost, n in scored_targets(pit, n_batches):
        n_targets += n
        if not len(codes):
            continue
        pad = width - codes.shape[1]  # batches differ in their widest item: pad to the configured width
        k = sid.encode(codes.reshape(-1, codes.shape[-1]), "probe").reshape(codes.shape[:2])
        items.append(flat)
        keys.append(np.pad(k, ((0, 0), (0, pad))))
        costs.append(np.pad(cost.numpy().astype(np.float64), ((0, 0), (0, pad)), constant_values=np.inf))
    items, keys, cost = np.concatenate(items), np.concatenate(keys), np.concatenate(costs)
    means = leave_one_out_means(items, keys, cost)
    heard = (np.isfinite(means) | ~np.isfinite(cost)).all(1)  # every real candidate has a mean
    c, m = cost[heard], means[heard]
    dev = c - m
    return {
        "epoch": state["epoch"], "targets": n_targets, "with_choice": len(items), "with_means": int(heard.sum()),
        "min_loss_switch": float((c.argmin(1) != 0).mean()),
        "switch": {mg: float((relative_pick(c, m, mg) != 0).mean()) for mg in margin_list},
        "dev_primary_std": float(np.std(dev[:, 0])),
        "dev_alt_std": float(np.std(dev[:, 1:][np.isfinite(dev[:, 1:])])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+")
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 3.0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    set_threads(args.threads)
    heads = " | ".join(f"switch, margin {m:g}" for m in args.margins)
    print(f"| run | epoch | targets | with a choice | with means | switch, min loss | {heads} | "
          "deviation std, primary | alternatives |")
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * len(args.margins) + "---:|---:|")
    for run_dir in args.run_dirs:
        r = probe(run_dir, args.batches, args.margins)
        switches = " | ".join(f"{r['switch'][m]:.1%}" for m in args.margins)
        print(f"| `{run_dir}` | {r['epoch']} | {r['targets']:,} | {r['with_choice']:,} | {r['with_means']:,} | "
              f"{r['min_loss_switch']:.2%} | {switches} | {r['dev_primary_std']:.2f} | {r['dev_alt_std']:.2f} |")


if __name__ == "__main__":
    main()
