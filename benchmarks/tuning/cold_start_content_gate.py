"""Cold start: would a user-dependent content term on the added items beat a global weight?

    python benchmarks/tuning/cold_start_content_gate.py [--bench benchmarks/main.yaml --method LABEL \
        --dataset beauty] --out runs/cold_start_beauty [--users 1000] [--pool 50] \
        [--placement content_neighbours] [--weights 3,2] [--betas 0,2,5,10] [-- overrides]

Why: an added item's score is ``weight x P(its SIDs | user)``; the weight is the same for every
user, so the SIDs' probability alone decides who sees the item, and a weight that shows new items
to the users whose next item is one (cold) also shows them to users whose next item is an old one
(warm). The item's text is the one thing known about it; a user whose recent items read like it is
likelier to want it. This probe adds ``beta x cos(item text, user's recent text)`` to the log-score
of the added items only (the user's recent text: content kNN's profile, ``knn.last_items`` items
decayed by ``knn.decay``) and re-ranks each user's top ``--pool`` items from the service; items
outside the pool cannot enter. Same held-out items, cold cases and warm users as
``benchmarks/cold_start.py`` (reuses its run in ``--out``); a sample of ``--users`` of each. Prints
Markdown. Exploratory: the served setting it led to is ``pit.new_item_text_affinity`` (the last
history item's text, inside the beam search's items), measured with ``cold_start.py --decoding``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
import cold_start as cs  # noqa: E402  (benchmarks/cold_start.py: the protocol this probe reuses)

from pitrec.embed.stage import item_embeddings  # noqa: E402
from pitrec.eval.metrics import rank_metrics  # noqa: E402
from pitrec.serve.recommender import Recommender  # noqa: E402
from pitrec.train.recipes.content_knn import unit_rows  # noqa: E402

KS = (10, 20)


def user_profiles(histories: list[list], text: np.ndarray, index: dict, last: int, decay: float) -> np.ndarray:
    """Unit vectors of each user's last ``last`` items' text, the most recent weighted 1, the one
    before ``decay``, and so on (content kNN's profile)."""
    out = np.zeros((len(histories), text.shape[1]), np.float32)
    for u, h in enumerate(histories):
        recent = [index[i] for i in h[-last:]][::-1]
        out[u] = (text[recent] * decay ** np.arange(len(recent))[:, None]).sum(0)
    return unit_rows(out)


def pooled(rec: Recommender, histories: list[list], pool: int) -> tuple[list[list], list[list[float]]]:
    rows = rec.recommend_many(histories, k=pool, explain=False).results
    return [[s.id for s in r.items] for r in rows], [[s.score for s in r.items] for r in rows]


def reranked_metrics(ids: list[list], scores: list[list[float]], profiles: np.ndarray, text: np.ndarray,
                     index: dict, new: set, targets: list, beta: float) -> dict:
    """Recall/NDCG@{10,20} after adding beta x cosine to the new items' scores, and the new items'
    share of the top-10 slots."""
    ranked = []
    for u, (row, sc) in enumerate(zip(ids, scores)):
        bonus = [beta * float(text[index[i]] @ profiles[u]) if i in new else 0.0 for i in row]
        order = np.argsort(-(np.asarray(sc) + np.asarray(bonus)), kind="stable")
        ranked.append([row[j] for j in order[:max(KS)]])
    dense = {raw: j for j, raw in enumerate(dict.fromkeys([*targets, *(i for r in ranked for i in r)]))}
    table = torch.tensor([[dense[i] for i in r] + [-1] * (max(KS) - len(r)) for r in ranked])
    out = {k: float(v.mean()) for k, v in rank_metrics(table, torch.tensor([dense[t] for t in targets]), KS).items()}
    out["new_in_top10"] = sum(i in new for r in ranked for i in r[:10]) / (10 * len(ranked))
    return out


def main() -> None:
    ap = cs.probe_parser(__doc__)
    ap.add_argument("--pool", type=int, default=50, help="items per user from the service, re-ranked")
    ap.add_argument("--placement", choices=["i2t", "content_neighbours"], default="content_neighbours")
    ap.add_argument("--weights", default="3,2", help="comma-separated added-item weights of the placement")
    ap.add_argument("--betas", default="0,2,5,10", help="comma-separated content-term strengths (0: the service)")
    args, extra = ap.parse_known_args()
    cfg, full, held, warm, cold, new = cs.probe_cases(args, extra)
    text = unit_rows(item_embeddings(cfg, full))
    index = {raw: j for j, raw in enumerate(full.item_ids)}
    profiles = {name: user_profiles(h, text, index, cfg.knn.last_items, cfg.knn.decay)
                for name, (h, _) in (("cold", cold), ("warm", warm))}
    key = "neighbour_item_weight" if args.placement == "content_neighbours" else "added_item_weight"
    before = cs.ranked_metrics(Recommender.load(args.out, persist=False, threads=args.threads), *warm, set())
    print(f"# Content term on added items ({args.placement}), {len(cold[1])} cold cases, {len(warm[1])} warm users, "
          f"pool {args.pool}\n\nwarm R@10 before insertion {before['recall@10']:.4f}, N@10 {before['ndcg@10']:.4f}\n")
    print("| weight | beta | cold R@10 | cold N@10 | cold R@20 | warm R@10 | warm N@10 | new in warm top-10 |")
    print("|---|---|---|---|---|---|---|---|")
    for weight in [float(w) for w in args.weights.split(",")]:
        rec = Recommender.load(args.out, persist=False, threads=args.threads,
                               decoding=[f"pit.new_item_sids={args.placement}", f"pit.{key}={weight}"])
        cs.insert_held_out(rec, full, held)
        got = {name: pooled(rec, h, args.pool) for name, (h, _) in (("cold", cold), ("warm", warm))}
        for beta in [float(b) for b in args.betas.split(",")]:
            c = reranked_metrics(*got["cold"], profiles["cold"], text, index, new, cold[1], beta)
            w = reranked_metrics(*got["warm"], profiles["warm"], text, index, new, warm[1], beta)
            print(f"| {weight:g} | {beta:g} | {c['recall@10']:.4f} | {c['ndcg@10']:.4f} | {c['recall@20']:.4f} | "
                  f"{w['recall@10']:.4f} | {w['ndcg@10']:.4f} | {w['new_in_top10']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
