"""A run directory holds everything a later stage, a resume or the service needs:

``config.yaml`` (resolved), ``metrics.jsonl`` (one line per evaluation), ``checkpoint/latest`` and
``checkpoint/best``, ``test_metrics.json``, plus recipe artifacts (``sid_table.*``,
``beam_index/``, ``data.json`` describing how to reload the dataset and its id maps).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from pitrec.utils.io import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def create(self) -> "RunDir":
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def latest(self) -> Path:
        return self.path / "checkpoint" / "latest"

    @property
    def best(self) -> Path:
        return self.path / "checkpoint" / "best"

    @property
    def test_metrics_path(self) -> Path:
        return self.path / "test_metrics.json"

    def write_config(self, cfg) -> None:
        atomic_write_text(self.config_path, cfg.to_yaml())

    def read_config_dict(self) -> dict:
        if not self.config_path.is_file():
            raise FileNotFoundError(f"{self.path} is not a run directory (no config.yaml)")
        return yaml.safe_load(self.config_path.read_text()) or {}

    def log_metrics(self, record: dict) -> None:
        append_jsonl(self.metrics_path, record)

    def metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_path)

    def drop_metrics_after(self, step: int) -> None:
        """Forget log lines written after the checkpoint a run resumes from (a crash between
        logging an epoch and saving it), so the resumed run does not log that epoch twice; a
        torn last line goes too, so later appends start on a fresh line."""
        if self.metrics_path.exists():
            kept = [r for r in self.metrics() if r.get("step", 0) <= step]
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def write_json(self, name: str, obj) -> Path:
        p = self.path / name
        atomic_write_json(p, obj)
        return p
