"""Layered configuration: typed defaults <- recipe YAML <- user YAML files <- ``--key=value``.

Every section is a pydantic model registered under a name (``SECTIONS``), so a typo in a key or a
value of the wrong type fails at start-up with the dotted key in the message instead of being
ignored halfway through a two-hour run. The resolved config is written beside every run
(``config.yaml``), so a run can be reproduced or resumed from its directory alone.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from pitrec.registry import SECTIONS, load_components

log = logging.getLogger(__name__)


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ConfigError(ValueError):
    pass


class Config:
    """The resolved configuration: ``cfg.train.lr``, ``cfg.data.max_history`` ..."""

    def __init__(self, sections: dict[str, Section]):
        object.__setattr__(self, "_sections", sections)

    def __getattr__(self, name: str) -> Section:
        sections = object.__getattribute__(self, "_sections")
        if name in sections:
            return sections[name]
        raise AttributeError(f"config has no section {name!r}; sections: {', '.join(sorted(sections))}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is read-only; use Config.with_overrides(...)")

    def to_dict(self) -> dict:
        return {name: sec.model_dump(mode="json") for name, sec in sorted(self._sections.items())}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def with_overrides(self, overrides: dict | Iterable[str]) -> "Config":
        if not isinstance(overrides, dict):
            overrides = parse_overrides(overrides)
        return config_from_dict(deep_merge(self.to_dict(), overrides))

    def get(self, dotted: str) -> Any:
        obj: Any = self
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj


def deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_dotted_overrides(args: Iterable[str], *, min_parts: int, form: str,
                           error: type[Exception]) -> dict:
    """``["a.b=1", "--a.c=[5,10]"]`` -> ``{"a": {"b": 1, "c": [5, 10]}}``, values parsed as YAML.

    Shared by run configs and bench configs so that both command lines read ``--key=value`` the
    same way; each passes its own error type, and ``form`` shows the expected shape in messages."""
    out: dict = {}
    for raw in args:
        arg = raw[2:] if raw.startswith("--") else raw
        key, sep, text = arg.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if not sep or not parts:
            raise error(f"override {raw!r} is not of the form {form}")
        if len(parts) < min_parts:
            raise error(f"override {raw!r}: the key must name a section and a field, e.g. train.lr")
        try:
            value = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError as exc:
            raise error(f"override {raw!r}: value is not valid YAML ({exc})") from exc
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise error(f"override {raw!r} conflicts with an earlier override of {p!r}")
        node[parts[-1]] = value
    return out


def parse_overrides(args: Iterable[str]) -> dict:
    """``["train.lr=0.001", "--eval.ks=[5,10]"]`` -> nested dict; values are parsed as YAML."""
    return parse_dotted_overrides(args, min_parts=2, form="--section.key=value", error=ConfigError)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: invalid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping of sections")
    return data


def builtin_layer(name: str) -> dict:
    """A YAML layer shipped in ``pitrec/configs/`` (e.g. a recipe's defaults); {} if absent."""
    ref = resources.files("pitrec.configs").joinpath(f"{name}.yaml")
    if not ref.is_file():
        return {}
    data = yaml.safe_load(ref.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"built-in config {name}.yaml: top level must be a mapping")
    # ``extends: other`` layers this file over another built-in one, so methods compared in one
    # benchmark (TIGER and PIT) share one definition of the backbone and budget instead of copies
    base = data.pop("extends", None)
    if base is not None:
        if base == name or not isinstance(base, str):
            raise ConfigError(f"built-in config {name}.yaml: invalid 'extends: {base!r}'")
        data = deep_merge(builtin_layer(base), data)
    return data


@dataclass(frozen=True)
class RetiredKey:
    """A key an earlier version accepted. ``neutral`` is the value at which it changed nothing."""

    neutral: Any
    why: str


# Run directories keep their resolved config.yaml for good, so removing an option must not make
# every run trained while it existed unloadable ("extra inputs are not permitted"). A retired key
# at its neutral value describes a run this version reproduces exactly: it is dropped with a log
# line. At any other value the run used behaviour this version no longer has: that is an error
# that says so, instead of silently evaluating a different model.
RETIRED_KEYS: dict[str, RetiredKey] = {
    "pit.expand_last_levels": RetiredKey(
        0, "removed in 9b9f63e: expanding the last levels below the beam prefixes moved NDCG@10 by "
           "less than .0001 on beauty and made the search 4x slower (benchmarks/tuning/sibling_ablations_beauty.md)"),
}


def drop_retired_keys(data: dict, source: str = "config") -> dict:
    """``data`` without the retired keys that sit at their neutral value; raises on any other value."""
    out = data
    for dotted, retired in RETIRED_KEYS.items():
        section, _, key = dotted.partition(".")
        raw = data.get(section)
        if not isinstance(raw, dict) or key not in raw:
            continue
        if raw[key] != retired.neutral:
            raise ConfigError(f"{source}: {dotted}={raw[key]!r} is no longer supported ({retired.why}); "
                              f"this version can only load it at {retired.neutral!r}, where it had no effect")
        if out is data:
            out = dict(data)
        out[section] = {k: v for k, v in raw.items() if k != key}
        log.info("%s: ignoring retired key %s=%r (%s)", source, dotted, raw[key], retired.why)
    return out


def config_from_dict(data: dict, source: str = "config") -> Config:
    load_components()
    data = drop_retired_keys(data, source)
    known = dict(SECTIONS.items())
    unknown = sorted(set(data) - set(known))
    if unknown:
        keys = [f"{name}.{key}" for name in unknown if isinstance(data[name], dict) for key in data[name]]
        raise ConfigError(f"{source}: unknown section(s) {unknown}" + (f" (keys {keys})" if keys else "")
                          + f"; known sections: {sorted(known)}")
    sections: dict[str, Section] = {}
    for name, cls in known.items():
        raw = data.get(name) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: section {name!r} must be a mapping, got {type(raw).__name__}")
        try:
            sections[name] = cls(**raw)
        except ValidationError as exc:
            msgs = []
            for err in exc.errors():
                loc = ".".join(str(p) for p in (name, *err["loc"]))
                msgs.append(f"{loc}: {err['msg']}")
            raise ConfigError(f"{source}: " + "; ".join(msgs)) from None
    return Config(sections)


def load_config(
    recipe: str | None = None,
    files: Iterable[str | Path] = (),
    overrides: dict | Iterable[str] = (),
) -> Config:
    """Resolve the layers in order; later layers win key by key."""
    merged: dict = builtin_layer("default")
    if recipe:
        merged = deep_merge(merged, builtin_layer(recipe))
    for f in files:
        merged = deep_merge(merged, read_yaml(f))
    if not isinstance(overrides, dict):
        overrides = parse_overrides(overrides)
    merged = deep_merge(merged, overrides)
    return config_from_dict(merged, source=f"config ({recipe or 'default'})")
