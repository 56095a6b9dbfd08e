"""Measure the semantic-ID tokenizers on a dataset: fit time and table statistics per embedding.

Each (encoder, tokenizer) pair is fitted fresh (tokenizer.use_cache=false) so the time is real;
embeddings come from the embed stage's cache when present (their encode time is the one recorded
when they were first computed). Results are appended to a JSON file as they finish, so a long run
that is stopped keeps what it measured; ``--render`` prints the Markdown table of that file.

    .venv/bin/python benchmarks/tuning/sids_beauty.py --data ../shared/data/amazon2014/beauty \
        --out benchmarks/tuning/sids_beauty.json
    .venv/bin/python benchmarks/tuning/sids_beauty.py --render benchmarks/tuning/sids_beauty.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pitrec.config import load_config
from pitrec.data.readers import load_interactions
from pitrec.embed.stage import compute_item_embeddings
from pitrec.tokenizers.stage import sid_table
from pitrec.utils.io import atomic_write_json
from pitrec.utils.runtime import git_sha, machine_summary, set_threads

LETTER = "letter_semantic_ids.json.gz"


def measure(args: argparse.Namespace) -> None:
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {"machine": machine_summary(), "rows": []}
    base = load_config(overrides=[f"data.path={args.data}", "run.progress=false", "tokenizer.use_cache=false",
                                  *args.overrides])
    set_threads(base.run.num_threads)
    data = load_interactions(base.data)
    jobs = [(enc, tok) for enc in args.encoders.split(",") for tok in args.tokenizers.split(",")]
    if (Path(args.data) / LETTER).is_file() and not args.skip_letter:
        jobs.append(("-", "import"))
    for encoder, tokenizer in jobs:
        cfg = base.with_overrides([f"embed.encoder={encoder if encoder != '-' else 'tfidf'}", f"tokenizer.name={tokenizer}",
                                   f"tokenizer.import_path={Path(args.data) / LETTER}"])
        emb_info, emb = {}, None
        if tokenizer != "import":
            result = compute_item_embeddings(cfg, data)
            emb, emb_info = result.vectors, result.info
        wall, cpu = time.perf_counter(), time.process_time()
        table = sid_table(cfg, data, emb)
        row = {"encoder": encoder, "tokenizer": tokenizer + (f" ({args.label})" if args.label else ""),
               "overrides": args.overrides, "wall_seconds": time.perf_counter() - wall,
               "cpu_seconds": time.process_time() - cpu, "embedding_dim": None if emb is None else int(emb.shape[1]),
               "encode_seconds": emb_info.get("encode_seconds"), "git": git_sha(), "stats": table.stats(),
               "meta": {k: v for k, v in table.meta.items() if k in ("residual_mse_per_level", "reseeded_per_level",
                                                                     "final_usage_per_level")},
               "recon_loss_first_last": [table.meta["recon_loss"][0], table.meta["recon_loss"][-1]]
               if "recon_loss" in table.meta else None}
        results["rows"].append(row)
        atomic_write_json(out, results)
        print(render_row(row), flush=True)


def render_row(r: dict) -> str:
    s, before = r["stats"], r["stats"].get("before_policy", {})
    levels = s["levels"][:-1] if s.get("collision_policy") == "extra_level" else s["levels"]
    usage = " / ".join(f"{lv['used_codes']}" for lv in levels)
    entropy = " / ".join(f"{lv['normalized_entropy']:.3f}" for lv in levels)
    return (f"| {r['encoder']} | {r['tokenizer']} | {r['wall_seconds']:.0f} | {r['cpu_seconds']:.0f} | "
            f"{before.get('collision_rate', s['collision_rate']):.4f} | {before.get('distinct_sids', s['distinct_sids']):,} | "
            f"{before.get('max_collision_group', s['max_collision_group'])} | {usage} | {entropy} | "
            f"{s['codebook_sizes'][-1]} |")


def render(path: str) -> None:
    results = json.loads(Path(path).read_text())
    print(f"machine: {results['machine']}\n")
    print("| embedding | tokenizer | fit wall s | fit CPU s | collision rate | distinct SIDs | largest group | "
          "used codes per level | normalized entropy per level | extra-level size |")
    print("|---|---|---:|---:|---:|---:|---:|---|---|---:|")
    for r in results["rows"]:
        print(render_row(r))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/amazon2014/beauty")
    p.add_argument("--out", default="benchmarks/tuning/sids_beauty.json")
    p.add_argument("--encoders", default="tfidf,sentence-transformers")
    p.add_argument("--tokenizers", default="rqkmeans,rqkmeans_balanced,rqvae")
    p.add_argument("--skip-letter", action="store_true")
    p.add_argument("--label", default="", help="shown beside the tokenizer name (e.g. the overrides used)")
    p.add_argument("--render", metavar="JSON", help="print the Markdown table of a results file and exit")
    p.add_argument("overrides", nargs="*", help="extra section.key=value config overrides")
    args = p.parse_args()
    render(args.render) if args.render else measure(args)


if __name__ == "__main__":
    main()
