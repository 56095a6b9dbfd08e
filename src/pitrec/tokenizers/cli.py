"""``pitrec embed`` and ``pitrec sids ...``: run the embedding or SID stage on its own, with the
same config layers and caches as training, so one stage can be rebuilt or inspected alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}
sids_app = typer.Typer(help="Build, import and inspect semantic-ID tables.", no_args_is_help=True)


def _config(data: Optional[str], config: Optional[list[Path]], overrides: list[str], **direct):
    from pitrec.cli import resolve
    from pitrec.utils.runtime import configure_process

    cfg = resolve(None, config, overrides, **{"data.path": data, **direct})
    configure_process(cfg.run)  # as training does: oversubscribed threads cost 3-5x on 2 cores
    return cfg


def _check_out(out: Path) -> None:
    from pitrec.cli import fail

    if out.suffix not in (".json", ".parquet"):
        fail(f"--out {out}: a SID table file must end in .json or .parquet")


def _load_data(cfg):
    from pitrec.cli import fail
    from pitrec.data.errors import DataError
    from pitrec.data.readers import load_interactions

    try:
        return load_interactions(cfg.data)
    except DataError as exc:
        fail(str(exc))


def embed(ctx: typer.Context,
          data: Optional[str] = typer.Option(None, help="dataset path (default: the embedded synthetic data)"),
          encoder: Optional[str] = typer.Option(None, help="sentence-transformers | tfidf | npy"),
          out: Optional[Path] = typer.Option(None, help="also write the vectors to this .npy file"),
          config: Optional[list[Path]] = typer.Option(None, help="YAML config layer(s)")) -> None:
    """Item content embeddings (cached); extra ``--embed.key=value`` options override the config."""
    from pitrec.cli import console, fail
    from pitrec.data.errors import DataError
    from pitrec.embed.encoders import EncoderUnavailable
    from pitrec.embed.stage import compute_item_embeddings
    from pitrec.utils.io import atomic_save_npy

    cfg = _config(data, config, ctx.args, **{"embed.encoder": encoder})
    items = _load_data(cfg)
    try:
        result = compute_item_embeddings(cfg, items)
    except (DataError, EncoderUnavailable, KeyError, ValueError) as exc:
        fail(str(exc))
    info = result.info
    how = "loaded from cache" if info.get("cache_hit") else f"encoded in {info.get('encode_seconds', 0):.1f} s"
    console.print(f"{items.n_items:,} items -> {result.vectors.shape[1]}-d vectors ({info.get('encoder')}, {how})")
    if info.get("cache_path"):
        console.print(f"cache: {info['cache_path']}")
    if out is not None:
        atomic_save_npy(out, result.vectors)
        console.print(f"wrote {out}")


@sids_app.command("build", context_settings=EXTRA)
def sids_build(ctx: typer.Context,
               data: Optional[str] = typer.Option(None, help="dataset path (default: the embedded synthetic data)"),
               tokenizer: Optional[str] = typer.Option(None, help="rqkmeans | rqkmeans_balanced | rqvae | import"),
               out: Path = typer.Option(..., help="SID table to write (.json or .parquet)"),
               embeddings: Optional[Path] = typer.Option(None, help="precomputed .npy (else the embed stage)"),
               seed: Optional[int] = typer.Option(None, help="tokenizer seed (default run.seed)"),
               config: Optional[list[Path]] = typer.Option(None, help="YAML config layer(s)")) -> None:
    """Fit a tokenizer on item embeddings and write the SID table; prints its statistics."""
    from pitrec.cli import fail
    from pitrec.data.errors import DataError
    from pitrec.embed.stage import item_embeddings
    from pitrec.tokenizers.stage import sid_table

    _check_out(out)
    direct = {"tokenizer.name": tokenizer, "tokenizer.seed": seed}
    if embeddings is not None:
        direct.update({"embed.encoder": "npy", "embed.npy_path": str(embeddings)})
    cfg = _config(data, config, ctx.args, **direct)
    items = _load_data(cfg)
    try:
        from pitrec.registry import TOKENIZERS

        needs = TOKENIZERS.get(cfg.tokenizer.name).needs_embeddings
        embeddings = item_embeddings(cfg, items) if needs else None
        if needs and cfg.tokenizer.collaborative_dim:  # the training part of the split, as in `pitrec train`
            from pitrec.tokenizers.collaborative import tokenizer_input
            from pitrec.train.api import split_of

            embeddings = tokenizer_input(cfg, embeddings, split_of(cfg, items))
        table = sid_table(cfg, items, embeddings)
    except (DataError, KeyError, ValueError) as exc:
        fail(str(exc))
    table.save(out)
    _print_stats(table.stats(), str(out))


@sids_app.command("import", context_settings=EXTRA)
def sids_import(ctx: typer.Context,
                file: Path = typer.Argument(..., help="external table: {key: [codes]} JSON[.gz] or a pitrec table"),
                data: Optional[str] = typer.Option(None, help="dataset path whose catalogue the keys refer to"),
                out: Path = typer.Option(..., help="SID table to write (.json or .parquet)"),
                collision: Optional[str] = typer.Option(None, help="extra_level (default) | keep | error"),
                key_offset: Optional[int] = typer.Option(None, help="raw item id = key + offset (default 1, LETTER)"),
                config: Optional[list[Path]] = typer.Option(None, help="YAML config layer(s)")) -> None:
    """Map an external SID table onto the catalogue, apply the collision policy, and write it."""
    from pitrec.cli import fail
    from pitrec.data.errors import DataError
    from pitrec.tokenizers.stage import sid_table

    _check_out(out)
    cfg = _config(data, config, ctx.args, **{"tokenizer.name": "import", "tokenizer.import_path": str(file),
                                             "tokenizer.collision": collision, "tokenizer.import_key_offset": key_offset})
    items = _load_data(cfg)
    try:
        table = sid_table(cfg, items, None)
    except (DataError, ValueError) as exc:
        fail(str(exc))
    table.save(out)
    _print_stats(table.stats(), str(out))


@sids_app.command("stats")
def sids_stats(file: Path = typer.Argument(..., help="a pitrec SID table (.json or .parquet)"),
               as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Distinct SIDs, collisions (before and after the policy), per-level usage and entropy."""
    from pitrec.cli import fail
    from pitrec.data.errors import DataError
    from pitrec.tokenizers.sid_table import SidTable

    try:
        stats = SidTable.load(file).stats()
    except DataError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(stats, indent=1))
    else:
        _print_stats(stats, str(file))


