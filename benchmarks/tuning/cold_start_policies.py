"""Cold start: would another placement or scoring of the added items do better than the weight?

    python benchmarks/tuning/cold_start_policies.py --bench benchmarks/main.yaml --method LABEL \
        --dataset beauty --out runs/cold_start_beauty [--users 1000] [--threads 1] [-- overrides]

Reuses a finished ``benchmarks/cold_start.py`` run (same options, so the same held-out items and
split), inserts the held-out items once through ``Recommender.add_item`` at weight 1, then serves
them under alternative index policies, with the model fixed, on a sample of cold cases and warm
users (``--users`` of each):
- ``as inserted``: the service's placement at ``pit.added_item_weight=1``;
- ``own SIDs``: the training refresh's unique-SID rule applied to the added items (a SID a trained
  item holds gets a free last-level token, ``pitrec.index.proposals.unique_proposals``);
- ``first SID only``: each added item keeps its first proposal;
- ``shared SIDs split by weight``: an item on a SID several items hold gets its edge weight's share
  of the SID's probability (P(item | SID) from the edge weights) instead of all of it;
- ``SID weights = I2T probability``: an added item's SID weights are Item-to-Token's probabilities,
  not renormalised, so its score is sum_s P(s | user) P_I2T(s | item);
- ``content neighbour's SID`` / ``content neighbours' SIDs (top 4)``: no Item-to-Token at all: an
  added item takes the primary SID of its nearest trained item(s) by content cosine (the vectors
  the service embeds it with and CSA's content rows), weights proportional to the similarity. A
  content neighbour is not biased towards popular items, as Item-to-Token's id-free proposals are.
``--weights 1,0.5`` serves every placement under each ``pit.added_item_weight``.
Also prints Item-to-Token's probability of its top proposal for the added items. Prints Markdown.
Exploratory: scoring rules here are patched onto the engine, not served settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
import cold_start as cs  # noqa: E402  (benchmarks/cold_start.py: the protocol this probe reuses)

from pitrec.index.beam_index import BeamIndex  # noqa: E402
from pitrec.index.proposals import unique_proposals  # noqa: E402
from pitrec.serve.cold_start import content_neighbour_sids, text_part  # noqa: E402
from pitrec.serve.engines.pit import PITEngine, added_item_prior  # noqa: E402
from pitrec.serve.recommender import Recommender  # noqa: E402


def leaf_order(engine: PITEngine, items: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Edge positions in the trie's order (by leaf, then item), as ``compile_index`` aligns log q."""
    leaf = engine.trie.lookup(torch.from_numpy(codes)).numpy()
    return np.lexsort((items, leaf)), leaf


