"""Validation NDCG@10 by epoch, mean over seeds, for rows of a results file, side by side: is one
method ahead per epoch, or only per CPU-minute? Reads the ``curves`` that each results record
keeps (so it works after the run directories are gone).

    python benchmarks/tuning/curves_by_epoch.py benchmarks/results/long/beauty.json \
        tiger/cf-stride-ffn256 pit/cf-lean-stride-ffn256-below-capped-siblings --every 5
"""

from __future__ import annotations

import argparse
import json
import statistics

from pitrec.bench.results import summary_label


def curves(results: dict, label: str, metric: str) -> list[dict[int, float]]:
    """One {epoch: value} per seed of ``label``."""
    out = []
    for run in results["runs"]:
        if summary_label(run["method"], run["variant"]) == label and run.get("curves"):
            c = run["curves"]
            out.append({e: v for e, v in zip(c["epoch"], c.get(metric, [])) if v is not None})
    if not out:
        raise SystemExit(f"no runs of {label!r} with curves in the results file")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results")
    ap.add_argument("labels", nargs="+", help="method or method/variant, as in the results summary")
    ap.add_argument("--metric", default="ndcg@10")
    ap.add_argument("--every", type=int, default=1, help="print every N-th epoch (and the last)")
    args = ap.parse_args()
    with open(args.results) as fh:
        results = json.load(fh)
    by_label = {label: curves(results, label, args.metric) for label in args.labels}
    last = max(max(c) for seeds in by_label.values() for c in seeds)
    heads = [f"{label} ({len(seeds)} seeds)" for label, seeds in by_label.items()]
    print("| epoch | " + " | ".join(heads) + " |")
    print("|---:|" + "---:|" * len(heads))
    for epoch in range(1, last + 1):
        if epoch % args.every and epoch != last:
            continue
        cells = []
        for seeds in by_label.values():
            values = [c[epoch] for c in seeds if epoch in c]
            cells.append(f"{statistics.mean(values):.4f} (n={len(values)})" if values else "-")
        print(f"| {epoch} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
