"""Reading a run directory for serving: config, catalogue, checkpoint and recipe artifacts, with
no access to the dataset files (everything a served method needs was written by training)."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from pitrec.config import ConfigError, config_from_dict
from pitrec.serve.catalog import Catalog
from pitrec.train.checkpoint import load_checkpoint
from pitrec.train.run_dir import RunDir

METHODS = ("pit", "tiger", "sasrec", "popularity", "content-knn")


class RunDirError(ValueError):
    """The run directory cannot be served; the message names the file and what is wrong."""


@dataclass
class ServedRun:
    path: Path
    cfg: Any  # pitrec.config.Config
    catalog: Catalog
    method: str
    checkpoint: Path | None  # checkpoint/best (else latest); None for untrained methods

    def model_tensors(self) -> dict[str, torch.Tensor]:
        if self.checkpoint is None:
            raise RunDirError(f"{self.path}: no checkpoint (checkpoint/best or checkpoint/latest)")
        return load_file(str(self.checkpoint / "model.safetensors"))

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        path = self.checkpoint / "extra.safetensors" if self.checkpoint is not None else None
        return load_file(str(path)) if path is not None and path.is_file() else {}

    def load_modules(self, modules: dict[str, torch.nn.Module]) -> None:
        """Checkpoint weights into ``modules`` (strict: a mismatch names the module)."""
        try:
            load_checkpoint(self.checkpoint, modules)
        except (RuntimeError, FileNotFoundError) as exc:
            raise RunDirError(f"{self.checkpoint}: {exc}") from None


def open_run(run_dir: str | Path, method: str | None = None) -> ServedRun:
    path = Path(run_dir)
    run = RunDir(path)
    try:
        cfg = config_from_dict(run.read_config_dict(), source=str(run.config_path))
    except (FileNotFoundError, ConfigError) as exc:
        raise RunDirError(str(exc)) from None
    catalog_path = path / "catalog.json.gz"
    try:
        with gzip.open(catalog_path, "rt", encoding="utf-8") as fh:
            catalog = Catalog.from_json(json.load(fh), str(catalog_path))
    except FileNotFoundError:
        raise RunDirError(f"{catalog_path}: missing (written by `pitrec train`); cannot serve without it") from None
    except (OSError, json.JSONDecodeError, ValueError, TypeError) as exc:
        raise RunDirError(f"{catalog_path}: unreadable ({exc})") from None
    checkpoint = next((c for c in (run.best, run.latest) if (c / "state.json").is_file()), None)
    found = method or _detect_method(path, checkpoint)
    if found not in METHODS:
        raise RunDirError(f"{path}: cannot serve method {found!r}; servable: {', '.join(METHODS)}")
    return ServedRun(path, cfg, catalog, found, checkpoint)


def _detect_method(path: Path, checkpoint: Path | None) -> str:
    """The method is recorded in test_metrics.json at the end of training; an unfinished run is
    recognised by its checkpoint's module names."""
    metrics = path / "test_metrics.json"
    if metrics.is_file():
        try:
            return str(json.loads(metrics.read_text())["method"])
        except (json.JSONDecodeError, KeyError) as exc:
            raise RunDirError(f"{metrics}: no readable 'method' field ({exc})") from None
    if checkpoint is None:
        raise RunDirError(f"{path}: neither test_metrics.json nor a checkpoint; is this a finished `pitrec train` run?")
    prefixes = {key.split(".", 1)[0] for key in load_file(str(checkpoint / "model.safetensors"))}
    if "i2t" in prefixes:
        return "pit"
    if "sasrec" in prefixes:
        return "sasrec"
    if prefixes == {"u2t"}:
        return "tiger"
    raise RunDirError(f"{checkpoint}: cannot tell the method from modules {sorted(prefixes)}; pass method=")
