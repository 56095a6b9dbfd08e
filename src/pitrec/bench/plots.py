"""Figures beside a results file, drawn from the runs' own logs (``metrics.jsonl``,
``sid_stats.json``), averaged over seeds per method/variant. Where a run directory is gone, the
compact curves its results record keeps (``curves``, written by the harness) stand in.

The logs are optional evidence: a method without epochs (popularity), a run directory that was
moved, or a recipe that does not log SID statistics yet each make a plot skip with a note saying
why, never fail the report.

Read from each run directory:
- ``metrics.jsonl``: ``epoch``, ``valid[<valid metric>]`` (training curves); ``sid_churn`` (a
  float per epoch); ``codebook_entropy`` (a list, one float per level) as a fallback for
- ``sid_stats.json``: per-level entropy as ``{"entropy": [...]}``, ``{"levels": [{"entropy": ..}]}``
  or ``{"per_level": [{"entropy": ..}]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pitrec.bench.results import summary_label
from pitrec.utils.io import atomic_path, read_jsonl

CURVE_METRIC = "ndcg@10"


@dataclass
class Plot:
    name: str
    path: Path | None  # None when skipped
    note: str


def make_plots(doc: dict[str, Any], out_dir: str | Path) -> list[Plot]:
    out_dir = Path(out_dir)
    dataset = doc["dataset"]
    logs = {label: [_run_logs(r) for r in runs] for label, runs in _by_label(doc["runs"]).items()}
    return [
        _curves(logs, lambda rec: (rec.get("valid") or {}).get(CURVE_METRIC), f"validation {CURVE_METRIC}",
                "training curves", out_dir / f"{dataset}_curves.png",
                f"{dataset}: validation {CURVE_METRIC} per epoch (mean over seeds, band = ±1 std)"),
        _curves(logs, lambda rec: rec.get("sid_churn"), "SID churn (share of items whose SID changed)",
                "SID churn", out_dir / f"{dataset}_churn.png", f"{dataset}: SID churn over training (mean over seeds)"),
        _entropy(logs, out_dir / f"{dataset}_entropy.png", dataset),
    ]


def _by_label(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(summary_label(run["method"], run["variant"]), []).append(run)
    return groups


def run_curves(run_dir: str | Path) -> dict[str, Any] | None:
    """What the plots read from a run directory, small enough to keep in the results file: per
    epoch the validation ``CURVE_METRIC`` and SID churn, and the final per-level entropy. A results
    file then still draws its plots where the run directories are gone (a fresh clone)."""
    logs = _logs_in(Path(run_dir))
    if not logs["epochs"] and logs["sid_stats"] is None:
        return None
    epochs = [rec for rec in logs["epochs"] if "epoch" in rec]
    entropy = level_entropy(logs["sid_stats"])
    if entropy is None:
        logged = [rec["codebook_entropy"] for rec in epochs if isinstance(rec.get("codebook_entropy"), list)]
        entropy = [float(v) for v in logged[-1]] if logged else None
    return {"epoch": [int(rec["epoch"]) for rec in epochs],
            CURVE_METRIC: [(rec.get("valid") or {}).get(CURVE_METRIC) for rec in epochs],
            "sid_churn": [rec.get("sid_churn") for rec in epochs], "entropy": entropy}


def _run_logs(run: dict[str, Any]) -> dict[str, Any]:
    """The epoch log and SID statistics of one run: from its directory, else from the curves its
    results record keeps (``run_curves``); empty where neither is there."""
    logs = _logs_in(Path(run.get("run_dir") or "")) if run.get("run_dir") else {"epochs": [], "sid_stats": None}
    curves = run.get("curves")
    if logs["epochs"] or logs["sid_stats"] is not None or not isinstance(curves, dict):
        return logs
    epochs = [{"epoch": e, "valid": {CURVE_METRIC: v}, "sid_churn": c}
              for e, v, c in zip(curves.get("epoch", []), curves.get(CURVE_METRIC, []), curves.get("sid_churn", []))]
    entropy = curves.get("entropy")
    return {"epochs": epochs, "sid_stats": {"entropy": entropy} if isinstance(entropy, list) else None}


def _logs_in(run_dir: Path) -> dict[str, Any]:
    """The epoch log and SID statistics in a run directory; empty where absent or damaged."""
    out: dict[str, Any] = {"epochs": [], "sid_stats": None}
    if not run_dir.is_dir():
        return out
    try:
        out["epochs"] = read_jsonl(run_dir / "metrics.jsonl")
    except ValueError:
        pass
    stats_path = run_dir / "sid_stats.json"
    if stats_path.is_file():
        try:
            out["sid_stats"] = json.loads(stats_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            pass
    return out


def _curves(logs: dict[str, list[dict]], value_of, ylabel: str, what: str, path: Path, title: str) -> Plot:
    series = {}
    for label, runs in logs.items():
        per_epoch: dict[int, list[float]] = {}
        for run in runs:
            for rec in run["epochs"]:
                value = value_of(rec)
                if isinstance(value, (int, float)) and "epoch" in rec:
                    per_epoch.setdefault(int(rec["epoch"]), []).append(float(value))
        if per_epoch:
            epochs = sorted(per_epoch)
            series[label] = (np.array(epochs), np.array([np.mean(per_epoch[e]) for e in epochs]),
                             np.array([_std(per_epoch[e]) for e in epochs]))
    if not series:
        return Plot(what, None, f"{what}: skipped, no run logged it in metrics.jsonl")
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax = fig.subplots()
    colors = _colors(len(series))
    for (label, (x, mean, std)), color in zip(series.items(), colors):
        ax.plot(x, mean, marker="o" if len(x) < 30 else None, markersize=3, label=label, color=color,
                linestyle="--" if label.startswith("pit") else "-")
        ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=color)
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    _legend(ax)
    _save(fig, path)
    return Plot(what, path, f"{what}: {', '.join(series)}")


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def level_entropy(stats: Any) -> list[float] | None:
    """Per-level codebook entropy from a ``sid_stats.json`` document (see the module docstring)."""
    if isinstance(stats, dict):
        if isinstance(stats.get("entropy"), list):
            return [float(v) for v in stats["entropy"]]
        for key in ("levels", "per_level"):
            if isinstance(stats.get(key), list):
                return level_entropy(stats[key])
    for key in ("entropy", "entropy_bits"):  # SidTable.stats() writes entropy_bits
        if isinstance(stats, list) and stats and all(isinstance(s, dict) and key in s for s in stats):
            return [float(s[key]) for s in stats]
    return None


def _entropy(logs: dict[str, list[dict]], path: Path, dataset: str) -> Plot:
    bars: dict[str, np.ndarray] = {}
    ragged = []
    for label, runs in logs.items():
        per_run = []
        for run in runs:
            levels = level_entropy(run["sid_stats"])
            if levels is None:
                logged = [rec["codebook_entropy"] for rec in run["epochs"]
                          if isinstance(rec.get("codebook_entropy"), list)]
                levels = [float(v) for v in logged[-1]] if logged else None
            if levels:
                per_run.append(levels)
        n_levels = {len(levels) for levels in per_run}
        if len(n_levels) == 1:
            bars[label] = np.mean(np.array(per_run), axis=0)
        elif len(n_levels) > 1:
            ragged.append(label)
    ragged_note = f"; left out {', '.join(ragged)} (seeds disagree on the number of levels)" if ragged else ""
    if not bars:
        return Plot("codebook entropy", None, "codebook entropy: skipped, no run has sid_stats.json or "
                                              "codebook_entropy in metrics.jsonl" + ragged_note)
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(bars)
    for i, ((label, values), color) in enumerate(zip(bars.items(), _colors(len(bars)))):
        ax.bar(np.arange(len(values)) + i * width, values, width, label=label, color=color,
               hatch="//" if label.startswith("pit") else None)
    most = max(len(v) for v in bars.values())
    ax.set_xticks(np.arange(most) + 0.4 - width / 2, [f"level {lvl + 1}" for lvl in range(most)])
    ax.set(ylabel="codebook entropy (final SIDs)", title=f"{dataset}: per-level codebook entropy (mean over seeds)")
    ax.grid(axis="y", alpha=0.3)
    _legend(ax)
    _save(fig, path)
    return Plot("codebook entropy", path, f"codebook entropy: {', '.join(bars)}{ragged_note}")


def _colors(n: int) -> list:
    """One colour per method: matplotlib's ten-colour cycle repeats after ten, and a bench file
    holds more methods than that (PIT's are also dashed or hatched)."""
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _legend(ax) -> None:
    """Beside the axes, not over the curves."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
