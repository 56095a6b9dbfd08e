"""Does PIT's one-to-many index help decoding? A probe on PIT runs' checkpoints.

    python benchmarks/tuning/index_decoding.py RUN_DIR [RUN_DIR ...] [--checkpoint best] [--threads 1]

The run's U2T ranks the validation users (the run's own validation subset) three ways:
- TIGER's ranker (``GenerativeRanker``) over the warm-up SID table, one SID per item;
- PIT's ranker over an index holding only those warm-up SIDs (it must equal the line above: the
  two decoders agree when there is nothing to aggregate);
- PIT's ranker over the run's index (several weighted SIDs per item, aggregated per item).
The difference between the last two is what the index adds at decoding, with the model held fixed.
Prints one Markdown row per run.
"""

from __future__ import annotations

import argparse

from pitrec.decoding.pit_ranker import PITRanker, compile_index
from pitrec.decoding.ranker import GenerativeRanker
from pitrec.index.beam_index import BeamIndex
from pitrec.index.trie import Trie
from pitrec.tokenizers.sid_table import SidTable
from pitrec.train.api import make_evaluators, recipe_at_checkpoint
from pitrec.utils.runtime import set_threads

METRICS = ("recall@10", "ndcg@10")


def compare(run_dir: str, checkpoint: str) -> dict:
    pit, state = recipe_at_checkpoint("pit", run_dir, which=checkpoint)
    pit.train(False)
    _, valid = make_evaluators(pit.cfg, pit.split)
    pc, table = pit.cfg.pit, SidTable(pit.initial_codes.cpu().numpy(), pit.sizes)
    warm_trie, warm_log_q = compile_index(BeamIndex.from_sid_table(table), True, pit.device)
    rankers = {
        "tiger_ranker_warmup_sids": GenerativeRanker(pit.u2t, pit.initial_codes, Trie.from_sid_table(table).to(pit.device),
                                                     pc.beam_width),
        "pit_ranker_warmup_sids": PITRanker(pit.u2t, pit.initial_codes, warm_trie, warm_log_q, pc.beam_width, pc.aggregation),
        "pit_ranker_run_index": pit.ranker(),
    }
    out = {"epoch": state["epoch"], "sids_per_item": float(pit.index.sids_per_item().mean())}
    for name, ranker in rankers.items():
        metrics = valid.evaluate(ranker, "valid")
        out[name] = {k: metrics[k] for k in METRICS}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+")
    ap.add_argument("--checkpoint", default="best", choices=["best", "latest"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    set_threads(args.threads)
    print("| run | epoch | SIDs/item | TIGER ranker, warm-up SIDs: R@10 / N@10 | PIT ranker, warm-up SIDs | "
          "PIT ranker, run's index |")
    print("|---|---:|---:|---|---|---|")
    for run_dir in args.run_dirs:
        r = compare(run_dir, args.checkpoint)
        cells = [f"{r[k]['recall@10']:.4f} / {r[k]['ndcg@10']:.4f}"
                 for k in ("tiger_ranker_warmup_sids", "pit_ranker_warmup_sids", "pit_ranker_run_index")]
        print(f"| `{run_dir}` | {r['epoch']} | {r['sids_per_item']:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
