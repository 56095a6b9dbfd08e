"""Is one method ahead of another, beyond the spread of the seeds?

PIT's acceptance reads "beats our TIGER by more than 2 standard deviations of the seeds", and
every note comparing two rows of a results table asks the same question by hand. This answers it
from a results file, always the same way: per metric, the difference of the seed means in units
of the pooled sample standard deviation of the two groups' seeds. Statistics are recomputed from
the run records (not read from the summary), so the runs can be restricted to one machine: the
same CPU budget buys different numbers of epochs on different CPUs, and a comparison across them
measures the machines too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pitrec.bench.results import mean_std, summary_label
from pitrec.bench.spec import BenchError


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    reference: dict[str, float]  # mean, std, n over the reference's seeds
    candidate: dict[str, float]
    diff: float  # candidate mean - reference mean
    pooled_std: float | None  # None when a side has a single seed
    z: float | None  # diff / pooled_std; None without a spread to measure it in
    verdict: str


@dataclass(frozen=True)
class Comparison:
    reference: str
    candidate: str
    metrics: list[MetricComparison]


def pooled_std(a: dict[str, float], b: dict[str, float]) -> float | None:
    """Pooled sample standard deviation of two groups of seeds; None when either has one seed."""
    if a["n"] < 2 or b["n"] < 2:
        return None
    return math.sqrt(((a["n"] - 1) * a["std"] ** 2 + (b["n"] - 1) * b["std"] ** 2) / (a["n"] + b["n"] - 2))


def _verdict(diff: float, sigma: float | None, threshold: float) -> tuple[float | None, str]:
    if sigma is None:
        return None, "too few seeds (needs 2+ on each side)"
    if sigma == 0.0:
        # identical seeds on both sides (e.g. a deterministic method): no spread to scale by
        return None, "no spread: " + ("level" if diff == 0 else "ahead" if diff > 0 else "behind")
    z = diff / sigma
    if z > threshold:
        return z, f"ahead by more than {threshold:g} sd"
    if z < -threshold:
        return z, f"behind by more than {threshold:g} sd"
    return z, f"within {threshold:g} sd"


def _groups(doc: dict[str, Any], machine: str | None) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in doc["runs"]:
        if machine is not None and machine.lower() not in str(run.get("machine", "")).lower():
            continue
        groups.setdefault(summary_label(run["method"], run["variant"]), []).append(run)
    return groups


def compare(doc: dict[str, Any], reference: str, candidates: list[str] | None = None,
            metrics: list[str] | None = None, machine: str | None = None,
            threshold: float = 2.0) -> list[Comparison]:
    """Each candidate label (default: every other label) against ``reference`` on ``metrics``
    (default: the protocol's Recall/NDCG at every cut-off), over the runs whose machine contains
    ``machine`` (all runs when None)."""
    if threshold <= 0:
        raise BenchError(f"threshold must be > 0 standard deviations, got {threshold}")
    groups = _groups(doc, machine)
    where = f" on a machine matching {machine!r}" if machine is not None else ""
    labels = [reference, *(candidates or [])]
    missing = [label for label in labels if label not in groups]
    if missing:
        raise BenchError(f"{doc.get('dataset', 'results')}: no runs of {missing}{where}; "
                         f"labels with runs: {sorted(groups)}")
    if not candidates:
        candidates = [label for label in groups if label != reference]
    ks = doc["protocol"]["ks"]
    names = metrics or [f"{m}@{k}" for m in ("recall", "ndcg") for k in ks]
    out = []
    for label in candidates:
        rows = []
        for name in names:
            ref_values = [r["metrics"][name] for r in groups[reference] if name in r["metrics"]]
            cand_values = [r["metrics"][name] for r in groups[label] if name in r["metrics"]]
            if not ref_values or not cand_values:
                raise BenchError(f"metric {name!r} is missing from the runs of "
                                 f"{reference if not ref_values else label}; metrics: {sorted(groups[label][0]['metrics'])}")
            ref, cand = mean_std(ref_values), mean_std(cand_values)
            sigma = pooled_std(ref, cand)
            diff = cand["mean"] - ref["mean"]
            z, verdict = _verdict(diff, sigma, threshold)
            rows.append(MetricComparison(name, ref, cand, diff, sigma, z, verdict))
        out.append(Comparison(reference, label, rows))
    return out


def _stat(s: dict[str, float]) -> str:
    return f"{s['mean']:.4f} ± {s['std']:.4f} ({s['n']})" if s["n"] > 1 else f"{s['mean']:.4f} (1 seed)"


def comparison_markdown(doc: dict[str, Any], comparisons: list[Comparison], machine: str | None,
                        threshold: float) -> str:
    scope = f"runs on a machine matching `{machine}`" if machine is not None else "all runs"
    lines = [f"# {doc['dataset']}: against {comparisons[0].reference}" if comparisons else f"# {doc['dataset']}",
             "",
             f"Test metrics, {scope}. Difference of the seed means (candidate - reference) and that "
             f"difference in pooled sample standard deviations of the seeds (sd); a verdict needs "
             f"2 or more seeds on each side. Threshold: {threshold:g} sd.",
             "",
             "| candidate | metric | reference | candidate | difference | sd | verdict |",
             "|---|---|---:|---:|---:|---:|---|"]
    for comp in comparisons:
        for m in comp.metrics:
            z = "-" if m.z is None else f"{m.z:+.1f}"
            lines.append(f"| {comp.candidate} | {m.metric} | {_stat(m.reference)} | {_stat(m.candidate)} | "
                         f"{m.diff:+.4f} | {z} | {m.verdict} |")
    return "\n".join(lines) + "\n"
