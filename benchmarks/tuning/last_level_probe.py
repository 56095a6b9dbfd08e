"""CPU cost of TIGER's decoding with the last SID level scored by the model or renormalised within
the beam's prefix (``tiger.last_level``), alternating in one process, one thread.

    python benchmarks/tuning/last_level_probe.py RUN_DIR [--users 1024] [--batch 256] [--rounds 2]

CPU time (not wall time) per batch of the served engine, so that a neighbouring process on the
machine does not decide the comparison; per decoder step as well (which level costs what), and how
many beams the renormalised rule still decodes at the last level. Also the share of top-10 slots
and items the two rules agree on for the same users. Wall-clock users/s on a quiet machine is
``benchmarks/decode_speed.py --last-level``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import pitrec.models.user_to_token as user_to_token
from pitrec.decoding import beam_search as search
from pitrec.serve.recommender import Recommender, _padded
from pitrec.train.api import prepare_data


class StepClock:
    """Wraps the U2T's beam search so that every decoder step's CPU time (by level) and the rows
    of the last level's step are recorded."""

    def __init__(self) -> None:
        self.seconds: dict[int, float] = {}
        self.last_rows: list[int] = []
        self.original = search.beam_search

    def __call__(self, step, *args, **kwargs):
        def timed(prev, level, cache, **kw):
            t = time.process_time()
            out = step(prev, level, cache, **kw)
            self.seconds[level] = self.seconds.get(level, 0.0) + time.process_time() - t
            if "rows" in kw:
                self.last_rows.append(len(kw["rows"]))
            return out
        return self.original(timed, *args, **kwargs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--users", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    engines = {rule: Recommender.load(args.run_dir, persist=False, threads=1, last_level=rule).engine
               for rule in ("model", "renormalized")}
    _, split = prepare_data(engines["model"].run.cfg)
    users = np.random.default_rng(0).choice(split.n_users, size=min(args.users, split.n_users), replace=False)
    max_history = engines["model"].run.cfg.data.max_history
    histories = [split.test_history[u][-max_history:] for u in users]
    batches = [_padded(histories[i:i + args.batch]) for i in range(0, len(histories), args.batch)]
    clock = StepClock()
    user_to_token.beam_search = clock
    rows = {rule: [] for rule in engines}
    ranked = {}
    for engine in engines.values():
        engine.rank(batches[0][:32], args.k, False, False)  # warm-up
    for _ in range(args.rounds):
        for rule, engine in engines.items():
            clock.seconds, clock.last_rows = {}, []
            t = time.process_time()
            ranked[rule] = [r for b in batches for r in engine.rank(b, args.k, False, False)]
            cpu = time.process_time() - t
            rows[rule].append((cpu, dict(clock.seconds), sum(clock.last_rows)))
    print(f"{args.run_dir}: {len(histories)} test users in batches of {args.batch}, top-{args.k}, one thread\n")
    print("| last level | round | CPU s | users per CPU-second | CPU s by decoder step (level 0, 1, ...) | "
          "beams decoded at the last level |")
    print("|---|---:|---:|---:|---|---:|")
    beams = len(histories) * engines["model"].run.cfg.tiger.beam_width
    for rule, measured in rows.items():
        for i, (cpu, steps, last) in enumerate(measured):
            decoded = beams if rule == "model" else last
            print(f"| {rule} | {i + 1} | {cpu:.2f} | {len(histories) / cpu:.0f} | "
                  f"{', '.join(f'{steps[k]:.2f}' for k in sorted(steps))} | {decoded:,} of {beams:,} |")
    a, b = ranked["model"], ranked["renormalized"]
    slots = np.mean([x.item == y.item for ra, rb in zip(a, b) for x, y in zip(ra, rb)])
    shared = np.mean([len({x.item for x in ra} & {y.item for y in rb}) / max(len(ra), 1) for ra, rb in zip(a, b)])
    print(f"\nrenormalized against model, same users: {slots:.1%} of top-{args.k} slots equal, "
          f"{shared:.1%} of items shared")


if __name__ == "__main__":
    main()
