"""From a bench config to the list of runs: one resolved training config per dataset x method x
seed, its run directory, and what to do with it (run, resume, skip, re-run).

All configs are resolved before anything trains, so a bad override or a protocol mismatch stops
the benchmark at once. Resume decisions compare a hash of the resolved config with the
``config.yaml`` already in the run directory: a finished run is only reused when it was trained
with exactly the config that would be used now.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pitrec.bench.spec import BenchConfig, BenchError, DatasetSpec, MethodSpec
from pitrec.config import Config, ConfigError, config_from_dict, deep_merge, load_config
from pitrec.decoding.settings import DECODING_KEYS
from pitrec.registry import RECIPES
from pitrec.train.run_dir import RunDir

# Settings that change how a run is shown or where it lives, not what it computes.
_NOT_HASHED = {"run": ("out", "progress", "retain_freed_memory")}  # where, how shown, how fast: never what
# A finished run whose config differs from the wanted one only in decoding settings
# (``pitrec.decoding.settings.DECODING_KEYS``) is measured again
# (``pitrec.train.evaluate_run.redecode_run``), not retrained.
# Validation during training decoded with the old settings, so the best epoch stays the one they
# chose; the run's test_metrics.json records the change and the metrics it replaced.


@dataclass
class RunSpec:
    dataset: str
    method: MethodSpec
    seed: int
    run_dir: Path
    cfg: Config
    config_hash: str

    @property
    def key(self) -> tuple[str, str, int]:
        return self.method.method, self.method.variant, self.seed

    @property
    def name(self) -> str:
        return f"{self.dataset} {self.method.label} seed{self.seed}"


@dataclass
class RunState:
    """What the run directory says: ``new`` | ``done`` (skip) | ``partial`` (resume) | ``changed``
    (re-run) | ``redecode`` (finished; only decoding settings changed: ``changes`` are the overrides
    that measure it under the wanted config)."""

    kind: str
    detail: str = ""
    changes: dict[str, dict[str, Any]] | None = None


def protocol_of(cfg: Config) -> dict[str, Any]:
    """The results-file ``protocol``: what must be equal for numbers to be comparable."""
    return {"split": "leave-one-out", "ranking": "full", "max_history": cfg.data.max_history,
            "ks": list(cfg.eval.ks), "mask_history": cfg.eval.mask_history}


def config_hash(config: dict[str, Any]) -> str:
    data = {section: dict(values) for section, values in config.items()}
    for section, keys in _NOT_HASHED.items():
        for key in keys:
            data.get(section, {}).pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def decoding_changes(stored: dict[str, Any], wanted: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The DECODING_KEYS overrides that turn config ``stored`` into ``wanted``, or None when they
    differ anywhere else (or nowhere that matters)."""
    changes: dict[str, dict[str, Any]] = {}
    rest = [{section: dict(values) for section, values in cfg.items()} for cfg in (stored, wanted)]
    for section, keys in DECODING_KEYS.items():
        for key in keys:
            old, new = (r.get(section, {}).pop(key, None) for r in rest)
            if old != new:
                changes.setdefault(section, {})[key] = new
    if not changes or config_hash(rest[0]) != config_hash(rest[1]):
        return None
    return changes


def resolve_config(bench: BenchConfig, dataset: DatasetSpec, method: MethodSpec, seed: int, run_dir: Path) -> Config:
    """Layers: defaults <- recipe YAML <- bench ``overrides`` <- method overrides <- dataset, protocol,
    seed and run directory (last, so nothing earlier can change them)."""
    fixed = {"data": {**dataset.data_section(), "max_history": bench.protocol.max_history},
             "eval": bench.protocol.eval,
             "run": {"seed": seed, "out": str(run_dir), "progress": False}}
    layers = deep_merge(deep_merge(bench.overrides, method.overrides), fixed)
    return load_config(method.method, overrides=layers)


def plan_runs(bench: BenchConfig, methods: list[str] | None = None,
              datasets: list[str] | None = None) -> tuple[list[RunSpec], list[str]]:
    """The runs to make, dataset by dataset, and a warning per method that is not registered.

    ``methods`` filters by method name (all its variants), ``method/variant`` label, or
    ``method/full`` (the main variant alone); ``datasets`` by name. A filter that matches nothing
    is an error (it is a typo, not an empty benchmark).
    """
    chosen_methods = _filter(bench.methods, methods, lambda m: {m.method, m.label, f"{m.method}/{m.variant}"}, "--method",
                             [m.label for m in bench.methods])
    chosen_datasets = _filter(list(bench.datasets), datasets, lambda d: {d}, "--dataset", list(bench.datasets))
    known = RECIPES.names()
    missing = [m for m in chosen_methods if m.method not in known]
    notes = [f"method {name!r} is not a registered recipe (known: {', '.join(known)}); skipping "
             + ", ".join(m.label for m in missing if m.method == name)
             for name in dict.fromkeys(m.method for m in missing)]
    runs: list[RunSpec] = []
    protocol: tuple[str, dict] | None = None
    for ds_name in chosen_datasets:
        dataset = bench.datasets[ds_name]
        for method in chosen_methods:
            if method in missing or not method.runs_on(ds_name):
                continue
            for seed in bench.seeds:
                run_dir = Path(bench.runs_dir) / ds_name / method.folder / f"seed{seed}"
                where = f"dataset {ds_name}, method {method.label}, seed {seed}"
                try:
                    cfg = resolve_config(bench, dataset, method, seed, run_dir)
                except ConfigError as exc:
                    raise BenchError(f"{where}: {exc}") from None
                this = protocol_of(cfg)
                if protocol is None:
                    protocol = (where, this)
                elif this != protocol[1]:
                    raise BenchError(f"{where}: evaluation protocol {this} differs from {protocol[1]} "
                                     f"({protocol[0]}); a recipe config must not change eval ks/mask_history")
                runs.append(RunSpec(ds_name, method, seed, run_dir, cfg, config_hash(cfg.to_dict())))
    return runs, notes


def _filter(items: list, wanted: list[str] | None, names, option: str, available: list[str]) -> list:
    if not wanted:
        return list(items)
    unmatched = [w for w in wanted if not any(w in names(i) for i in items)]
    if unmatched:
        raise BenchError(f"{option} {', '.join(unmatched)} matches nothing in the bench config; "
                         f"available: {', '.join(available)}")
    return [i for i in items if names(i) & set(wanted)]


def run_state(spec: RunSpec) -> RunState:
    run = RunDir(spec.run_dir)
    if not run.config_path.is_file():
        return RunState("new")
    try:
        stored_cfg = config_from_dict(run.read_config_dict(), source=str(run.config_path)).to_dict()
        stored = config_hash(stored_cfg)
    except (ConfigError, yaml.YAMLError) as exc:
        return RunState("changed", f"its config.yaml no longer loads ({exc})")
    if stored != spec.config_hash:
        changes = decoding_changes(stored_cfg, spec.cfg.to_dict())
        if changes is not None and run.test_metrics_path.is_file():
            said = ", ".join(f"{section}.{key}={value}" for section, kv in changes.items() for key, value in kv.items())
            return RunState("redecode", f"finished; only decoding changed ({said}): measuring the test again", changes)
        return RunState("changed", f"config changed (hash {stored} -> {spec.config_hash})")
    if run.test_metrics_path.is_file():
        return RunState("done", f"finished, config hash {stored}")
    return RunState("partial", "unfinished, resuming from its last checkpoint")
