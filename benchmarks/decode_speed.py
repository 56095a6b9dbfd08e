"""Decoding speed of a trained run: batched top-k for many users, and single-request latency.

    python benchmarks/decode_speed.py RUN_DIR [--users 2000] [--batch 256] [--single 200] [--threads 2]

Measures the served engine (the model + constrained beam search + SID -> item mapping, exactly
what `pitrec serve` runs), on the run's own test histories, after a warm-up pass:
- batch: users/s over ``--users`` test users in batches of ``--batch``;
- single: p50/p90/p99 milliseconds of ``Recommender.recommend`` for one user (raw ids in and out);
- a torch profiler table of one batch (the hot spots), so optimisation starts from measurement.
Appends a record (git sha, machine, command line) to benchmarks/results/decode_speed.json and
rewrites decode_speed.md beside it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from pitrec.serve.recommender import Recommender, _padded
from pitrec.train.api import prepare_data
from pitrec.bench.results import provenance, save_labelled_record
from pitrec.utils.runtime import peak_rss_mb

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--single", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--label", default=None)
    ap.add_argument("--note", default="")
    ap.add_argument("--no-explain", dest="explain", action="store_false",
                    help="skip PIT's scoring of every SID of multi-SID items (explain=false in the API)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="the generator's precision; bfloat16 is also compared with float32 on the same users")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--malloc", default="default", choices=["retain", "default"],
                    help="retain: glibc keeps freed memory (run.retain_freed_memory); default: glibc's own "
                         "thresholds (pitrec's default, and every record before the option)")
    ap.add_argument("--last-level", default=None, choices=["model", "renormalized"],
                    help="tiger: how the last SID level is scored (tiger.last_level; default: the run's). "
                         "renormalized is also compared with model on the same users")
    ap.add_argument("--decoding", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a decoding setting of the run's method (as `pitrec serve --decoding`), e.g. "
                         "pit.one_to_many=false; repeatable. The run's own decoding is also measured on the same users")
    args = ap.parse_args()

    rec = Recommender.load(args.run_dir, persist=False, threads=args.threads, dtype=args.dtype, device=args.device,
                           retain_memory=args.malloc == "retain", last_level=args.last_level, decoding=args.decoding)
    method = rec.engine.method
    last_level = getattr(rec.run.cfg, method).last_level if method in ("tiger", "pit") else None
    engine = rec.engine
    _, split = prepare_data(rec.run.cfg)
    rng = np.random.default_rng(0)
    users = rng.choice(split.n_users, size=min(args.users, split.n_users), replace=False)
    histories = [split.test_history[u][-rec.run.cfg.data.max_history:] for u in users]

    engine.rank(_padded(histories[: min(32, len(histories))]), args.k, False, args.explain)  # warm-up
    start = time.perf_counter()
    ranked = _rank_all(engine, histories, args)
    batch_s = time.perf_counter() - start
    targets = split.test_target[users]
    quality = {"recall@k": _recall(ranked, targets)}
    if args.dtype != "float32" or last_level == "renormalized" or args.decoding:
        # what the speed costs: the same users ranked in float32, with the model's own last level
        # and the run's own decoding settings
        reference = Recommender.load(args.run_dir, persist=False, threads=args.threads, device=args.device,
                                     last_level="model" if last_level == "renormalized" else None)
        ranked_ref = _rank_all(reference.engine, histories, args)
        quality["reference"] = ("float32" + (", last level: model" if last_level == "renormalized" else "")
                                + (", the run's decoding" if args.decoding else ""))
        quality["reference_recall@k"] = _recall(ranked_ref, targets)
        quality["slots_equal_to_reference"] = float(np.mean(
            [a.item == b.item for r, r_ref in zip(ranked, ranked_ref) for a, b in zip(r, r_ref)]))
        quality["sets_overlap_with_reference"] = float(np.mean(
            [len({a.item for a in r} & {b.item for b in r_ref}) / max(len(r_ref), 1)
             for r, r_ref in zip(ranked, ranked_ref)]))

    raw = [[rec.catalog.ids[j] for j in h] for h in histories[: args.single]]
    lat = []
    for h in raw:
        t = time.perf_counter()
        rec.recommend(h, k=args.k, explain=args.explain)
        lat.append((time.perf_counter() - t) * 1000)
    lat_np = np.array(lat)

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        engine.rank(_padded(histories[: args.batch]), args.k, False, args.explain)
    hot = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)

    record = {
        "label": args.label or Path(args.run_dir).name, "run_dir": str(args.run_dir), "method": engine.method,
        "n_items": int(engine.n_items), "k": args.k, "users": len(histories), "batch": args.batch,
        "threads": args.threads, "device": args.device, "malloc": args.malloc,
        "beam_width": _beam_width(rec), "dtype": args.dtype, "last_level": last_level, "explain": args.explain, "quality": quality,
        **({"decoding": args.decoding} if args.decoding else {}),
        "batch_users_per_s": len(histories) / batch_s,
        "single_ms": {"p50": float(np.percentile(lat_np, 50)), "p90": float(np.percentile(lat_np, 90)),
                      "p99": float(np.percentile(lat_np, 99)), "n": len(lat)},
        "peak_rss_mb": peak_rss_mb(), "hot_spots": hot, "note": args.note,
        **provenance(),
    }
    save_labelled_record(RESULTS / "decode_speed.json", record, report)
    print(f"{record['label']}: {record['batch_users_per_s']:.0f} users/s (batch {args.batch}), "
          f"single p50 {record['single_ms']['p50']:.1f} ms, p99 {record['single_ms']['p99']:.1f} ms")


def _rank_all(engine, histories, args) -> list:
    """Every history's top-k through the served engine, in batches of ``--batch``."""
    ranked = []
    for i in range(0, len(histories), args.batch):
        ranked += engine.rank(_padded(histories[i:i + args.batch]), args.k, False, args.explain)
    return ranked


