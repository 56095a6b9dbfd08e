"""Helpers shared by the readers: transparent gzip, and id parsing that names where it failed."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Hashable, Iterable, TextIO

from pitrec.data.errors import DataError


def open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


def find_file(folder: Path, stem: str, required: bool = True) -> Path | None:
    """``stem`` or ``stem.gz`` inside ``folder``."""
    for name in (stem, stem + ".gz"):
        p = folder / name
        if p.is_file():
            return p
    if required:
        raise DataError(folder, f"expected a file named {stem} or {stem}.gz in this folder")
    return None


def parse_int(token: str, path: Path, line: int, field: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise DataError(path, f"expected an integer id, got {token!r}", line=line, field=field) from None


def sorted_ids(ids: Iterable[Hashable]) -> list[Hashable]:
    """Deterministic dense order: numeric ids numerically, otherwise as strings."""
    ids = list(ids)
    try:
        return sorted(ids)
    except TypeError:
        return sorted(ids, key=str)
