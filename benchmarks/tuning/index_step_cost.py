"""The per-step index work of co-evolution on a run's final beam index: recording a batch of
selections (``BeamIndex.record_selections``) and looking up the collision charge
(``sid_item_counts``), through the known-edge path against the general one (forced).

    python benchmarks/tuning/index_step_cost.py RUN_DIR [--batch 64] [--steps 50]

Selections are drawn among the index's own candidates, as co-evolution's are, so every pair is
already an edge. Checks first that both paths leave the same edges, then prints CPU ms per step.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np

import pitrec.index.beam_index as beam_index
from pitrec.index.beam_index import BeamIndex


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--batch", type=int, default=64, help="selections recorded per step")
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    index = BeamIndex.load(Path(args.run_dir) / "beam_index")
    rng = np.random.default_rng(0)
    items = rng.integers(0, index.n_items, args.batch)
    codes, mask, _ = index.candidates(items, 4)
    picked = codes[np.arange(len(items)), rng.integers(0, mask.sum(1))]
    known = beam_index.add_to_known_edges
    paths = {"general": lambda *a: None, "known edges": known}
    after = {}
    for name, fn in paths.items():
        beam_index.add_to_known_edges = fn
        ix = copy.deepcopy(index)
        ix.record_selections(items, picked)
        after[name] = ix.edges()
    assert all(np.array_equal(a, b) for a, b in zip(*after.values())), "the two paths left different edges"
    print(f"{args.run_dir}: {index.n_edges:,} edges; both paths leave the same edges")
    for name, fn in paths.items():
        beam_index.add_to_known_edges = fn
        ix = copy.deepcopy(index)
        t = time.process_time()
        for _ in range(args.steps):
            ix.record_selections(items, picked)
            ix.sid_item_counts(codes)
        print(f"  {name}: record + counts {(time.process_time() - t) / args.steps * 1e3:.2f} CPU ms per step")
    beam_index.add_to_known_edges = known


if __name__ == "__main__":
    main()
