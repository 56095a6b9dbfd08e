"""Throughput of the TIGER generator on a real dataset: training samples/s per history encoding
(and encoder attention) and evaluation users/s of constrained beam search. Speed does not depend on what the SIDs mean, so
``--sids random`` (random 3x256 codes + a disambiguation level) measures without the tokenizer
stage; ``--sids stage`` uses the configured tokenizer. The machine is shared, so per-CPU-second
rates are printed beside wall-clock ones: with one thread they measure the work, not the load.

    .venv/bin/python benchmarks/tuning/tiger_speed.py --data ../shared/data/amazon2014/beauty \
        --encoding item --threads 2 --train-batches 60 --eval-users 1024
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from pitrec.config import load_config
from pitrec.data.batches import PAD, EvalSamples, PrefixSamples
from pitrec.decoding.beam_search import beams_to_items
from pitrec.index.trie import Trie
from pitrec.models.user_to_token import UserToToken
from pitrec.tokenizers.sid_table import SidTable
from pitrec.train.prefix_windows import PrefixWindows
from pitrec.train.api import prepare_data


def random_sids(n_items: int, seed: int = 0) -> SidTable:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=(n_items, 3))
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    suffix = np.zeros(n_items, dtype=np.int64)
    for group in np.unique(inverse):  # disambiguation level, as the tokenizers' default policy
        members = np.flatnonzero(inverse == group)
        suffix[members] = np.arange(len(members))
    return SidTable(np.concatenate([codes, suffix[:, None]], 1), [256, 256, 256, int(suffix.max()) + 1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--encoding", choices=["item", "sid"], default="item")
    ap.add_argument("--attention", choices=["bidirectional", "causal"], default="bidirectional")
    ap.add_argument("--sids", choices=["random", "stage"], default="random")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--train-batches", type=int, default=60)
    ap.add_argument("--eval-users", type=int, default=1024)
    ap.add_argument("--eval-batch", type=int, default=256)
    ap.add_argument("--beam", type=int, default=20)
    ap.add_argument("overrides", nargs="*", help="--section.key=value config overrides")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config("tiger", overrides=[f"data.path={args.data}", f"u2t.history_encoding={args.encoding}",
                                          f"u2t.encoder_attention={args.attention}", *args.overrides])
    data, split = prepare_data(cfg)
    if args.sids == "random":
        table = random_sids(data.n_items)
    else:
        from pitrec.embed.stage import item_embeddings
        from pitrec.tokenizers.stage import sid_table
        table = sid_table(cfg, data, item_embeddings(cfg, data))
    codes = torch.from_numpy(table.codes)
    torch.manual_seed(0)
    model = UserToToken(table.codebook_sizes, cfg.u2t)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    causal = args.attention == "causal"
    samples = (PrefixWindows if causal else PrefixSamples)(split.train, cfg.data.max_history)
    batches = samples.batch_indices(args.batch_size, np.random.default_rng(0))[:args.train_batches]
    model.train()
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    for idx in batches:
        if causal:
            w = samples.batch(idx)
            nll = model.prefix_nll(codes[w.items.clamp(min=0)], w.items != PAD, w.n_last)
            loss, size = nll[w.targets].mean() / model.n_levels, w.n_targets
        else:
            b = samples.batch(idx)
            loss, size = model.loss(codes[b.history.clamp(min=0)], b.history == PAD, codes[b.target]), len(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += size
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    model.eval()
    trie = Trie.from_sid_table(table)
    hist, target = split.part("test")
    ev = EvalSamples(hist[:args.eval_users], target[:args.eval_users], cfg.data.max_history)
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for b in ev.batches(args.eval_batch):
            memory = model.encode(codes[b.history.clamp(min=0)], b.history == PAD)
            result = model.generate(memory, args.beam, trie)
            beams_to_items(result.leaves, result.log_probs, trie, 20)
    eval_s, eval_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"encoding": args.encoding, "threads": args.threads, "batch_size": args.batch_size,
                      "train_samples": n, "train_samples_per_s": round(n / train_s, 1),
                      "train_samples_per_cpu_s": round(n / train_cpu, 1),
                      "attention": args.attention,
                      "eval_users": len(ev), "beam": args.beam, "eval_users_per_s": round(len(ev) / eval_s, 1),
                      "eval_users_per_cpu_s": round(len(ev) / eval_cpu, 1),
                      "load_avg": open("/proc/loadavg").read().split()[:3]}))


if __name__ == "__main__":
    main()
