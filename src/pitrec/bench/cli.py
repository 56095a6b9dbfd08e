"""``pitrec bench CONFIG [--key=value ...]`` and ``pitrec bench report``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from pitrec.bench.spec import BenchError

console = Console(soft_wrap=True)  # paths and messages stay on one line, greppable
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


class _RunByDefault(TyperGroup):
    """``pitrec bench CONFIG`` is short for ``pitrec bench run CONFIG``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


bench_app = typer.Typer(cls=_RunByDefault, no_args_is_help=True,
                        help="Benchmarks: methods x datasets x seeds -> benchmarks/results/<dataset>.{json,md,png}. "
                             "`pitrec bench CONFIG` runs a bench config; `pitrec bench report` redraws the reports.")


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def command_line(ctx: typer.Context | None = None) -> str:
    """The command as the user typed it; when called in-process (tests, notebooks) sys.argv is
    the host's, so the equivalent ``pitrec bench run ...`` line is rebuilt from the parsed call."""
    if Path(sys.argv[0]).name == "pitrec" or ctx is None:
        return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    args = [f"--{k.replace('_', '-')}={v}" for k, v in ctx.params.items()
            if k != "config" and v not in (None, False, [], ())]
    return shlex.join(["pitrec", "bench", "run", str(ctx.params["config"]), *args, *ctx.args])


@bench_app.command("run", context_settings=EXTRA)
def run(ctx: typer.Context,
        config: Path = typer.Argument(..., help="bench config YAML (benchmarks/*.yaml)"),
        method: Optional[list[str]] = typer.Option(None, help="only this method or method/variant (repeatable)"),
        dataset: Optional[list[str]] = typer.Option(None, help="only this dataset (repeatable)"),
        dry_run: bool = typer.Option(False, help="show what would run, skip or resume, and stop")) -> None:
    """Run (or resume) a benchmark. Extra --key=value options override the bench config,
    e.g. --seeds=[0] --overrides.train.max_minutes=5."""
    from pitrec.bench.plan import plan_runs, run_state
    from pitrec.bench.report import write_report
    from pitrec.bench.results import results_path
    from pitrec.bench.runner import execute
    from pitrec.bench.spec import load_bench

    try:
        bench = load_bench(config, ctx.args)
        runs, notes = plan_runs(bench, method, dataset)
    except BenchError as exc:
        _fail(str(exc))
    for note in notes:
        console.print(f"[yellow]warning:[/] {note}", highlight=False)
    if not runs:
        _fail("nothing to run: no method of the selection is registered")
    if dry_run:
        for spec in runs:
            state = run_state(spec)
            console.print(f"{spec.name}: {state.kind} {state.detail}  ({spec.run_dir})", highlight=False)
        return
    try:
        outcomes = execute(runs, bench.results_dir, command_line(ctx), progress=bench.progress, say=_say(bench.progress))
    except BenchError as exc:
        _fail(str(exc))
    for ds in dict.fromkeys(spec.dataset for spec in runs):
        path = results_path(bench.results_dir, ds)
        if path.is_file():
            md, plots = write_report(path)
            console.print(f"wrote {path} and {md}", highlight=False)
            for plot in plots:
                console.print(f"  plot {plot.path if plot.path else '(skipped)'}: {plot.note}", highlight=False)
    counts = {a: sum(o.action == a for o in outcomes)
              for a in ("ran", "resumed", "rerun", "redecoded", "skipped", "failed")}
    console.print("runs: " + ", ".join(f"{n} {a}" for a, n in counts.items() if n), highlight=False)
    failed = [o for o in outcomes if o.action == "failed"]
    if failed:
        for o in failed:
            console.print(f"[bold red]failed:[/] {o.spec.name}: {o.message}", highlight=False)
        raise typer.Exit(1)


def _say(progress: bool):
    from tqdm.auto import tqdm

    return tqdm.write if progress else (lambda line: console.print(line, highlight=False))


@bench_app.command("report")
def report(results_dir: Path = typer.Option(Path("benchmarks/results"), help="folder of <dataset>.json files"),
           dataset: Optional[list[str]] = typer.Option(None, help="only this dataset (repeatable)"),
           plots: bool = typer.Option(True, help="redraw the PNG plots"),
           update_readme: bool = typer.Option(False, help="replace the results block of --readme"),
           readme: Path = typer.Option(Path("README.md"), help="README holding the results markers")) -> None:
    """Regenerate <dataset>.md and plots from the results JSON; optionally the README tables."""
    from pitrec.bench.report import update_readme as replace_block
    from pitrec.bench.report import write_report
    from pitrec.bench.results import is_bench_results, load_results, results_path

    if dataset:
        paths = [results_path(results_dir, d) for d in dataset]
    else:
        # The folder also holds other benchmarks' JSON (serve_load, decode_speed, cold_start):
        # only per-dataset bench results are reported; the others are named, not silently ignored.
        paths = []
        for path in sorted(results_dir.glob("*.json")):
            if is_bench_results(path):
                paths.append(path)
            else:
                console.print(f"skipped {path}: not a `pitrec bench run` results file", highlight=False)
    if not paths:
        _fail(f"no results files (*.json) in {results_dir}")
    try:
        docs = []
        for path in paths:
            md, drawn = write_report(path, plots=plots)
            console.print(f"wrote {md}", highlight=False)
            for plot in drawn:
                console.print(f"  plot {plot.path if plot.path else '(skipped)'}: {plot.note}", highlight=False)
            docs.append(load_results(path))
        if update_readme:
            replace_block(readme, docs, str(results_dir))
            console.print(f"updated the results block of {readme}", highlight=False)
    except BenchError as exc:
        _fail(str(exc))


@bench_app.command("compare")
def compare(results: Path = typer.Argument(..., help="a results file, benchmarks/results/<dataset>.json"),
            reference: str = typer.Option(..., help="the label to beat, e.g. tiger/cf-stride"),
            candidate: Optional[list[str]] = typer.Option(None, help="a label to compare (repeatable; default: every other)"),
            metric: Optional[list[str]] = typer.Option(None, help="e.g. ndcg@10 (repeatable; default: Recall/NDCG at every cut-off)"),
            machine: Optional[str] = typer.Option(None, help="only runs whose machine contains this text, e.g. 'AMD EPYC'"),
            threshold: float = typer.Option(2.0, help="standard deviations of the seeds a difference must exceed"),
            out: Optional[Path] = typer.Option(None, help="also write the table to this Markdown file")) -> None:
    """Is a method ahead of a reference beyond the seeds' spread? Per metric: the difference of
    the seed means, in pooled standard deviations of the seeds."""
    from pitrec.bench.compare import compare as compare_labels
    from pitrec.bench.compare import comparison_markdown
    from pitrec.bench.results import load_results
    from pitrec.utils.io import atomic_write_text

    try:
        doc = load_results(results)
        table = comparison_markdown(doc, compare_labels(doc, reference, candidate, metric, machine, threshold),
                                    machine, threshold)
    except BenchError as exc:
        _fail(str(exc))
    console.print(table, highlight=False, markup=False)
    if out is not None:
        atomic_write_text(out, table)
        console.print(f"wrote {out}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
