"""How PIT's beam index spreads over SID prefixes: why the renormalised last level
(``pit.last_level``) saves little for PIT.

    python benchmarks/tuning/index_prefixes.py RUN_DIR

Prints the index's SIDs, the share of them that share their prefix (all levels but the last) with
another SID (those beams still need the last decoder step), and at which level each non-primary
SID first differs from its item's primary SID.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pitrec.index.beam_index import BeamIndex


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    args = ap.parse_args()
    index = BeamIndex.load(Path(args.run_dir) / "beam_index")
    items, codes, _ = index.edges()
    _, inverse, counts = np.unique(codes[:, :-1], axis=0, return_inverse=True, return_counts=True)
    shared = counts[inverse.reshape(-1)] > 1
    primary = index.primary_codes()[items]
    other = ~(codes == primary).all(1)
    first = np.argmax(codes[other] != primary[other], axis=1)
    share = np.bincount(first, minlength=codes.shape[1]) / max(1, other.sum())
    print(f"{args.run_dir}: {len(codes):,} SIDs for {index.n_items:,} items; {shared.mean():.1%} share their "
          f"prefix with another SID; {other.sum():,} non-primary SIDs, first differing from the primary at level "
          + ", ".join(f"{lvl}: {s:.1%}" for lvl, s in enumerate(share)))


if __name__ == "__main__":
    main()