def _recall(ranked, targets) -> float:
    """Share of the sampled users whose test item is in their top-k (hits on item ids)."""
    return float(np.mean([any(r.item == t for r in row) for row, t in zip(ranked, targets)]))


def _device_note(record: dict) -> str:
    """Runs on a GPU are marked where the thread count is shown (CPU is the default)."""
    device = record.get("device", "cpu")
    return "" if device == "cpu" else f" + {device}"


def _versus(q: dict) -> str:
    """The ranking against the reference (float32; last level model): older records name it float32_*."""
    prefix = "reference" if "reference_recall@k" in q else "float32" if "float32_recall@k" in q else None
    if prefix is None:
        return "-"
    return (f"{q.get('reference', 'float32')}: R@k {q[prefix + '_recall@k']:.4f}, "
            f"{q['slots_equal_to_' + prefix]:.0%} slots equal, {q['sets_overlap_with_' + prefix]:.0%} of items shared")


def _beam_width(rec: Recommender) -> int | None:
    cfg = rec.run.cfg
    return {"tiger": cfg.tiger.beam_width, "pit": cfg.pit.beam_width}.get(rec.engine.method)


def report(doc: dict) -> str:
    lines = ["# Decoding speed", "",
             "Generated by `benchmarks/decode_speed.py` (command, git sha, machine per run in `decode_speed.json`). "
             "Served engine on the run's test histories: batched top-k users/s and single-request latency "
             "(`Recommender.recommend`, raw ids), after a warm-up pass. Targets (issue 6): >= 500 users/s "
             "batched, <= 20 ms p50 single, top-10 with beam 20, 2 CPU cores.", "",
             "malloc: `retain` keeps freed memory for reuse (`run.retain_freed_memory`), `default` is glibc's. "
             "last level (tiger): `model` scores every SID level with the model (TIGER), `renormalized` scores the "
             "last level within the SIDs of the beam's prefix (`tiger.last_level`).", "",
             "| run | method | dtype | last level | malloc | explain | items | beam | threads | batch | users/s | "
             "single p50 ms | p99 ms | R@k sampled | vs reference | peak MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        s = r["single_ms"]
        q = r.get("quality", {})
        vs = _versus(q)
        rk = f"{q['recall@k']:.4f}" if "recall@k" in q else "-"
        last = r.get("last_level") or ("model" if r["method"] in ("tiger", "pit") else "-")
        method = r["method"] + (f" ({', '.join(r['decoding'])})" if r.get("decoding") else "")
        lines.append(f"| {r['label']} | {method} | {r.get('dtype', 'float32')} | {last} | {r.get('malloc', 'default')} | "
                     f"{r.get('explain', True)} | {r['n_items']:,} | "
                     f"{r['beam_width']} | {r['threads']}{_device_note(r)} | {r['batch']} | {r['batch_users_per_s']:.0f} | "
                     f"{s['p50']:.1f} | {s['p99']:.1f} | {rk} | {vs} | {r['peak_rss_mb']:.0f} |")
    lines.append("")
    for r in doc["runs"]:
        lines += [f"## {r['label']}", "", f"`{r['command']}` at {r['git_sha']} on {r['machine']}, {r['created']}.",
                  "", r.get("note", ""), "", "Hot spots of one batch (torch profiler, self CPU time):", "", "```",
                  r["hot_spots"].rstrip(), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
