"""Cold start: are items PIT has never seen in training recommended correctly once inserted?

    python benchmarks/cold_start.py [--held-out 0.05] [--seed 0] [--threads 2] [--out runs/cold_start]
        [--overlay src/pitrec/configs/demo_overlay.yaml] [-- extra --section.key=value overrides]
    python benchmarks/cold_start.py --bench benchmarks/main.yaml --method LABEL --dataset beauty ...

Protocol (embedded synthetic data by default; `--data PATH` for another dataset; `--bench` takes the
dataset, recipe, budget and evaluation protocol of one PIT row of a bench config, so the cold-start
run trains exactly as that row's benchmark runs, on the reduced catalogue):
1. A random ``--held-out`` share of the items is removed from every sequence and from the
   catalogue; PIT trains on what remains (users left with fewer than 3 items are dropped).
2. The trained run is loaded as the service loads it; each held-out item is inserted with its
   title and attributes (`Recommender.add_item`: content embedding -> CSA without the id part ->
   Item-to-Token beam search -> its SIDs enter the index). U2T is not retrained.
3. Cold cases: every user whose original sequence has a held-out item at position t >= 1 (first
   such position); history = the items before it, target = that item. Top-20 over the whole
   catalogue (old + new items); hits on item ids.
Reported: Recall/NDCG@{10,20} on the cold cases, the chance level (k / catalogue size), the
share of recommendation slots given to new items, and the run's own (warm) test metrics. For
scale, content kNN (items ranked by the cosine of their content embedding to the user's last item;
it needs no training, so the held-out items are as known to it as any other) is scored on the same
cold cases over the same catalogue. Writes
benchmarks/results/cold_start.{json,md} with git sha, machine and command line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pitrec.bench.plan import plan_runs
from pitrec.bench.results import provenance, save_labelled_record
from pitrec.bench.spec import load_bench
from pitrec.config import Config, deep_merge, load_config, parse_overrides
from pitrec.data.batches import left_pad
from pitrec.data.interactions import Interactions
from pitrec.data.split import leave_one_out
from pitrec.embed.stage import item_embeddings
from pitrec.eval.metrics import rank_metrics
from pitrec.serve.recommender import Recommender
from pitrec.train.api import prepare_data, train_run
from pitrec.train.recipes.content_knn import ContentKNNRanker, unit_rows

RESULTS = Path(__file__).parent / "results"
DEMO_OVERLAY = Path(__file__).parents[1] / "src/pitrec/configs/demo_overlay.yaml"
KS = (10, 20)


def without_items(data: Interactions, held: np.ndarray, min_len: int) -> tuple[Interactions, dict[str, int]]:
    """The dataset with ``held`` (dense ids) removed from the catalogue and every sequence."""
    keep = np.ones(data.n_items, dtype=bool)
    keep[held] = False
    new_id = np.cumsum(keep) - 1
    seqs, users, short = [], [], 0
    for u, s in enumerate(data.sequences):
        s = s[keep[s]]
        if len(s) < min_len:
            short += 1
            continue
        seqs.append(new_id[s].astype(np.int64))
        users.append(data.user_ids[u])
    kept = np.flatnonzero(keep)
    reduced = replace(data, sequences=seqs, user_ids=users, item_ids=[data.item_ids[i] for i in kept],
                      item_text=None if data.item_text is None else [data.item_text[i] for i in kept],
                      item_attributes=None if data.item_attributes is None else [data.item_attributes[i] for i in kept],
                      name=f"{data.name}-without-{len(held)}-items",
                      dropped={**data.dropped, "users_too_short_after_hold_out": short})
    return reduced, {"users_dropped": short, "items_kept": int(keep.sum())}


def cold_cases(data: Interactions, held: np.ndarray) -> tuple[list[list], list]:
    is_held = np.zeros(data.n_items, dtype=bool)
    is_held[held] = True
    histories, targets = [], []
    for s in data.sequences:
        pos = np.flatnonzero(is_held[s][1:]) + 1
        if len(pos):
            t = int(pos[0])
            histories.append([data.item_ids[i] for i in s[:t]])
            targets.append(data.item_ids[s[t]])
    return histories, targets


def content_knn_cold(cfg: Config, full: Interactions, histories: list[list], targets: list,
                     new_items: set[int], batch: int = 1024) -> dict:
    """Content kNN's metrics on the cold cases, in ``full``'s dense ids (every item, held-out ones too)."""
    index = {raw: j for j, raw in enumerate(full.item_ids)}
    ranker = ContentKNNRanker(torch.from_numpy(unit_rows(item_embeddings(cfg, full))),
                              torch.zeros(full.n_items), cfg.knn.last_items, cfg.knn.decay)
    padded = left_pad([np.array([index[i] for i in h], dtype=np.int64) for h in histories], cfg.data.max_history)
    ranked = torch.cat([ranker.rank(torch.from_numpy(padded[i:i + batch]), max(KS))
                        for i in range(0, len(padded), batch)])
    target = torch.tensor([index[t] for t in targets])
    metrics = {k: float(v.mean()) for k, v in rank_metrics(ranked, target, KS).items()}
    return {**metrics, "new_item_share_of_top10": float(np.isin(ranked[:, :10].numpy(), list(new_items)).mean())}


def warm_sample(reduced: Interactions, split, n: int, seed: int) -> tuple[list[list], list]:
    """Up to ``n`` test users of the reduced data (their next item is an old one), raw ids."""
    rng = np.random.default_rng(seed + 1)
    users = np.sort(rng.choice(split.n_users, size=min(n, split.n_users), replace=False))
    ids = reduced.item_ids
    return ([[ids[i] for i in split.test_history[u][-split.max_history:]] for u in users],
            [ids[split.test_target[u]] for u in users])


def ranked_metrics(rec: Recommender, histories: list[list], targets: list, new: set) -> dict:
    """Recall/NDCG of the service's top-k on these users, and the share of top-10 slots held by ``new``
    (raw ids): do inserted items crowd out what users with old next items are shown?"""
    out = rec.recommend_many(histories, k=max(KS), explain=False)
    ranked = [[s.id for s in row.items] for row in out.results]
    index = {raw: j for j, raw in enumerate(dict.fromkeys([*targets, *(i for row in ranked for i in row)]))}
    dense = torch.tensor([[index[i] for i in row] + [-1] * (max(KS) - len(row)) for row in ranked])
    per_user = rank_metrics(dense, torch.tensor([index[t] for t in targets]), KS)
    return {**{k: float(v.mean()) for k, v in per_user.items()},
            "new_item_share_of_top10": sum(i in new for row in ranked for i in row[:10]) / (10 * len(ranked))}


def held_out_data(cfg: Config, held_out: float, seed: int):
    """The full data, the held-out items (a random ``held_out`` share, fixed by ``seed``), the data
    without them (and what that dropped) and its leave-one-out split."""
    full, _ = prepare_data(cfg)
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(full.n_items, size=max(1, int(round(held_out * full.n_items))), replace=False))
    reduced, info = without_items(full, held, cfg.data.min_user_interactions)
    split = leave_one_out(reduced, max_history=cfg.data.max_history, min_interactions=cfg.data.min_user_interactions)
    return full, held, reduced, info, split


def insert_held_out(rec: Recommender, full: Interactions, held: np.ndarray) -> None:
    """Each held-out item through ``Recommender.add_item``, with its title and attributes."""
    attr_raw = full.attribute_ids or []
    for i in held:
        attrs = [attr_raw[a] for a in (full.item_attributes[i] if full.item_attributes else [])]
        rec.add_item(full.item_ids[i], title=(full.item_text[i] if full.item_text else ""), attributes=attrs)


def rank_inserted(rec: Recommender, cold: tuple[list[list], list], warm_users: tuple[list[list], list], new: set) -> dict:
    """The cold cases and the warm sample ranked by a service holding the inserted items."""
    metrics = ranked_metrics(rec, *cold, new)
    share = metrics.pop("new_item_share_of_top10")
    return {"added_item_weight": rec.engine.models.added_item_weight(), "catalogue_items": rec.engine.n_items,
            "cold": metrics, "new_item_share_of_top10": share, "warm_after": ranked_metrics(rec, *warm_users, new)}


def placement(rec: Recommender, reduced: Interactions) -> dict:
    """Where the added items were put (Item-to-Token, or their content neighbours): how many share
    their first SID with a trained item, and how popular (training interactions) those trained
    items are against the catalogue's mean.
    An added item on a popular item's SID inherits that item's probability for every user."""
    items, codes, _ = rec.engine.index.edges()
    n_trained = rec.catalog.n_base
    counts = np.bincount(np.concatenate(reduced.sequences), minlength=reduced.n_items)
    dense = {str(raw): j for j, raw in enumerate(reduced.item_ids)}
    popularity = np.array([counts[dense[str(raw)]] for raw in rec.catalog.ids[:n_trained]])
    holders: dict[tuple, list[int]] = {}
    for item, code in zip(items.tolist(), map(tuple, codes.tolist())):
        if item < n_trained:
            holders.setdefault(code, []).append(item)
    added = np.flatnonzero(items >= n_trained)
    first = added[np.r_[True, items[added][1:] != items[added][:-1]]]  # each added item's first SID
    shared = [holders[tuple(codes[e].tolist())] for e in first if tuple(codes[e].tolist()) in holders]
    on = np.array([i for h in shared for i in h], dtype=np.int64)
    return {"added_items": int(len(first)), "first_sid_held_by_trained_share": len(shared) / max(1, len(first)),
            "distinct_trained_holders": int(len(np.unique(on))),
            "holder_training_interactions_mean": float(popularity[on].mean()) if len(on) else None,
            "catalogue_training_interactions_mean": float(popularity.mean())}


def cold_start_config(args: argparse.Namespace, extra: list[str]) -> Config:
    """The training config: a bench row's (``--bench``) or the overlay's, then this script's run
    settings and ``extra`` overrides on top."""
    ours = [f"run.seed={args.seed}", f"run.num_threads={args.threads}", f"run.out={args.out}",
            "run.progress=false", *extra]
    if args.bench is None:
        if args.method or args.dataset:
            sys.exit("--method and --dataset choose a row of --bench; without --bench use --data")
        data_over = ["data.format=synthetic"] if args.data is None else [f"data.path={args.data}"]
        overlay = DEMO_OVERLAY if args.overlay is None else args.overlay
        return load_config("pit", files=[overlay] if overlay else [], overrides=[*data_over, *ours])
    if args.method is None or args.data is not None or args.overlay is not None:
        sys.exit("--bench needs --method (one PIT row's label) and takes its data and config from that row, "
                 "not from --data or --overlay")
    bench = load_bench(args.bench)
    args.dataset = args.dataset or next(iter(bench.datasets))
    runs, _ = plan_runs(bench, methods=[args.method], datasets=[args.dataset])
    rows = {r.method.label for r in runs}
    if len(rows) != 1 or runs[0].method.method != "pit":
        sys.exit(f"--method {args.method} must name one PIT row of {args.bench}; it matched {sorted(rows) or 'none'}")
    return load_config("pit", overrides=deep_merge(runs[0].cfg.to_dict(), parse_overrides(ours)))


def probe_parser(doc: str) -> argparse.ArgumentParser:
    """The options of the tuning probes that reuse a finished run of this script: the same options
    give the same held-out items, split and cases."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default=None, help="bench config of the run's PIT row (default: the synthetic demo)")
    ap.add_argument("--method", default=None, help="with --bench: the row's label")
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--out", required=True, help="a finished cold_start.py run directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--held-out", type=float, default=0.05)
    ap.add_argument("--users", type=int, default=1000, help="cold cases and warm users sampled, of each")
    ap.add_argument("--threads", type=int, default=1)
    return ap


