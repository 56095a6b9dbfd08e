"""Human-readable views of a results file: ``<dataset>.md`` beside it and the summary block of
README.md. Both are regenerated from the JSON alone, so they can never disagree with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pitrec.bench.plots import Plot, make_plots
from pitrec.bench.results import REQUIRED_METRICS, load_results
from pitrec.bench.spec import BenchError
from pitrec.utils.io import atomic_write_text

README_BEGIN = "<!-- results:begin -->"
README_END = "<!-- results:end -->"
_COST_COLUMNS = (("train_seconds", "train s", 1), ("train_cpu_seconds", "train CPU s", 1),
                 ("wall_seconds", "wall s", 1), ("train_samples_per_s", "train samples/s", 0),
                 ("eval_users_per_s", "eval users/s", 0), ("peak_rss_mb", "peak RSS MB", 0))


def _pm(stat: dict[str, float] | None, digits: int = 4) -> str:
    if stat is None:
        return "-"
    if stat.get("n", 2) < 2:  # one seed has no spread to report; "± 0" would claim one
        return f"{stat['mean']:.{digits}f} (1 seed)"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _metric_names(doc: dict[str, Any]) -> list[str]:
    ks = doc["protocol"]["ks"]
    names = [f"{m}@{k}" for m in ("recall", "ndcg") for k in ks]
    return names + [m for m in REQUIRED_METRICS if m not in names]


def _short(metric: str) -> str:
    name, k = metric.split("@")
    return f"{'R' if name == 'recall' else 'N'}@{k}"


def accuracy_table(doc: dict[str, Any]) -> str:
    names = _metric_names(doc)
    lines = ["| method | seeds | " + " | ".join(_short(n) for n in names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for label, stats in doc["summary"].items():
        n = stats[names[0]]["n"] if names[0] in stats else 0
        lines.append(f"| {label} | {n} | " + " | ".join(_pm(stats.get(m)) for m in names) + " |")
    return "\n".join(lines)


def cost_table(doc: dict[str, Any]) -> str:
    lines = ["| method | " + " | ".join(title for _, title, _ in _COST_COLUMNS) + " |",
             "|---|" + "---:|" * len(_COST_COLUMNS)]
    for label, stats in doc["summary"].items():
        cells = [_pm(stats.get(key), digits) for key, _, digits in _COST_COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def runs_table(doc: dict[str, Any]) -> str:
    names = _metric_names(doc)
    head = ["method", "variant", "seed", *(_short(n) for n in names), "epochs", "best epoch", "train s",
            "wall s", "peak MB", "git", "run dir"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---:|" + "---:|" * (len(names) + 5) + "---|---|"]
    for r in doc["runs"]:
        cells = [r["method"], r["variant"], str(r["seed"]), *(f"{r['metrics'][n]:.4f}" for n in names),
                 _opt(r.get("epochs")), _opt(r.get("best_epoch")), f"{r['train_seconds']:.1f}",
                 _opt(r.get("wall_seconds"), 1), f"{r['peak_rss_mb']:.0f}", f"`{str(r.get('git_sha', '-'))[:12]}`",
                 f"`{r.get('run_dir', '-')}`"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def time_to_accuracy_table(doc: dict[str, Any]) -> str | None:
    """Runs made to measure time to accuracy (``eval.accuracy_target``), or None when there are none."""
    probed = [r for r in doc["runs"] if r.get("accuracy_target")]
    if not probed:
        return None
    lines = ["| method | variant | seed | target | time to accuracy s | best probed test (epoch, s) | pipeline s "
             "| epochs | test at the best validation |",
             "|---|---|---:|---|---:|---|---:|---:|---:|"]
    for r in probed:
        metric = r["accuracy_metric"]
        reached = _opt(r.get("time_to_accuracy_s"), 1) if r.get("time_to_accuracy_s") is not None else "not reached"
        best = (f"{r['probe_best']:.4f} ({r.get('probe_best_epoch')}, {_opt(r.get('probe_best_seconds'), 1)})"
                if r.get("probe_best") is not None else "-")
        lines.append(f"| {r['method']} | {r['variant']} | {r['seed']} | {metric} >= {r['accuracy_target']:.4f} | "
                     f"{reached} | {best} | {_opt(r.get('pipeline_seconds'), 1)} | {_opt(r.get('epochs'))} | "
                     f"{r['metrics'].get(metric, float('nan')):.4f} |")
    return "\n".join(lines)


def _opt(value: Any, digits: int | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if digits is not None else str(value)


def markdown(doc: dict[str, Any], plots: list[Plot]) -> str:
    p = doc["protocol"]
    masking = "history items masked" if p.get("mask_history") else "history items not masked"
    parts = [
        f"# Benchmark results: {doc['dataset']}",
        "",
        f"Test split, {p['split']}, {p['ranking']} ranking over all items, hits on item ids, histories of at "
        f"most {p['max_history']} items, {masking}. Mean ± sample standard deviation (n-1) over seeds. "
        f"Generated from `{doc['dataset']}.json` by `pitrec bench report`; do not edit by hand.",
        "",
        f"- command: `{doc['command']}`",
        f"- git: `{doc['git_sha']}`",
        f"- machine: {doc['machine']}",
        f"- written: {doc['created']}",
        "",
        "## Accuracy",
        "",
        accuracy_table(doc),
        "",
        "## Cost",
        "",
        "Train s: training loop only (wall clock; CPU seconds beside it where the trainer logs them); wall s: "
        "the whole run process (data loading, stages, training, test). Timings are on a shared machine and noisy.",
        "",
        cost_table(doc),
        "",
        "## Runs",
        "",
        runs_table(doc),
        "",
    ]
    timed = time_to_accuracy_table(doc)
    if timed is not None:
        parts += ["## Time to accuracy", "",
                  "Seconds from the run's start (before its data files are read; embeddings and SIDs built "
                  "unless cached) to the end of the first epoch whose model reaches the target on the test "
                  "split, probed after every validation, the probes' own time excluded. These runs measure "
                  "speed only: the probes select nothing, and the test row above is the best-validation "
                  "checkpoint's. Pipeline s: the clock when training ended.", "", timed, ""]
    drawn = [pl for pl in plots if pl.path is not None]
    if plots:
        parts += ["## Plots", ""]
        parts += [f"![{pl.name}]({pl.path.name})" for pl in drawn]
        parts += [f"- {pl.note}" for pl in plots if pl.path is None]
        parts.append("")
    return "\n".join(parts)


def write_report(results_json: str | Path, plots: bool = True) -> tuple[Path, list[Plot]]:
    """Regenerate ``<dataset>.md`` (and the PNGs) beside ``results_json``."""
    results_json = Path(results_json)
    doc = load_results(results_json)
    drawn = make_plots(doc, results_json.parent) if plots else []
    md_path = results_json.with_suffix(".md")
    atomic_write_text(md_path, markdown(doc, drawn))
    return md_path, drawn


def readme_block(docs: list[dict[str, Any]], results_dir: str) -> str:
    parts = [README_BEGIN, ""]
    for doc in docs:
        parts += [f"**{doc['dataset']}** (test, mean ± std over seeds; git `{doc['git_sha'][:12]}`, "
                  f"{doc['created'][:10]}; details in `{results_dir}/{doc['dataset']}.md`)", "",
                  accuracy_table(doc), ""]
    parts.append(README_END)
    return "\n".join(parts)


def update_readme(readme: str | Path, docs: list[dict[str, Any]], results_dir: str) -> Path:
    """Replace the block between the results markers; the rest of README.md is left as it is."""
    readme = Path(readme)
    if not readme.is_file():
        raise BenchError(f"{readme} does not exist")
    text = readme.read_text(encoding="utf-8")
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < 0 or end < begin:
        raise BenchError(f"{readme} has no `{README_BEGIN}` ... `{README_END}` block; add the two markers "
                         "where the results tables belong")
    new = text[:begin] + readme_block(docs, results_dir) + text[end + len(README_END):]
    atomic_write_text(readme, new)
    return readme