def main() -> None:
    ap = cs.probe_parser(__doc__)
    ap.add_argument("--weights", default="1", help="comma-separated pit.added_item_weight values")
    ap.add_argument("--only", default=None, help="only the policies whose name contains this")
    args, extra = ap.parse_known_args()
    _, full, held, warm, cold, new = cs.probe_cases(args, extra)

    rec = Recommender.load(args.out, persist=False, threads=args.threads, decoding=["pit.added_item_weight=1"])
    before = cs.ranked_metrics(rec, *warm, set())
    proposals: list[dict[tuple, float]] = []  # per added item: SID -> I2T log-probability
    i2t, generate = rec.engine.models.i2t, rec.engine.models.i2t.generate

    def recording(x, width, *a, **kw):
        out = generate(x, width, *a, **kw)
        proposals.append({tuple(c): lp for c, lp in zip(out.codes[0].tolist(), out.log_probs[0].tolist())})
        return out

    models = rec.engine.models
    contents: list[np.ndarray] = []  # per added item: the content vector the service embedded
    make_embedder = models.new_item_embedder

    def recording_embedder(catalog):
        embed = make_embedder(catalog)
        return lambda *a: contents.append(embed(*a)) or contents[-1]

    i2t.generate, models.new_item_embedder = recording, recording_embedder
    cs.insert_held_out(rec, full, held)
    i2t.generate, models.new_item_embedder = generate, make_embedder
    engine, index = rec.engine, rec.engine.index
    n_trained = rec.catalog.n_base
    items, codes, weights = index.edges()
    added = items >= n_trained
    first = np.r_[True, items[1:] != items[:-1]]
    top1 = np.exp([max(p.values()) for p in proposals])

    def rebuild(keep: np.ndarray, new_codes: np.ndarray | None = None) -> BeamIndex:
        c = codes if new_codes is None else new_codes
        return BeamIndex(index.codebook_sizes, index.n_items, items[keep], c[keep], weights[keep],
                         max_sids_per_item=index.max_sids_per_item, new_edge_weight=index.new_edge_weight)

    def own_sids() -> BeamIndex:
        rows = items[added] - n_trained
        cols = np.arange(len(items))[added] - np.flatnonzero(added & first).repeat(np.bincount(rows))
        cand = np.zeros((len(held), int(cols.max()) + 1, codes.shape[1]), np.int64)
        alive = np.zeros(cand.shape[:2], bool)
        cand[rows, cols], alive[rows, cols] = codes[added], True
        scores = -np.broadcast_to(np.arange(cand.shape[1], dtype=float), alive.shape)  # earlier proposals claim first
        out, kept, _ = unique_proposals(items[~added], codes[~added], np.arange(n_trained, n_trained + len(held)), cand,
                                        scores, alive, free_last_level=True, last_level_size=index.codebook_sizes[-1])
        kept[~kept.any(1), 0] = True  # an item left with nothing keeps its first proposal
        r, c = np.nonzero(kept)
        # a reassigned proposal can land on a later proposal of the same item (refresh merges such pairs)
        _, once = np.unique(np.column_stack([r, out[r, c]]), axis=0, return_index=True)
        r, c = r[np.sort(once)], c[np.sort(once)]
        return BeamIndex(index.codebook_sizes, index.n_items, np.r_[items[~added], n_trained + r],
                         np.concatenate([codes[~added], out[r, c]]), np.r_[weights[~added], np.ones(len(r))],
                         max_sids_per_item=index.max_sids_per_item, new_edge_weight=index.new_edge_weight)

    def split_by_weight(e: PITEngine) -> None:
        order, leaf = leaf_order(e, items, codes)
        share = weights / np.bincount(leaf, weights=weights)[leaf]
        e.edge_log_q = e.edge_log_q + torch.from_numpy(np.log(np.maximum(share, 1e-12))[order]).float()

    def i2t_probability(e: PITEngine) -> None:
        order, _ = leaf_order(e, items, codes)
        log_q = e.edge_log_q.numpy()[np.argsort(order)]  # back to edge order
        for j in np.flatnonzero(added):
            log_q[j] = proposals[items[j] - n_trained][tuple(codes[j].tolist())]
        e.edge_log_q = torch.from_numpy(log_q[order]).float()

    def neighbours(k: int, clone: bool = False) -> BeamIndex:
        """The service's ``content_neighbour_sids`` (k nearest trained items' primary SIDs), or with
        ``clone`` every SID of the nearest one with its weights."""
        trained_text = text_part(models.csa.item_embedding.content.cpu().numpy()[:n_trained],
                                 models.embedder.collaborative_dim)
        new_text = text_part(np.concatenate(contents), models.embedder.collaborative_dim)
        primary = index.primary_codes()[:n_trained]
        rows, new_codes, new_w = [], [], []
        for j, vector in enumerate(new_text):
            if clone:
                nearest = int(np.argmax(trained_text @ vector))
                a, b = np.searchsorted(items, nearest), np.searchsorted(items, nearest, side="right")
                c, w = codes[a:b], weights[a:b]
            else:
                c, w = content_neighbour_sids(trained_text, vector, primary, k, index.max_sids_per_item,
                                              index.new_edge_weight)
            rows += [n_trained + j] * len(c)
            new_codes.append(c)
            new_w.append(w)
        return BeamIndex(index.codebook_sizes, index.n_items, np.r_[items[~added], rows],
                         np.concatenate([codes[~added], *new_codes]), np.concatenate([weights[~added], *new_w]),
                         max_sids_per_item=index.max_sids_per_item, new_edge_weight=index.new_edge_weight)

    policies = [("as inserted", index, None), ("own SIDs (unique, free last token)", own_sids(), None),
                ("first SID only", rebuild(~added | first), None),
                ("shared SIDs split by weight", index, split_by_weight), ("SID weights = I2T probability", index, i2t_probability),
                ("content neighbour's SID", neighbours(1), None), ("content neighbours' SIDs (top 4)", neighbours(4), None),
                ("content neighbour's SIDs and weights (clone)", neighbours(1, clone=True), None)]
    policies = [p for p in policies if args.only is None or args.only in p[0]]
    print(f"Item-to-Token's top proposal for the {len(held)} added items: probability {np.median(top1):.4f} at the median "
          f"(10%-90%: {np.quantile(top1, .1):.4f}-{np.quantile(top1, .9):.4f}). {args.users} cold cases and {args.users} "
          f"warm users (Recall@10 {before['recall@10']:.4f}, NDCG@10 {before['ndcg@10']:.4f} before the insertion).\n")
    print("| policy | weight | cold R@10 | cold N@10 | new in cold top-10 | warm R@10 | warm N@10 | new in warm top-10 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, idx, patch in policies:
        for weight in [float(w) for w in args.weights.split(",")]:
            rec._engine = PITEngine(engine.models, idx)
            if patch is not None:
                patch(rec._engine)
            rec._engine.item_log_prior = added_item_prior(idx.n_items, n_trained, weight, models.device)
            c, w = cs.ranked_metrics(rec, *cold, new), cs.ranked_metrics(rec, *warm, new)
            print(f"| {name} | {weight:g} | {c['recall@10']:.4f} | {c['ndcg@10']:.4f} | {c['new_item_share_of_top10']:.3f} | "
                  f"{w['recall@10']:.4f} | {w['ndcg@10']:.4f} | {w['new_item_share_of_top10']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
