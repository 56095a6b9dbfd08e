"""Durable serving state: a snapshot directory plus an append-only log of accepted updates.

An update is appended (and fsync'ed) to ``updates.jsonl`` BEFORE it is made visible and
acknowledged, so a restart after a crash replays every accepted update over the last snapshot.
Compaction writes a new snapshot atomically (``atomic_dir``) and then empties the log; a crash
between the two leaves log records the snapshot already holds, which replay skips by version.
A torn last log line (a crash mid-append, never acknowledged) is ignored by ``read_jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pitrec.serve.catalog import Catalog
from pitrec.serve.engines.base import Engine
from pitrec.utils.io import append_jsonl, atomic_dir, atomic_write_json, atomic_write_text, read_jsonl

FORMAT = "pitrec.serving_state"


class UpdateStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.snapshot_dir = self.root / "snapshot"
        self.log_path = self.root / "updates.jsonl"
        self.pending = 0  # log records since the last snapshot

    def snapshot_meta(self) -> dict[str, Any] | None:
        path = self.snapshot_dir / "snapshot.json"
        if not path.is_file():
            return None
        try:
            meta = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a pitrec serving snapshot (format {meta.get('format')!r})")
        return meta

    def records(self) -> list[dict[str, Any]]:
        """The logged updates; a torn last line (a crash mid-append, never acknowledged) is
        dropped from the file too, so the next append starts on a fresh line."""
        try:
            records = read_jsonl(self.log_path)
        except ValueError as exc:
            raise ValueError(f"serving update log: {exc}") from None
        if self.log_path.exists():
            lines = [line for line in self.log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
            if len(lines) != len(records):
                atomic_write_text(self.log_path, "".join(json.dumps(r) + "\n" for r in records))
        self.pending = len(records)
        return records

    def append(self, record: dict[str, Any]) -> None:
        append_jsonl(self.log_path, record)
        self.pending += 1

    def write_snapshot(self, engine: Engine, catalog: Catalog, base: dict[str, Any], counters: dict[str, int]) -> None:
        with atomic_dir(self.snapshot_dir) as tmp:
            engine.save_state(tmp)
            atomic_write_json(tmp / "snapshot.json", {"format": FORMAT, "version": engine.version, "base": base,
                                                      "added_items": catalog.added(), "counters": counters})
        atomic_write_text(self.log_path, "")
        self.pending = 0
