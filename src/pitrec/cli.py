"""The ``pitrec`` command line. Subcommands of other layers (serve, bench...) register
themselves through ``register(app)`` in their package's ``cli`` module."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from pitrec.config import ConfigError, load_config
from pitrec.data.errors import DataError

app = typer.Typer(help="pitrec: generative recommendation with a learned, personalized item tokenizer.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Inspect and generate datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def resolve(recipe: str | None, config: list[Path] | None, overrides: list[str], **direct) -> "Config":  # noqa: F821
    """Config layers plus the direct options (``--data``, ``--out``...) as the last overrides."""
    extra = {}
    for dotted, value in direct.items():
        if value is not None:
            section, key = dotted.split(".")
            extra.setdefault(section, {})[key] = value
    try:
        cfg = load_config(recipe, files=config or [], overrides=overrides)
        return cfg.with_overrides(extra) if extra else cfg
    except ConfigError as exc:
        fail(str(exc))


def metrics_table(rows: list[dict], ks=(5, 10, 20), title: str = "Test metrics (full ranking, leave-one-out)") -> Table:
    table = Table(title=title)
    table.add_column("method")
    for k in ks:
        table.add_column(f"R@{k}", justify="right")
        table.add_column(f"N@{k}", justify="right")
    table.add_column("train s", justify="right")
    for r in rows:
        t = r["test"]
        table.add_row(r.get("label", r["method"]), *[f"{t[f'{m}@{k}']:.4f}" for k in ks for m in ("recall", "ndcg")],
                      f"{r['train_seconds']:.0f}" if "train_seconds" in r else "-")
    return table


@data_app.command("stats", context_settings=EXTRA)
def data_stats(ctx: typer.Context,
               path: Path = typer.Argument(..., help="dataset folder or file"),
               format: str = typer.Option("auto", help="s3rec | recbole | csv | parquet | auto"),
               kcore_users: int = typer.Option(0, help="drop users with fewer interactions (reported)"),
               kcore_items: int = typer.Option(0, help="drop items with fewer interactions (reported)"),
               as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Users / items / interactions / average length of a dataset as loaded, with every drop
    counted; ``--data.user_col=...`` style options set the columns of CSV/Parquet tables."""
    from pitrec.data.readers import load_interactions

    cfg = resolve(None, None, ctx.args, **{"data.path": str(path), "data.format": format,
                                           "data.kcore_users": kcore_users, "data.kcore_items": kcore_items})
    try:
        stats = load_interactions(cfg.data).stats()
    except DataError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(stats, indent=1))
        return
    console.print(f"[bold]{stats['name']}[/]  ({path})")
    console.print(f"users         {stats['users']:,}")
    console.print(f"items         {stats['items']:,}")
    console.print(f"interactions  {stats['interactions']:,}")
    console.print(f"avg length    {stats['avg_length']:.2f}  (min {stats['min_length']}, max {stats['max_length']})")
    console.print(f"attributes    {stats['attributes']:,}   items with text {stats['items_with_text']:,}")
    for reason, n in stats["dropped"].items():
        console.print(f"[yellow]dropped[/] {reason}: {n:,}")


@data_app.command("synth")
def data_synth(out: Path = typer.Option(..., help="folder to write (S3-Rec layout)"),
               users: int = typer.Option(2000), items: int = typer.Option(600),
               clusters: int = typer.Option(12), seed: int = typer.Option(7)) -> None:
    """Write the embedded synthetic dataset in the S3-Rec layout."""
    from pitrec.data.synthetic import generate, write_s3rec

    data = generate(n_users=users, n_items=items, n_clusters=clusters, seed=seed)
    write_s3rec(data, out)
    s = data.stats()
    console.print(f"wrote {out}: {s['users']:,} users, {s['items']:,} items, {s['interactions']:,} interactions")


@app.command("train", context_settings=EXTRA)
def train(ctx: typer.Context,
          method: str = typer.Argument(..., help="popularity | content-knn | sasrec | tiger | pit"),
          data: Optional[str] = typer.Option(None, help="dataset path (default: the embedded synthetic data)"),
          out: Optional[str] = typer.Option(None, help="run directory"),
          config: Optional[list[Path]] = typer.Option(None, help="YAML config layer(s), in order"),
          seed: Optional[int] = typer.Option(None),
          device: Optional[str] = typer.Option(None, help="cpu | cuda | auto"),
          resume: bool = typer.Option(False, help="continue the run in --out from its last checkpoint")) -> None:
    """Train one method; extra ``--section.key=value`` options override the config."""
    from pitrec.train.api import train_run
    from pitrec.train.distributed import env_rank

    if resume and out is not None and (Path(out) / "config.yaml").is_file() and not config and not ctx.args:
        from pitrec.config import config_from_dict
        from pitrec.train.run_dir import RunDir

        cfg = config_from_dict(RunDir(out).read_config_dict(), source=f"{out}/config.yaml")
    else:
        cfg = resolve(method, config, ctx.args, **{"data.path": data, "run.out": out, "run.seed": seed,
                                                    "run.device": device})
    try:
        result = train_run(method, cfg, resume=resume)
    except (DataError, FileExistsError, ValueError) as exc:
        fail(str(exc))
    if env_rank() != 0:  # under torchrun every process returns the same result; one prints it
        return
    console.print(metrics_table([result], cfg.eval.ks))
    if cfg.run.out:
        console.print(f"run directory: {cfg.run.out}")


