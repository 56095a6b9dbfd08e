"""Whose primary SID moved during a PIT run, and was it a user's choice?

    python benchmarks/tuning/primary_drift.py PIT_RUN [PIT_RUN ...]

An item's primary SID (its strongest beam-index edge) is what U2T trains on for targets left
unscored, what encodes the item in every history, and what I2T learns. It should move when users'
selections prefer another SID. This compares each run's final index (``beam_index/``) with its
warm-up table (``sid_table.json``), per bucket of how often the item occurs in the training
sequences, and sets it beside the selections that switched (``selection_switched_share`` in
``metrics.jsonl``: the share of targets whose minimum-loss SID was not the primary). Many more
moved primaries than switched selections, concentrated on rarely-consumed items, means untested
I2T proposals took the primary places (``pit.new_edges``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pitrec.config import config_from_dict
from pitrec.index.beam_index import BeamIndex
from pitrec.tokenizers.sid_table import SidTable
from pitrec.train.api import prepare_data
from pitrec.train.run_dir import RunDir

BUCKETS = [(0, 4), (5, 7), (8, 12), (13, 27), (28, None)]  # training occurrences; beauty's quartiles and top decile


def drift(run: Path) -> dict:
    index = BeamIndex.load(run / "beam_index")
    warm = SidTable.load(run / "sid_table.json").codes
    moved = ~(index.primary_codes() == warm).all(1)
    items, codes, _ = index.edges()
    held = {(int(i), c.tobytes()) for i, c in zip(items, codes.astype(warm.dtype))}
    dropped = np.array([(i, warm[i].tobytes()) not in held for i in range(len(warm))])
    cfg = config_from_dict(RunDir(run).read_config_dict(), source=str(run / "config.yaml"))
    _, split = prepare_data(cfg)
    occurrences = np.bincount(np.concatenate([np.asarray(s) for s in split.train]), minlength=len(warm))
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = []
    for lo, hi in BUCKETS:
        m = (occurrences >= lo) & (occurrences <= (hi if hi is not None else np.inf))
        rows.append({"occurrences": f"{lo}-{hi}" if hi is not None else f"{lo}+", "items": int(m.sum()),
                     "primary_moved": float(moved[m].mean()) if m.any() else None,
                     "warmup_sid_dropped": float(dropped[m].mean()) if m.any() else None})
    return {"run": str(run), "new_edges": cfg.pit.new_edges, "items": len(warm),
            "primary_moved": float(moved.mean()), "warmup_sid_dropped": float(dropped.mean()),
            "switched_share_per_epoch": [round(e.get("selection_switched_share", 0.0), 4) for e in epochs],
            "sid_churn_per_epoch": [round(e.get("sid_churn", 0.0), 4) for e in epochs], "buckets": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    results = [drift(run) for run in args.runs]
    for r in results:
        print(f"{r['run']} (pit.new_edges={r['new_edges']}): primary SID moved for {r['primary_moved']:.1%} of "
              f"{r['items']} items; warm-up SID gone from the index for {r['warmup_sid_dropped']:.1%}")
        print(f"  selections switched, per epoch: {r['switched_share_per_epoch']}")
        print(f"  primaries changed at each refresh: {r['sid_churn_per_epoch']}")
        print("  | training occurrences | items | primary moved | warm-up SID gone |")
        print("  |---|---:|---:|---:|")
        for b in r["buckets"]:
            print(f"  | {b['occurrences']} | {b['items']} | {b['primary_moved']:.1%} | {b['warmup_sid_dropped']:.1%} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
