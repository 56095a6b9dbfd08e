"""How much of the next-item signal a run's content embeddings and SIDs carry, apart from any
model: why content-only SIDs train on one dataset and not on another.

    python benchmarks/tuning/content_signal.py RUN_DIR [RUN_DIR ...] [--users 20000]

Per run (its config's data and embeddings, its warm-up ``sid_table.json``):
- content kNN: every item ranked by cosine similarity of its content embedding to the user's last
  history item (that item excluded), test NDCG@10 / Recall@10 over all items, as the evaluator counts;
- SID agreement: the share of consecutive training pairs (item, next item) whose SIDs share the
  first code and the first two codes, against the same share for the next items shuffled across
  pairs (what popularity alone gives). A generator predicts the next SID level by level, so its
  first code must follow from the history: the lift over the shuffle is how much it can.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from pitrec.config import config_from_dict
from pitrec.embed.stage import item_embeddings
from pitrec.tokenizers.sid_table import SidTable
from pitrec.train.api import prepare_data


def content_knn(emb: np.ndarray, last: np.ndarray, target: np.ndarray, k: int = 10,
                batch: int = 2048) -> tuple[float, float]:
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    ndcg = recall = 0.0
    for s in range(0, len(last), batch):
        sim = unit[last[s:s + batch]] @ unit.T
        sim[np.arange(len(sim)), last[s:s + batch]] = -np.inf
        t = target[s:s + batch]
        rank = (sim > sim[np.arange(len(sim)), t][:, None]).sum(1)  # items strictly above the target
        hit = rank < k
        recall += hit.sum()
        ndcg += (1.0 / np.log2(rank[hit] + 2)).sum()
    return ndcg / len(last), recall / len(last)


def sid_agreement(codes: np.ndarray, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    out = {}
    shuffled = rng.permutation(b)
    for depth in (1, 2):
        same = (codes[a, :depth] == codes[b, :depth]).all(1).mean()
        chance = (codes[a, :depth] == codes[shuffled, :depth]).all(1).mean()
        out[f"first{depth}"], out[f"first{depth}_shuffled"] = float(same), float(chance)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+")
    ap.add_argument("--users", type=int, default=20000)
    args = ap.parse_args()
    for run_dir in args.run_dirs:
        rng = np.random.default_rng(0)  # the same users and shuffle for every run of a dataset
        cfg = config_from_dict(yaml.safe_load((Path(run_dir) / "config.yaml").read_text()), run_dir)
        data, split = prepare_data(cfg)
        emb = item_embeddings(cfg, data)
        users = rng.choice(split.n_users, size=min(args.users, split.n_users), replace=False)
        users = users[[len(split.test_history[u]) > 0 for u in users]]
        last = np.array([split.test_history[u][-1] for u in users])
        ndcg, recall = content_knn(emb, last, split.test_target[users])
        codes = SidTable.load(Path(run_dir) / "sid_table.json").codes
        a = np.concatenate([s[:-1] for s in split.train if len(s) > 1])
        b = np.concatenate([s[1:] for s in split.train if len(s) > 1])
        agree = sid_agreement(codes, a, b, rng)
        print(f"{run_dir}: {split.n_items:,} items, {len(users):,} test users, {len(a):,} training pairs")
        print(f"  content kNN of the last item: test NDCG@10 {ndcg:.4f}, Recall@10 {recall:.4f}")
        print(f"  next item shares the first code: {agree['first1']:.3f} (shuffled {agree['first1_shuffled']:.3f}, "
              f"lift {agree['first1'] / max(agree['first1_shuffled'], 1e-12):.1f}x); first two codes: "
              f"{agree['first2']:.4f} (shuffled {agree['first2_shuffled']:.4f})")


if __name__ == "__main__":
    main()
