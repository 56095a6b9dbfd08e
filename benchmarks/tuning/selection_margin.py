"""How close does the minimum-loss selection come to switching? A probe on PIT runs' checkpoints.

    python benchmarks/tuning/selection_margin.py RUN_DIR [RUN_DIR ...] [--batches 8] [--threads 1]

For the training targets of the first ``--batches`` batches of an epoch (the run's own windows),
every target whose item holds several SIDs in the run's beam index has its candidates scored
by co-evolution's own function (``prefix_selection_cost``): U2T's -log P(SID | history) with
dropout off, in float32, plus the collision charge. The gap is the best alternative's cost minus the primary SID's (the strongest,
the one the item trains on unless an alternative wins). A gap above 0 keeps the primary; its size
says how far the alternatives are from ever winning. Also: how many of the best alternatives share
the primary's first code, and its first two; and how often ``pit.selection_rule=posterior`` (temperature 1)
would draw an alternative: the mean of 1 - softmax(-cost)[primary]. Prints one Markdown row per run.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from pitrec.data.batches import PAD
from pitrec.train.api import recipe_at_checkpoint
from pitrec.train.selection import prefix_selection_cost
from pitrec.utils.runtime import set_threads


@torch.no_grad()
def scored_targets(pit, n_batches: int):
    """Per window batch of the first ``n_batches`` of an epoch: (target items (N,), their candidate
    codes (N, C, L), costs (N, C)) of the targets whose item holds several SIDs, and the batch's
    count of targets. Costs as co-evolution computes them: float32, dropout off, with the charge."""
    cfg = pit.cfg
    pit.train(False)
    if pit.windows is None:
        raise SystemExit("the probe reads window batches (a causal U2T encoder)")
    for batch in pit.train_batches(0, np.random.default_rng(0))[:n_batches]:
        w = pit.windows.batch(batch)
        items, real = w.items.to(pit.device), w.targets.to(pit.device)
        valid = items != PAD
        memory = pit.u2t.encode_windows(pit.history_codes[items.clamp(min=0)], valid)
        mask, _ = pit.u2t.prefix_mask(valid, w.n_last)
        flat = items[:, -w.n_last:][real]
        cand_np, mask_np, _ = pit.index.candidates(flat.cpu().numpy(), cfg.pit.candidates)
        cand_mask = torch.from_numpy(mask_np).to(pit.device)
        choice = cand_mask.sum(1) > 1
        if not choice.any():
            yield flat.cpu().numpy()[:0], cand_np[:0], torch.zeros(0, cand_np.shape[1]), len(flat)
            continue
        cost = prefix_selection_cost(pit.u2t, pit.index, memory, mask, real, cand_np, cand_mask, choice,
                                     cfg.pit.collision_penalty, "float32").cpu()
        keep = choice.cpu().numpy()
        yield flat.cpu().numpy()[keep], cand_np[keep], cost, len(flat)


def margins(run_dir: str, n_batches: int) -> dict[str, float]:
    pit, state = recipe_at_checkpoint("pit", run_dir)
    gaps, first, first_two, posterior, n_targets, n_choice = [], [], [], [], 0, 0
    for _, codes, cost, n in scored_targets(pit, n_batches):
        n_targets, n_choice = n_targets + n, n_choice + len(codes)
        if not len(codes):
            continue
        gaps.append((cost[:, 1:].min(1).values - cost[:, 0]).numpy())
        posterior.append(1 - torch.softmax(-cost, 1)[:, 0].numpy())  # P(draw an alternative), temperature 1
        best = codes[np.arange(len(codes)), 1 + cost[:, 1:].argmin(1).numpy()]
        first.append(best[:, 0] == codes[:, 0, 0])
        first_two.append((best[:, :2] == codes[:, 0, :2]).all(1))
    if not gaps:  # one SID per item (the single-SID ablation): nothing to select between
        return {"epoch": state["epoch"], "targets": n_targets, "choice_share": 0.0}
    g = np.concatenate(gaps)
    p5, p25, p50, p75, p95 = np.percentile(g, [5, 25, 50, 75, 95])
    return {"epoch": state["epoch"], "targets": n_targets, "choice_share": n_choice / max(n_targets, 1),
            "switch_share": float((g < 0).mean()), "posterior_switch": float(np.concatenate(posterior).mean()),
            "p5": p5, "p25": p25, "p50": p50, "p75": p75, "p95": p95,
            "same_first": float(np.concatenate(first).mean()), "same_first_two": float(np.concatenate(first_two).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    set_threads(args.threads)
    print("| run | epoch | targets | with a choice | alternative wins | posterior draws an alternative | gap p5 | p25 | median | p75 | p95 | "
          "best alternative shares code 1 | codes 1-2 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run_dir in args.run_dirs:
        m = margins(run_dir, args.batches)
        if "p50" not in m:
            print(f"| `{run_dir}` | {m['epoch']} | {m['targets']:,} | 0% | - | - | - | - | - | - | - | - | - |")
            continue
        print(f"| `{run_dir}` | {m['epoch']} | {m['targets']:,} | {m['choice_share']:.0%} | {m['switch_share']:.2%} | "
              f"{m['posterior_switch']:.2%} | {m['p5']:.2f} | {m['p25']:.2f} | {m['p50']:.2f} | {m['p75']:.2f} | {m['p95']:.2f} | "
              f"{m['same_first']:.0%} | {m['same_first_two']:.0%} |")


if __name__ == "__main__":
    main()