def probe_cases(args: argparse.Namespace, extra: list[str]):
    """A probe's config, full data, held-out items and samples of ``args.users`` warm users and
    cold cases (raw ids), and the held-out items' raw ids."""
    args.data = args.overlay = None
    cfg = cold_start_config(args, [e.lstrip("-") for e in extra if e != "--"])
    full, held, reduced, _, split = held_out_data(cfg, args.held_out, args.seed)
    warm = warm_sample(reduced, split, args.users, args.seed)
    cold_h, cold_t = cold_cases(full, held)
    pick = np.sort(np.random.default_rng(args.seed + 2).choice(len(cold_t), min(args.users, len(cold_t)), replace=False))
    cold = ([cold_h[i] for i in pick], [cold_t[i] for i in pick])
    return cfg, full, held, warm, cold, {full.item_ids[i] for i in held}


def default_label(args: argparse.Namespace) -> str:
    if args.bench is not None:
        return f"{args.dataset}-{args.method}-seed{args.seed}"
    return f"synthetic-seed{args.seed}" if args.data is None else f"{Path(args.data).name}-seed{args.seed}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="dataset path (default: the embedded synthetic data)")
    ap.add_argument("--held-out", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--overlay", default=None, help=f"config overlay without --bench (default: {DEMO_OVERLAY})")
    ap.add_argument("--out", default="runs/cold_start")
    ap.add_argument("--label", default=None)
    ap.add_argument("--reuse", action="store_true", help="reuse a finished run in --out (same seed and options)")
    ap.add_argument("--warm-users", type=int, default=3000,
                    help="test users with an old next item, ranked before and after the insertion")
    ap.add_argument("--added-item-weights", type=lambda v: [float(x) for x in v.split(",")], default=[1.0, 0.7, 0.5, 0.4, 0.25],
                    help="also serve with these added-item weights (comma-separated; pit.added_item_weight, or "
                         "pit.neighbour_item_weight under content_neighbours); the run's own value comes first and "
                         "gives the headline figures")
    ap.add_argument("--new-item-sids", choices=["i2t", "content_neighbours"], default=None,
                    help="serve with this pit.new_item_sids (default: the run's own)")
    ap.add_argument("--decoding", action="append", default=[], metavar="pit.KEY=VALUE",
                    help="another serving setting for the insertion (a decoding key, no retraining; repeatable), "
                         "e.g. pit.new_item_neighbours=1")
    ap.add_argument("--bench", default=None, help="bench config whose PIT row (--method) sets the training")
    ap.add_argument("--method", default=None, help="with --bench: the row's label, e.g. pit/cf-lean-stride")
    ap.add_argument("--dataset", default=None, help="with --bench: the dataset name (default: its first)")
    args, extra = ap.parse_known_args()
    torch.set_num_threads(args.threads)  # before provenance, whose machine line names the thread count
    started = provenance()  # the code that runs is the code at the start, however long training takes
    cfg = cold_start_config(args, [e.lstrip("-") for e in extra if e != "--"])
    full, held, reduced, info, split = held_out_data(cfg, args.held_out, args.seed)
    finished = Path(args.out) / "test_metrics.json"
    if args.reuse and finished.is_file():
        warm = json.loads(finished.read_text())
    else:
        shutil.rmtree(args.out, ignore_errors=True)
        warm = train_run("pit", cfg, data=(reduced, split))

    warm_users = warm_sample(reduced, split, args.warm_users, args.seed)
    histories, targets = cold_cases(full, held)
    if not histories:
        sys.exit("no cold cases: no held-out item follows another item in any sequence")
    new = {full.item_ids[i] for i in held}
    placed = [*([] if args.new_item_sids is None else [f"pit.new_item_sids={args.new_item_sids}"]), *args.decoding]
    served = Recommender.load(args.out, persist=False, threads=args.threads, decoding=placed)
    warm_before = ranked_metrics(served, *warm_users, new=set())
    sids_from = served.run.cfg.pit.new_item_sids
    weight_key = served.engine.models.added_item_weight_key()
    default_weight = served.engine.models.added_item_weight()
    weights = list(dict.fromkeys([default_weight, *args.added_item_weights]))
    sweep, where = [], None
    for weight in weights:  # the same SIDs each time: the weight only scales the added items' scores
        rec = Recommender.load(args.out, persist=False, threads=args.threads, decoding=[*placed, f"pit.{weight_key}={weight}"])
        insert_held_out(rec, full, held)
        sweep.append(rank_inserted(rec, (histories, targets), warm_users, new))
        if where is None:
            where = placement(rec, reduced)
    headline = sweep[0]
    record = {
        "label": args.label or default_label(args),
        "held_out_items": int(len(held)), "catalogue_items": headline["catalogue_items"], "cold_cases": len(targets),
        **info, "cold": headline["cold"],
        "chance": {f"recall@{k}": k / headline["catalogue_items"] for k in KS},
        "new_item_share_of_top10": headline["new_item_share_of_top10"],
        "new_item_share_of_catalogue": len(held) / headline["catalogue_items"],
        "added_item_weight": default_weight, "new_item_sids": sids_from, "serving_overrides": placed,
        "warm_test": {k: warm["test"][k] for k in ("recall@10", "ndcg@10", "recall@20", "ndcg@20")},
        "warm_sample": {"users": len(warm_users[0]), "before_insert": warm_before, "after_insert": headline["warm_after"]},
        "placement": where,
        "added_item_weight_sweep": sweep,
        "content_knn_cold": content_knn_cold(cfg, full, histories, targets, set(int(i) for i in held)),
        **started, "created": provenance()["created"],
    }
    doc = save_labelled_record(RESULTS / "cold_start.json", record, report)
    print(report(doc))


def report(doc: dict) -> str:
    lines = ["# PIT cold start: held-out items inserted after training", "",
             "Generated by `benchmarks/cold_start.py` (protocol in its docstring; command, git sha and machine per run "
             "in `cold_start.json`). Cold: users whose next item was never seen in training, ranked over the whole "
             "catalogue after the items were inserted through Item-to-Token (no retraining).", "",
             "| run | held-out items | catalogue | cold cases | cold R@10 | cold N@10 | cold R@20 | chance R@10 "
             "| new items in top-10 (share of catalogue) | warm test R@10 | warm test N@10 "
             "| content kNN cold R@10 / N@10 (new in top-10) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        c, w, knn = r["cold"], r["warm_test"], r.get("content_knn_cold")
        knn_cell = "-" if knn is None else (f"{knn['recall@10']:.4f} / {knn['ndcg@10']:.4f} "
                                            f"({knn['new_item_share_of_top10']:.3f})")
        weight = f" (added_item_weight {r['added_item_weight']:g})" if "added_item_weight" in r else ""
        if r.get("new_item_sids", "i2t") != "i2t":
            weight = f" (SIDs from {r['new_item_sids']}, weight {r['added_item_weight']:g})"
        lines.append(f"| {r['label']}{weight} | {r['held_out_items']} | {r['catalogue_items']} | {r['cold_cases']} | "
                     f"{c['recall@10']:.4f} | {c['ndcg@10']:.4f} | {c['recall@20']:.4f} | {r['chance']['recall@10']:.4f} | "
                     f"{r['new_item_share_of_top10']:.3f} ({r['new_item_share_of_catalogue']:.3f}) | "
                     f"{w['recall@10']:.4f} | {w['ndcg@10']:.4f} | {knn_cell} |")
    lines.append("")
    swept = [r for r in doc["runs"] if "added_item_weight_sweep" in r]
    if swept:
        lines += ["`pit.added_item_weight` (a decoding setting: an added item's score times this) against what it costs "
                  "the warm sample; the first row of each run is the run's own value, the headline above.", "",
                  "| run | added_item_weight | cold R@10 | cold N@10 | cold R@20 | new in cold top-10 | warm R@10 before -> after "
                  "| warm N@10 before -> after | new in warm top-10 |", "|---|---|---|---|---|---|---|---|---|"]
        for r in swept:
            b = r["warm_sample"]["before_insert"]
            for p in r["added_item_weight_sweep"]:
                c, a = p["cold"], p["warm_after"]
                lines.append(f"| {r['label']} | {p['added_item_weight']:g} | {c['recall@10']:.4f} | {c['ndcg@10']:.4f} | "
                             f"{c['recall@20']:.4f} | {p['new_item_share_of_top10']:.3f} | {b['recall@10']:.4f} -> "
                             f"{a['recall@10']:.4f} | {b['ndcg@10']:.4f} -> {a['ndcg@10']:.4f} | "
                             f"{a['new_item_share_of_top10']:.3f} |")
        lines.append("")
    for r in doc["runs"]:
        lines.append(f"- **{r['label']}**: `{r['command']}` at {r['git_sha']} on {r['machine']}, {r['created']}.")
        if r.get("serving_overrides"):
            lines.append(f"  Served with {', '.join(f'`{o}`' for o in r['serving_overrides'])}.")
        if r.get("placement") and r["placement"]["holder_training_interactions_mean"] is not None:
            p = r["placement"]
            lines.append(f"  Placement: {p['first_sid_held_by_trained_share']:.1%} of the {p['added_items']} added items got a "
                         f"first SID already held by a trained item ({p['distinct_trained_holders']} distinct holders, "
                         f"{p['holder_training_interactions_mean']:.1f} training interactions on average against the "
                         f"catalogue's {p['catalogue_training_interactions_mean']:.1f}).")
        if "warm_sample" in r:
            w, (b, a) = r["warm_sample"], (r["warm_sample"]["before_insert"], r["warm_sample"]["after_insert"])
            lines.append(f"  Warm users (a sample of {w['users']} test users whose next item is an old one), before -> after "
                         f"the insertion: R@10 {b['recall@10']:.4f} -> {a['recall@10']:.4f}, N@10 {b['ndcg@10']:.4f} -> "
                         f"{a['ndcg@10']:.4f}; new items hold {a['new_item_share_of_top10']:.3f} of their top-10 slots.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