def _print_stats(s: dict, where: str) -> None:
    from rich.table import Table

    from pitrec.cli import console

    console.print(f"[bold]{where}[/]: {s['n_items']:,} items, {s['n_levels']} levels {s['codebook_sizes']} "
                  f"({s.get('tokenizer', '?')}, collision policy {s.get('collision_policy', '?')})")
    before = s.get("before_policy")
    if before:
        console.print(f"before the policy: {before['distinct_sids']:,} distinct SIDs, collision rate "
                      f"{before['collision_rate']:.4f}, {before['items_in_collisions']:,} items in collisions, "
                      f"largest group {before['max_collision_group']}")
    console.print(f"now: {s['distinct_sids']:,} distinct SIDs, collision rate {s['collision_rate']:.4f}")
    table = Table()
    for col in ("level", "codebook", "used", "usage", "entropy bits", "norm. entropy", "max items/code"):
        table.add_column(col, justify="right")
    for lv in s["levels"]:
        table.add_row(str(lv["level"]), str(lv["codebook_size"]), str(lv["used_codes"]), f"{lv['usage']:.3f}",
                      f"{lv['entropy_bits']:.3f}", f"{lv['normalized_entropy']:.3f}", str(lv["max_code_count"]))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("embed", context_settings=EXTRA)(embed)
    app.add_typer(sids_app, name="sids")
