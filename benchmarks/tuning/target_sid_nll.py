"""How well a trained generator predicts the held-out item's SID, apart from beam search:
the mean teacher-forced -log P(target SID | history) over validation and test users, in total and
per level (-log P(code_l | codes_<l, history); a uniform guess over 256 codes is 5.55).

    python benchmarks/tuning/target_sid_nll.py RUN_DIR [RUN_DIR ...] [--users 4000]

For TIGER the target is the item's SID; for PIT its primary SID in the run's final index (the
SID decoding reaches it through most), and histories are encoded as the run encodes them. Two
runs whose ranking metrics differ can be told apart this way: a gap here is the model's, the
same NLL with different metrics points at decoding. Uses each run's best checkpoint.
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np
import torch

from pitrec.data.batches import PAD
from pitrec.decoding.prefix_scoring import prefix_shared_log_probs
from pitrec.serve.recommender import _padded
from pitrec.train.evaluate_run import load_trained_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+")
    ap.add_argument("--users", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.set_num_threads(args.threads)
    for run_dir in args.run_dirs:
        trained = load_trained_run(run_dir)
        recipe = trained.recipe
        if trained.method == "pit":
            model, history_codes, target_codes = recipe.u2t, recipe.history_codes, recipe.primary_codes
        elif trained.method == "tiger":
            model, history_codes, target_codes = recipe.model, recipe.item_codes, recipe.item_codes
        else:
            raise SystemExit(f"{run_dir}: a {trained.method} run has no SIDs to score")
        model.eval()
        parts = []
        for part in ("valid", "test"):
            histories, targets = getattr(trained.split, f"{part}_history"), getattr(trained.split, f"{part}_target")
            users = np.random.default_rng(0).choice(len(targets), size=min(args.users, len(targets)), replace=False)
            nll = []
            for i in range(0, len(users), args.batch):
                rows = users[i:i + args.batch]
                h = _padded([histories[u][-trained.cfg.data.max_history:] for u in rows])
                memory = model.encode(history_codes[h.clamp(min=0)], h == PAD, h)
                codes = target_codes[torch.as_tensor(targets[rows])].unsqueeze(1)  # (B, 1, L)
                step = partial(model.decode_step, memory, model.cross_keys_values(memory))
                nll.append(-prefix_shared_log_probs(step, codes, torch.ones(codes.shape[:2], dtype=torch.bool),
                                                    model.codebook_sizes)[:, 0])
            per_level = torch.cat(nll).mean(0)
            parts.append(f"{part} {per_level.sum():.3f} (levels " + " ".join(f"{x:.2f}" for x in per_level) + ")")
        print(f"{run_dir} ({trained.method}, checkpoint of epoch {trained.state.get('epoch')}): "
              f"mean -log P(target SID) over {len(users)} users: " + ", ".join(parts))


if __name__ == "__main__":
    main()
