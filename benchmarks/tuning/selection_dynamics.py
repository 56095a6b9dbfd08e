"""Per epoch, what PIT's selection did in finished or running runs: scored and switched shares of
the training targets, the share of scored targets that switched, primary-SID churn at the refresh,
SIDs per item, U2T's training loss and validation NDCG@10.

    python benchmarks/tuning/selection_dynamics.py RUN_DIR [RUN_DIR ...]

Reads each run's metrics.jsonl; one Markdown table per run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pitrec.utils.io import read_jsonl


def table(run: Path) -> str:
    rows = ["| epoch | phase | scored | switched | switched / scored | primary churn | SIDs/item | U2T loss | valid N@10 |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for e in read_jsonl(run / "metrics.jsonl"):
        scored, switched = e.get("selection_scored_share", 0.0), e.get("selection_switched_share", 0.0)
        ratio = f"{switched / scored:.0%}" if scored else "-"
        rows.append(f"| {e['epoch']} | {e.get('phase', '-')} | {scored:.1%} | {switched:.2%} | {ratio} | "
                    f"{e.get('sid_churn', 0.0):.1%} | {e.get('index', {}).get('sids_per_item_mean', 1.0):.2f} | "
                    f"{e.get('train_u2t', e.get('train_loss', float('nan'))):.3f} | {e['valid']['ndcg@10']:.4f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+", type=Path)
    for run in ap.parse_args().run_dirs:
        print(f"`{run}`\n\n{table(run)}\n")


if __name__ == "__main__":
    main()
