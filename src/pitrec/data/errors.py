"""The one error type for bad input files: it always names the file, and the line (or, for
tables without lines such as Parquet, the 1-based row) and field where they are known, so a user
can go straight to the problem."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    def __init__(self, path: str | Path | None, message: str, line: int | None = None, field: str | None = None,
                 row: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.row = row
        self.field = field
        self.message = message
        where = self.path or "<input>"
        if line is not None:
            where += f":{line}"
        if row is not None:
            where += f" row {row}"
        if field is not None:
            where += f": field {field!r}"
        super().__init__(f"{where}: {message}")
