"""Bench configs: which datasets, methods (with variants), seeds and shared overrides make up one
benchmark.

A benchmark can take hours, so the whole file is validated before the first run starts: a typo in
a key fails here with the key's dotted path (``methods.1.variant``) instead of after the third
dataset. Keys that would break the comparison (a method changing the evaluation protocol, the
seed or the run directory) are rejected: every run of a benchmark is measured the same way.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pitrec.config import deep_merge, parse_dotted_overrides

SYNTHETIC = "synthetic"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # used in folder names and results keys
MAIN_VARIANT = "full"


class BenchError(ValueError):
    """A benchmark that cannot run as configured; the message names the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def _reject_keys(overrides: dict[str, Any], forbidden: dict[str, str]) -> None:
    """``forbidden`` maps ``section`` or ``section.key`` to the reason it may not be overridden."""
    for dotted, reason in forbidden.items():
        node: Any = overrides
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            raise ValueError(f"may not set {dotted!r}: {reason}")


_PER_RUN_KEYS = {
    "eval": "the evaluation protocol is the benchmark's `protocol` section, the same for every run",
    "data": "data settings belong to the dataset entry (`datasets.NAME.data`)",
    "run.seed": "seeds come from the benchmark's `seeds` list",
    "run.out": "run directories are chosen by the benchmark (`runs_dir`)",
}


class DatasetSpec(_Strict):
    """A dataset: a path (folder or file, read by ``pitrec.data``) or the word ``synthetic``."""

    path: str
    format: str = "auto"
    data: dict[str, Any] = Field(default_factory=dict)  # extra `data` section keys (k-core, synthetic sizes)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value

    @field_validator("data")
    @classmethod
    def _no_protocol_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        clash = sorted({"path", "format", "max_history"} & set(v))
        if clash:
            raise ValueError(f"may not set {clash}: use the dataset's `path`/`format` and the benchmark's "
                             "`protocol.max_history`")
        return v

    @property
    def is_synthetic(self) -> bool:
        return self.path == SYNTHETIC

    def data_section(self) -> dict[str, Any]:
        if self.is_synthetic:
            return {"path": None, "format": SYNTHETIC, **self.data}
        return {"path": self.path, "format": self.format, **self.data}


class MethodSpec(_Strict):
    """One row of the comparison: a registered recipe, a variant name and its config overrides."""

    method: str = Field(pattern=NAME_PATTERN)
    variant: str = Field(MAIN_VARIANT, pattern=NAME_PATTERN)
    overrides: dict[str, Any] = Field(default_factory=dict)
    # Only these datasets (None: all). For a variant that cannot run everywhere, e.g. an imported
    # SID table made for one catalogue: without it the benchmark would fail on the other datasets.
    datasets: list[str] | None = None

    @field_validator("overrides")
    @classmethod
    def _per_run_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        _reject_keys(v, _PER_RUN_KEYS)
        return v

    def runs_on(self, dataset: str) -> bool:
        return self.datasets is None or dataset in self.datasets

    @property
    def label(self) -> str:
        """The results key: ``method`` for the main variant, ``method/variant`` for the others."""
        return self.method if self.variant == MAIN_VARIANT else f"{self.method}/{self.variant}"

    @property
    def folder(self) -> str:
        return f"{self.method}-{self.variant}"


class Protocol(_Strict):
    """The evaluation protocol shared by every run (leave-one-out and full ranking are fixed)."""

    max_history: int = Field(20, ge=1)
    eval: dict[str, Any] = Field(default_factory=dict)  # `eval` section keys: ks, mask_history, valid_metric...


class BenchConfig(_Strict):
    name: str = "bench"
    datasets: dict[str, DatasetSpec]
    methods: list[MethodSpec]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    overrides: dict[str, Any] = Field(default_factory=dict)  # config overrides common to every run
    protocol: Protocol = Field(default_factory=Protocol)
    runs_dir: str = "runs/bench"
    results_dir: str = "benchmarks/results"
    progress: bool = True

    @field_validator("datasets")
    @classmethod
    def _dataset_names(cls, v: dict[str, DatasetSpec]) -> dict[str, DatasetSpec]:
        if not v:
            raise ValueError("name at least one dataset")
        for name in v:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"dataset name {name!r} must match {NAME_PATTERN} (it names files)")
        return v

    @field_validator("methods")
    @classmethod
    def _unique_methods(cls, v: list[MethodSpec]) -> list[MethodSpec]:
        if not v:
            raise ValueError("name at least one method")
        labels = [m.label for m in v]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"method/variant listed twice: {dupes}")
        return v

    @model_validator(mode="after")
    def _method_datasets_exist(self) -> "BenchConfig":
        for i, method in enumerate(self.methods):
            unknown = sorted(set(method.datasets or []) - set(self.datasets))
            if unknown:
                raise ValueError(f"methods.{i}.datasets ({method.label}): {unknown} not in `datasets` "
                                 f"({', '.join(self.datasets)})")
            if method.datasets == []:
                raise ValueError(f"methods.{i}.datasets ({method.label}) is empty: drop the method instead")
        return self

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("name at least one seed")
        if len(set(v)) != len(v):
            raise ValueError(f"seeds repeat: {v}")
        return v

    @field_validator("overrides")
    @classmethod
    def _common_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        _reject_keys(v, _PER_RUN_KEYS)
        return v


def parse_bench_overrides(args: list[str]) -> dict[str, Any]:
    """``["--seeds=[0]", "--overrides.train.max_minutes=5"]`` -> nested dict (values are YAML)."""
    return parse_dotted_overrides(args, min_parts=1, form="--key=value (e.g. --seeds=[0,1,2])", error=BenchError)


def load_bench(path: str | Path, overrides: list[str] | None = None) -> BenchConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"bench config {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise BenchError(f"bench config {path}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise BenchError(f"bench config {path}: the top level must be a mapping (datasets, methods, seeds...)")
    merged = deep_merge(copy.deepcopy(raw), parse_bench_overrides(overrides or []))
    try:
        return BenchConfig(**merged)
    except ValidationError as exc:
        msgs = [f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()]
        raise BenchError(f"bench config {path}: " + "; ".join(msgs)) from None
