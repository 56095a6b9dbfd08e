"""Side-by-side Markdown tables of finished run directories: test metrics at the best validation
epoch, and validation NDCG@10 per epoch with the training seconds behind it.

    python benchmarks/tuning/compare_runs.py runs/speed/tiger30 runs/speed/tigercf30 \
        --labels "RQ-VAE (content)" "RQ-VAE (content + collaborative)"

Runs given the same label (e.g. seeds of one setting) also get a table of mean ± std (sample std,
n - 1) per label.

Reads each run's config.yaml, metrics.jsonl and test_metrics.json (written by `pitrec train`), so the
tables in benchmarks/tuning/*.md can be regenerated from the runs they describe.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from pitrec.utils.io import read_jsonl

METRICS = ("recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20")
HEADS = " | ".join(m.replace("recall", "R").replace("ndcg", "N") for m in METRICS)


def load(run: Path) -> tuple[list[dict], dict]:
    return read_jsonl(run / "metrics.jsonl"), json.loads((run / "test_metrics.json").read_text())


def cell(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def tables(runs: list[Path], labels: list[str], metric: str = "ndcg@10") -> str:
    loaded = [load(r) for r in runs]
    head = f"| run | epochs | best epoch | train s | {HEADS} |"
    lines = ["## Test (best validation epoch)", "", head, "|---|" + "---:|" * (3 + len(METRICS))]
    groups: dict[str, list[dict]] = {}  # label -> its runs' test records, for the mean ± std table
    for label, (_, test) in zip(labels, loaded):
        vals = " | ".join(f"{test['test'][m]:.4f}" for m in METRICS)
        lines.append(f"| {label} | {test['epochs_run']} | {test['best_epoch']} | {test['train_seconds']:.0f} | {vals} |")
        groups.setdefault(label, []).append(test)
    if any(len(g) > 1 for g in groups.values()):
        lines += ["", "## Mean ± std over the runs of each label", "",
                  f"| label | runs | epochs | {HEADS} |", "|---|---:|---:|" + "---:|" * len(METRICS)]
        for label, tests in groups.items():
            epochs = "/".join(str(t["epochs_run"]) for t in tests)
            lines.append(f"| {label} | {len(tests)} | {epochs} | "
                         + " | ".join(cell([t["test"][m] for t in tests]) for m in METRICS) + " |")
    n = max(len(e) for e, _ in loaded)
    lines += ["", f"## Validation {metric} by epoch (training seconds at the end of the epoch)", "",
              "| epoch | " + " | ".join(labels) + " |", "|---:|" + "---:|" * len(labels)]
    for i in range(n):
        cells = []
        for epochs, _ in loaded:
            rec = epochs[i] if i < len(epochs) else None
            cells.append("" if rec is None or "valid" not in rec
                         else f"{rec['valid'][metric]:.4f} ({rec['train_seconds']:.0f} s)")
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--labels", nargs="+", default=None)
    ap.add_argument("--metric", default="ndcg@10")
    args = ap.parse_args()
    labels = args.labels or [r.name for r in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit(f"{len(args.runs)} runs but {len(labels)} labels")
    print(tables(args.runs, labels, args.metric), end="")


if __name__ == "__main__":
    main()
