"""What a PIT epoch costs against a TIGER epoch in real training runs, from their ``metrics.jsonl``.

    python benchmarks/tuning/epoch_cost.py TIGER_RUN PIT_RUN [--label NAME]

``benchmarks/step_cost.py`` times steps with every item holding ``pit.candidates`` SIDs, so every
target is scored: the worst case. In a run, only targets whose item has several SIDs in the beam
index are scored (``selection_scored_share`` in the PIT log), and that share grows as the index
fills. This prints, per PIT epoch, its phase, the share of targets scored, its CPU seconds and
the ratio to the median CPU seconds of TIGER's complete epochs. CPU seconds, because the two runs
are meant to run side by side on one machine, where wall time measures the neighbour's load; the
index refresh at each epoch's end is outside the training clock and not included (about 1-3 s).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def epochs(run: Path) -> list[dict]:
    """Per logged epoch: its record and the CPU seconds it took (``train_cpu_seconds`` is cumulative)."""
    rows, before = [], 0.0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    for line in lines:
        record = json.loads(line)
        rows.append(dict(record, cpu_s=record["train_cpu_seconds"] - before))
        before = record["train_cpu_seconds"]
    return rows


def steps_per_epoch(rows: list[dict]) -> int:
    """A complete epoch's steps: the step count after the first epoch (the first one is complete
    in any run longer than an epoch, which this comparison needs)."""
    return rows[0]["step"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tiger", type=Path)
    ap.add_argument("pit", type=Path)
    ap.add_argument("--label", default=None)
    args = ap.parse_args()
    tiger, pit = epochs(args.tiger), epochs(args.pit)
    full = steps_per_epoch(tiger)
    # TIGER's own epochs drift up over a run (benchmarks/tuning/epoch_profile_beauty.md), so the
    # same-numbered TIGER epoch is a second reference beside the median
    same = {r["epoch"]: r["cpu_s"] for i, r in enumerate(tiger)
            if r["step"] - (tiger[i - 1]["step"] if i else 0) == full}
    complete = list(same.values())
    base = statistics.median(complete)
    print(f"## {args.label or args.pit.name}\n")
    print(f"TIGER `{args.tiger}`: median {base:.1f} CPU s over {len(complete)} complete epochs "
          f"(range {min(complete):.1f}-{max(complete):.1f}).  PIT `{args.pit}`:\n")
    print("| PIT epoch | phase | targets scored | CPU s | x TIGER epoch | x same-numbered TIGER epoch |")
    print("|---:|---|---:|---:|---:|---:|")
    pit_full = steps_per_epoch(pit)
    for i, r in enumerate(pit):
        steps = r["step"] - (pit[i - 1]["step"] if i else 0)
        cpu = r["cpu_s"] * pit_full / steps  # a cut last epoch, scaled to a whole one
        cut = "" if steps == pit_full else f" ({steps}/{pit_full} steps, scaled)"
        scored = r.get("selection_scored_share")
        vs_same = f"{cpu / same[r['epoch']]:.2f}" if r["epoch"] in same else "-"
        print(f"| {r['epoch']} | {r.get('phase', '-')} | {'-' if scored is None else f'{scored:.0%}'} | "
              f"{cpu:.1f}{cut} | {cpu / base:.2f} | {vs_same} |")


if __name__ == "__main__":
    main()