@app.command("eval", context_settings=EXTRA)
def evaluate(ctx: typer.Context,
             run_dir: Path = typer.Argument(..., help="a run directory written by `pitrec train --out`"),
             part: str = typer.Option("test", help="test | valid"),
             json_out: Optional[Path] = typer.Option(None, "--json", help="also write the record to this JSON file")) -> None:
    """Evaluate a trained run again, e.g. with ``--eval.mask_history=true`` or ``--pit.aggregation=max``;
    only evaluation, decoding, thread and data-path settings may be overridden. It reads the run's
    dataset (its ``data.path``, or ``--data.path`` if the data moved) to rebuild the split."""
    from pitrec.train.evaluate_run import evaluate_run
    from pitrec.utils.io import atomic_write_json

    try:
        record = evaluate_run(run_dir, part, ctx.args)
    except (DataError, ConfigError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    ks = sorted({int(k.split("@")[1]) for k in record["metrics"] if "@" in k})
    masked = "history masked" if record["mask_history"] else "history not masked"
    console.print(metrics_table([{"method": record["method"], "test": record["metrics"]}], ks,
                                title=f"{part} metrics of {run_dir} ({record['checkpoint']} checkpoint, {masked})"))
    if json_out is not None:
        atomic_write_json(json_out, record)
        console.print(f"wrote {json_out}")


@app.command("eval-paired", context_settings=EXTRA)
def evaluate_paired(ctx: typer.Context,
                    run_a: Path = typer.Argument(..., help="the reference run directory"),
                    run_b: Path = typer.Argument(..., help="the run compared with it (differences are b - a)"),
                    part: str = typer.Option("test", help="test | valid"),
                    confidence: float = typer.Option(0.95, help="of the bootstrap interval over users"),
                    resamples: int = typer.Option(2000, help="bootstrap resamples"),
                    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the record to this JSON file")) -> None:
    """Compare two trained runs user by user on the same split: each metric's difference with a
    bootstrap interval over users and a paired t-test. With one run per method this tells whether
    two models differ beyond the choice of users; the spread over training seeds it cannot give."""
    from pitrec.train.evaluate_run import paired_runs
    from pitrec.utils.io import atomic_write_json

    try:
        record = paired_runs(run_a, run_b, part, ctx.args, confidence, resamples)
    except (DataError, ConfigError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    table = Table(title=f"{part}, {record['users']} users: b = {run_b} ({record['methods'][1]}) against "
                        f"a = {run_a} ({record['methods'][0]}); {confidence:.0%} bootstrap interval of b - a over "
                        f"users, paired t-test p, users where b / a is higher")
    for col in ("metric", "a", "b", "b - a", "interval", "p", "b>a", "a>b"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for d in record["differences"]:
        table.add_row(d["metric"], f"{d['mean_a']:.4f}", f"{d['mean_b']:.4f}", f"{d['difference']:+.4f}",
                      f"[{d['low']:+.4f}, {d['high']:+.4f}]", f"{d['p_value']:.3g}", str(d["b_better_users"]),
                      str(d["a_better_users"]))
    console.print(table)
    if json_out is not None:
        import shlex

        from pitrec.bench.results import provenance

        # the command from the parsed call: sys.argv is the host's when called in-process
        command = shlex.join(["pitrec", "eval-paired", str(run_a), str(run_b), f"--part={part}",
                              f"--confidence={confidence}", f"--resamples={resamples}", f"--json={json_out}", *ctx.args])
        atomic_write_json(json_out, {**record, **provenance(), "command": command})
        console.print(f"wrote {json_out}")


DEMO_OVERLAY = Path(__file__).parent / "configs" / "demo_overlay.yaml"


@app.command("demo", context_settings=EXTRA)
def demo(ctx: typer.Context,
         methods: str = typer.Option("popularity,content-knn,sasrec,tiger,pit", help="comma-separated methods"),
         out: Path = typer.Option(Path("runs/demo"), help="folder for the runs")) -> None:
    """Train and compare the methods on the embedded synthetic dataset; print a results table."""
    from pitrec.registry import RECIPES
    from pitrec.train.api import prepare_data, train_run

    rows = []
    wanted = [m.strip() for m in methods.split(",") if m.strip()]
    available = [m for m in wanted if m in RECIPES]
    skipped = [m for m in wanted if m not in RECIPES]
    if skipped:
        console.print(f"[yellow]not available yet, skipped:[/] {', '.join(skipped)}")
    shared = None
    for m in available:
        cfg = resolve(m, [DEMO_OVERLAY], ["data.format=synthetic", *ctx.args, f"run.out={out / m}"])
        shared = shared or prepare_data(cfg)
        console.print(f"[bold]training {m}[/]")
        import shutil

        shutil.rmtree(out / m, ignore_errors=True)
        rows.append(train_run(m, cfg, data=shared))
    console.print(metrics_table(rows, cfg.eval.ks, title="pitrec demo: synthetic data, test metrics"))


for _mod in ("pitrec.tokenizers.cli", "pitrec.serve.cli", "pitrec.bench.cli"):
    try:
        importlib.import_module(_mod).register(app)
    except ModuleNotFoundError as _exc:
        if _exc.name not in (_mod, _mod.rsplit(".", 1)[0]):
            raise


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
