"""What PIT's auxiliary losses cost per training step on beauty, timed alone (forward + backward)
on the window step's real inputs: CSA on the windows' shared states (``rows``, as the recipe
calls it) against CSA on per-target copies of the states (as it was before), and I2T.

    python benchmarks/tuning/aux_loss_cost.py [--data ../shared/data/amazon2014/beauty] [--batches 30] [--threads 1]

Prints mean milliseconds per batch over the first ``--batches`` batches of an epoch (one untimed
pass first), the mean windows and targets per batch, and a profiler table of the CSA loss.
Figures in benchmarks/tuning/aux_share_beauty.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pitrec.config import load_config
from pitrec.data.batches import PAD
from pitrec.train.api import build_recipe, prepare_data
from pitrec.utils.runtime import seed_everything, set_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/amazon2014/beauty")
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    set_threads(args.threads)
    cfg = load_config("pit", overrides=[f"data.path={args.data}", "run.progress=false", "tokenizer.collaborative_dim=64"])
    seed_everything(0)
    pit = build_recipe("pit", cfg, *prepare_data(cfg))
    pit.epoch = 0
    pit.train(True)
    inputs = []
    for batch in pit.train_batches(0, np.random.default_rng(0))[:args.batches]:
        w = pit.windows.batch(batch)
        valid = w.items != PAD
        with torch.no_grad():
            memory = pit.u2t.encode_windows(pit.history_codes[w.items.clamp(min=0)], valid)
            _, allowed = pit.u2t.prefix_mask(valid, w.n_last)
        inputs.append((memory.states, allowed[w.targets], w.targets, w.items[:, -w.n_last:][w.targets]))

    def csa_shared(states, allowed, real, flat):
        pit.csa.loss(states, allowed, flat, rows=real.nonzero(as_tuple=True)[0]).backward()

    def csa_copies(states, allowed, real, flat):
        copies = states.unsqueeze(1).expand(-1, real.shape[1], -1, -1)[real]
        pit.csa.loss(copies, allowed, flat).backward()

    def i2t(states, allowed, real, flat):
        pit.i2t.loss(pit.tokenizer_inputs(flat), pit.initial_codes[flat]).backward()

    kinds = {"csa, shared window states": csa_shared, "csa, per-target copies": csa_copies, "i2t": i2t}
    totals = dict.fromkeys(kinds, 0.0)
    for timed in (False, True):
        for x in inputs:
            for name, fn in kinds.items():  # interleaved, so a neighbour's load hits all alike
                t0 = time.perf_counter()
                fn(*x)
                if timed:
                    totals[name] += time.perf_counter() - t0
    print(f"{len(inputs)} batches: {np.mean([x[0].shape[0] for x in inputs]):.1f} windows, "
          f"{np.mean([len(x[3]) for x in inputs]):.1f} targets on average")
    for name, total in totals.items():
        print(f"{name}: {1000 * total / len(inputs):.1f} ms per batch")
    with torch.profiler.profile() as prof:
        for x in inputs[:10]:
            csa_shared(*x)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
