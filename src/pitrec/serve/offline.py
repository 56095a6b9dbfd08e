"""Top-K recommendations for every user of an interaction file, written to a file
(``pitrec recommend RUN --input F --out G``): the offline counterpart of ``POST /recommend/batch``.

The input is read by the same readers as training data (S3-Rec folder, RecBole ``.inter``, CSV/TSV,
Parquet), without k-core filtering, so every user in it is answered or reported. Each user's
history is their chronological interactions; the model sees the last ``data.max_history`` of
them, as in evaluation and serving. Answers come from the same ``Recommender`` the service uses,
in batches, so memory grows with the batch, not with the number of users.

Items the run does not know are an error naming them and a user who has them, unless
``ignore_unknown``: then they are dropped, counted, and a user left with no known item is listed
in the summary (and in ``OUT.skipped.txt``) instead of being answered. The output is written to a
temporary file and renamed into place when complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pitrec.data.errors import DataError
from pitrec.data.interactions import Interactions
from pitrec.serve.recommender import Recommender
from pitrec.serve.schemas import MAX_K
from pitrec.utils.io import atomic_path, atomic_write_text

FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl"}


@dataclass
class OfflineSummary:
    users: int = 0  # users in the input
    answered: int = 0  # users with a row block in the output
    rows: int = 0
    unknown_items: int = 0  # distinct input item ids the run does not know (dropped)
    unknown_interactions: int = 0
    skipped_users: list[Hashable] = field(default_factory=list)  # no known item left
    version: int = 0  # the index version every answer came from

    def as_dict(self) -> dict[str, Any]:
        return {"users": self.users, "answered": self.answered, "rows": self.rows, "unknown_items": self.unknown_items,
                "unknown_interactions": self.unknown_interactions, "skipped_users": len(self.skipped_users),
                "index_version": self.version}


def output_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: the output's suffix names its format, one of {', '.join(FORMATS)}")
    return fmt


def recommend_file(recommender: Recommender, data: Interactions, out: str | Path, k: int = 10,
                   exclude_history: bool = False, ignore_unknown: bool = False, explain: bool = False,
                   batch_size: int = 256) -> OfflineSummary:
    """Write the top ``k`` of every user in ``data`` to ``out`` (long format: user_id, rank,
    item_id, score[, sids]) and return what was done."""
    out = Path(out)
    fmt = output_format(out)
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must lie in [1, {MAX_K}], got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    summary = OfflineSummary(users=data.n_users, version=recommender.version)
    histories, users = _known_histories(recommender, data, ignore_unknown, summary)
    text_ids = _needs_text_ids(data.user_ids) or _needs_text_ids(recommender.catalog.ids)
    with atomic_path(out) as tmp, _Writer(tmp, fmt, text_ids, explain) as writer:
        for start in range(0, len(users), batch_size):
            batch = recommender.recommend_many(histories[start:start + batch_size], k, exclude_history,
                                               ignore_unknown=False, explain=explain)
            if batch.version != summary.version:
                raise RuntimeError("the index changed while recommending: every answer must come from one version")
            rows = [(users[start + i], rank, item.id, item.score, [sid.model_dump() for sid in item.sids])
                    for i, row in enumerate(batch.results) for rank, item in enumerate(row.items, 1)]
            writer.write(rows)
            summary.rows += len(rows)
    summary.answered = len(users)
    skipped = out.with_name(out.name + ".skipped.txt")
    if summary.skipped_users:
        atomic_write_text(skipped, "".join(f"{u}\n" for u in summary.skipped_users))
    elif skipped.exists():
        skipped.unlink()  # from an earlier run into the same place: it would describe another output
    return summary


def _known_histories(recommender: Recommender, data: Interactions, ignore_unknown: bool, summary: OfflineSummary
                     ) -> tuple[list[list[Hashable]], list[Hashable]]:
    """Each user's raw history with the items the run knows; unknown items fail here, before any
    output is written, naming an item and a user who has it."""
    catalog, limit = recommender.catalog, recommender.engine.n_items
    known = [catalog.dense(raw, limit) is not None for raw in data.item_ids]
    unknown = [i for i, ok in enumerate(known) if not ok]
    if unknown and not ignore_unknown:
        first = set(unknown)
        user = next(u for u, seq in enumerate(data.sequences) if first.intersection(seq.tolist()))
        examples = [data.item_ids[i] for i in unknown[:5]]
        raise DataError(data.source or None, f"{len(unknown)} item id(s) are not in the run's catalogue, e.g. "
                                             f"{examples!r} (user {data.user_ids[user]!r} has "
                                             f"{data.item_ids[next(i for i in data.sequences[user] if not known[i])]!r}); "
                                             f"pass --ignore-unknown to drop them", field="item id")
    summary.unknown_items = len(unknown)
    histories, users = [], []
    for u, seq in enumerate(data.sequences):
        kept = [data.item_ids[i] for i in seq.tolist() if known[i]]
        summary.unknown_interactions += len(seq) - len(kept)
        if kept:
            histories.append(kept)
            users.append(data.user_ids[u])
        else:
            summary.skipped_users.append(data.user_ids[u])
    return histories, users


def _plain(raw: Hashable) -> Hashable:
    return int(raw) if isinstance(raw, np.integer) else raw


def _needs_text_ids(ids: Sequence[Hashable]) -> bool:
    return any(not isinstance(i, (int, np.integer)) for i in ids)


class _Writer:
    """Appends row blocks to one file of the chosen format (Parquet through one writer, so the
    file is a single table whatever the number of blocks)."""

    def __init__(self, path: Path, fmt: str, text_ids: bool, explain: bool):
        self.path, self.fmt, self.explain = path, fmt, explain
        id_type = pa.string() if text_ids else pa.int64()
        fields = [("user_id", id_type), ("rank", pa.int32()), ("item_id", id_type), ("score", pa.float64())]
        if explain:
            fields.append(("sids", pa.string()))
        self.schema = pa.schema(fields)
        self.text_ids = text_ids
        self._sink: Any = None

    def __enter__(self) -> "_Writer":
        if self.fmt == "parquet":
            self._sink = pq.ParquetWriter(self.path, self.schema)
        elif self.fmt in ("csv", "tsv"):
            options = pacsv.WriteOptions(delimiter="\t" if self.fmt == "tsv" else ",")
            self._sink = pacsv.CSVWriter(self.path, self.schema, write_options=options)
        else:
            self._sink = open(self.path, "w", encoding="utf-8")
        return self

    def write(self, rows: list[tuple]) -> None:
        if self.fmt == "jsonl":
            for user, rank, item, score, sids in rows:
                record = {"user_id": _plain(user), "rank": rank, "item_id": _plain(item), "score": score}
                if self.explain:
                    record["sids"] = sids
                self._sink.write(json.dumps(record) + "\n")
            return
        cast = str if self.text_ids else int
        columns = {"user_id": [cast(r[0]) for r in rows], "rank": [r[1] for r in rows],
                   "item_id": [cast(r[2]) for r in rows], "score": [r[3] for r in rows]}
        if self.explain:
            columns["sids"] = [json.dumps(r[4]) for r in rows]
        self._sink.write_table(pa.table(columns, schema=self.schema))

    def __exit__(self, *exc) -> None:
        self._sink.close()


def iter_output(path: str | Path) -> Iterator[dict[str, Any]]:
    """The rows of a file ``recommend_file`` wrote, whatever its format (for tests and tools)."""
    path = Path(path)
    fmt = output_format(path)
    if fmt == "jsonl":
        with open(path, encoding="utf-8") as fh:
            yield from (json.loads(line) for line in fh)
        return
    if fmt == "parquet":
        table = pq.read_table(path)
    else:
        table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ","))
    yield from table.to_pylist()
