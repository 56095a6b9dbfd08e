"""Can Item-to-Token learn the items' SIDs from its input? A probe on a trained PIT run.

    python benchmarks/tuning/i2t_probe.py RUN_DIR [--epochs 40] [--threads 1]

A fresh I2T (the run's I2T config) is trained for ``--epochs`` passes over the whole catalogue to
reproduce the run's warm-up SIDs, once from the run's trained CSA item embedding X_i and once from
the frozen content embedding, and scored by beam search (width 4): share of items whose best beam
is their SID (top-1), whose SID is among the 4 beams, and whose first code is right. If X_i cannot
be tokenised, I2T's proposals at a refresh are generic and co-evolution has nothing to select.
Prints a Markdown table (append it to a tuning note with the command line).
"""

from __future__ import annotations

import argparse
import time

import torch

from pitrec.models.item_to_token import ItemToToken
from pitrec.serve.recommender import Recommender


def probe(name: str, feats: torch.Tensor, codes: torch.Tensor, sizes, cfg, epochs: int) -> str:
    torch.manual_seed(0)
    n = len(codes)
    i2t = ItemToToken(feats.shape[1], sizes, cfg)
    opt = torch.optim.AdamW(i2t.parameters(), lr=3e-3)
    start = time.time()
    rows = []
    for ep in range(epochs):
        i2t.train()
        perm = torch.randperm(n)
        for s in range(0, n, 512):
            idx = perm[s:s + 512]
            loss = i2t.loss(feats[idx], codes[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if ep + 1 in (5, 20, epochs):
            i2t.eval()
            with torch.no_grad():
                res = i2t.generate(feats, 4)
            top1 = (res.codes[:, 0] == codes).all(-1).float().mean().item()
            in4 = (res.codes == codes[:, None]).all(-1).any(1).float().mean().item()
            lvl0 = (res.codes[:, 0, 0] == codes[:, 0]).float().mean().item()
            rows.append(f"| {name} | {ep + 1} | {loss.item():.3f} | {top1:.3f} | {in4:.3f} | {lvl0:.3f} | {time.time() - start:.0f} |")
            print(rows[-1], flush=True)
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    rec = Recommender.load(args.run_dir, persist=False, threads=args.threads)
    m = rec.engine.models
    if m.csa is None:
        raise SystemExit("the run has no CSA (pit.csa=false): X_i is the content embedding, nothing to compare")
    n = m.initial_codes.shape[0]
    with torch.no_grad():
        m.csa.eval()
        x = m.csa.item_vectors(torch.arange(n))
        content = m.csa.item_embedding.content.clone()
    sizes = list(rec.engine.index.codebook_sizes)
    print("| I2T input | catalogue epochs | last batch loss | top-1 | in 4 beams | first code | s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    probe(f"X_i (CSA, {x.shape[1]}-d)", x, m.initial_codes, sizes, rec.run.cfg.i2t, args.epochs)
    probe(f"content ({content.shape[1]}-d)", content, m.initial_codes, sizes, rec.run.cfg.i2t, args.epochs)


if __name__ == "__main__":
    main()
