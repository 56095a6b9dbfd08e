"""Epoch-matched reading of a budget-matched benchmark: the validation metric every run logged
after epoch E, mean ± std over seeds, per method/variant.

    python benchmarks/tuning/epoch_matched.py runs/bench/synthetic --epochs 5 10 15 20

A benchmark gives every method the same wall-clock budget, so a method whose epochs cost more
trains fewer of them; the per-epoch validation log (metrics.jsonl) of the same runs shows how
the methods compare after the same number of epochs, at no extra compute. Reads
``<bench dir>/<method-variant>/seed*/metrics.jsonl``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pitrec.utils.io import read_jsonl


def valid_at(run: Path, metric: str) -> dict[int, float]:
    return {rec["epoch"]: rec["valid"][metric] for rec in read_jsonl(run / "metrics.jsonl") if "valid" in rec}


def table(bench_dir: Path, epochs: list[int], metric: str) -> str:
    lines = ["| method | seeds | " + " | ".join(f"epoch {e}" for e in epochs) + " |",
             "|---|---:|" + "---:|" * len(epochs)]
    for method_dir in sorted(p for p in bench_dir.iterdir() if p.is_dir()):
        runs = sorted(r for r in method_dir.glob("seed*") if (r / "metrics.jsonl").is_file())
        logs = [valid_at(r, metric) for r in runs]
        if not logs or not any(logs):
            continue
        cells = []
        for e in epochs:
            vals = [log[e] for log in logs if e in log]
            if len(vals) < len(logs):
                cells.append(f"({len(vals)} of {len(logs)} seeds reached it)" if vals else "-")
            else:
                std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
                cells.append(f"{np.mean(vals):.4f} ± {std:.4f}")
        lines.append(f"| {method_dir.name} | {len(logs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench_dir", type=Path)
    ap.add_argument("--epochs", type=int, nargs="+", default=[5, 10, 15, 20])
    ap.add_argument("--metric", default="ndcg@10")
    args = ap.parse_args()
    print(table(args.bench_dir, args.epochs, args.metric), end="")


if __name__ == "__main__":
    main()
