"""Where a served PIT ranking spends its CPU: the encoder, encoder + constrained beam search, the
whole ranking without explanations, and with them (log P(SID | history) for every SID of every
returned item).

    python benchmarks/tuning/pit_decode_parts.py RUN_DIR [--users 1024] [--batch 256] [--threads 1]
        [--decoding pit.one_to_many=false]

CPU seconds (process time) per part over the same test users, so a neighbour's load moves the
figures less than wall time would; ``benchmarks/decode_speed.py`` gives the served wall-clock
speed on a quiet machine. Also counts, per user, the SIDs of the returned items, how many of them
the user's own beams reached, and how many of the explained SIDs each source of
``pitrec.decoding.explain_scores`` scored (the search's last-level frontier, one decoder step from
the level before, the level before without a step under ``--decoding pit.last_level=renormalized``,
or decoded from the start); and how many users the ranker searched again with a
wider beam because their beams named fewer than k items.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from pitrec.data.batches import PAD
from pitrec.decoding.explain_scores import SourceCounts
from pitrec.serve.recommender import Recommender, _padded
from pitrec.train.api import prepare_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--users", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--decoding", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a decoding setting (as `pitrec serve --decoding`), e.g. pit.one_to_many=false; repeatable")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    rec = Recommender.load(args.run_dir, persist=False, threads=args.threads, decoding=args.decoding)
    engine = rec.engine
    if engine.method != "pit":
        raise SystemExit(f"{args.run_dir} is a {engine.method} run; this tool splits PIT's served ranking")
    m = engine.models
    _, split = prepare_data(rec.run.cfg)
    users = np.random.default_rng(0).choice(split.n_users, size=min(args.users, split.n_users), replace=False)
    histories = [split.test_history[u][-rec.run.cfg.data.max_history:] for u in users]
    batches = [_padded(histories[i:i + args.batch]) for i in range(0, len(histories), args.batch)]
    engine.rank(batches[0][:32], args.k, False, True)  # warm-up
    engine.models.explain_sources = SourceCounts()

    def encode(b):
        return m.u2t.encode_by_length(engine.history_codes[b.clamp(min=0)], b == PAD)

    ranker = engine.ranker()  # the served ranker, kept to read its widened-search count
    parts = {"encode": encode,
             "encode + beam search": lambda b: m.u2t.generate(
                 encode(b), m.pc.beam_width, engine.trie, renormalize_last=m.pc.last_level == "renormalized"),
             "ranker (items, scores)": lambda b: ranker.rank(b, args.k),
             "rank, explain=False": lambda b: engine.rank(b, args.k, False, False),
             "rank, explain=True": lambda b: engine.rank(b, args.k, False, True)}
    cpu = {name: 0.0 for name in parts}
    sids = reached = 0
    for b in batches:
        out = {}
        for name, f in parts.items():
            before = dataclasses.replace(engine.models.explain_sources)
            start = time.process_time()
            out[name] = f(b)
            cpu[name] += time.process_time() - start
            if name != "rank, explain=True":  # count the sources of the explained ranking only
                engine.models.explain_sources = before
        # the explained ranking: each item's SIDs, and which of them the timed search's beams reached
        for row, leaves in zip(out["rank, explain=True"], out["encode + beam search"].leaves):
            found = set(leaves[leaves >= 0].tolist())
            keys = [s.sid for r in row for s in r.sids]
            sids += len(keys)
            reached += int(sum(int(leaf) in found for leaf in engine.trie.lookup(torch.tensor(keys)))) if keys else 0
    n = len(histories)
    print(f"{args.run_dir}: {n} users, batches of {args.batch}, {args.threads} thread(s), "
          f"{engine.index.n_edges:,} edges for {engine.n_items:,} items")
    for name, seconds in cpu.items():
        print(f"  {name:22s} {seconds:7.3f} CPU s  {n / seconds:7.0f} users per CPU second")
    print(f"  explanations: {sids / n:.1f} SIDs per user's top {args.k}, {reached / n:.1f} of them reached by "
          f"the user's first-width search")
    print(f"  widened searches: {ranker.widened / n:.3f} per user")
    src = engine.models.explain_sources  # every SID of the explained items, those on the beams included
    print(f"  explained SIDs per user: {src.frontier / n:.1f} read off the search's last-level frontier, "
          f"{src.one_step / n:.1f} one decoder step from the level before, {src.alone / n:.1f} from the level before "
          f"without a step (alone on their prefix, renormalised last level), {src.decoded / n:.1f} decoded from the start")


if __name__ == "__main__":
    main()
