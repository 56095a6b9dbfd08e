"""``Recommender``: a trained run directory served from Python (the web app is a thin layer on it).

Readers take the current engine (one immutable index version) with a single reference read and
answer from it alone, so every answer is consistent with exactly one version, which it reports.
Writers (new items, feedback) are serialised by one lock: each builds the next engine from the
current one, appends the update to the durable log, then swaps the reference.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Sequence

import numpy as np
import torch

from pitrec.data.batches import left_pad
from pitrec.decoding.settings import checked_decoding, decoding_settings
from pitrec.serve.engines import Engine, Ranked, load_engine
from pitrec.serve.errors import BadRequest, DuplicateItem, ItemNotFound, ServeError, UnknownItems
from pitrec.serve.loader import RunDirError, ServedRun, open_run
from pitrec.serve.schemas import (MAX_K, BatchRecommendation, FeedbackResult, Health, ItemInfo, Recommendation,
                                  RecommendationRow, RecommendRequest, ScoredItem, Stats)
from pitrec.serve.store import UpdateStore
from pitrec.utils.runtime import configure_process, resolve_device


class Recommender:
    def __init__(self, run: ServedRun, engine: Engine, store: UpdateStore | None = None, compact_every: int = 1000):
        if compact_every < 1:
            raise ValueError(f"compact_every must be >= 1, got {compact_every}")
        self.run, self.catalog, self.store, self.compact_every = run, run.catalog, store, compact_every
        self.max_history = run.cfg.data.max_history
        self.base = engine.fingerprint()
        self.counters = {"items_added": 0, "feedback_accepted": 0}
        self._engine = engine
        self._write_lock = threading.Lock()

    @classmethod
    def load(cls, run_dir: str | Path, *, state_dir: str | Path | None = None, persist: bool = True,
             device: str = "cpu", threads: int | None = None, compact_every: int = 1000,
             method: str | None = None, dtype: str = "float32",
             retain_memory: bool | None = None, last_level: str | None = None,
             decoding: dict | Iterable[str] = ()) -> "Recommender":
        """Rebuild the trained method from ``run_dir`` alone; with ``persist`` (default), replay
        the updates accepted by earlier sessions from ``state_dir`` (default RUN_DIR/serving).
        ``dtype="bfloat16"`` runs a generative model's decoder in bfloat16 (faster where the CPU
        supports it; rankings may differ slightly from float32, see ``serve.engines.DTYPES``).
        ``retain_memory`` sets the allocator for the whole process (None: the run's
        ``run.retain_freed_memory``; see ``pitrec.utils.runtime.retain_freed_memory``). ``last_level``
        (``model`` | ``renormalized``) overrides the run's ``tiger.last_level`` or ``pit.last_level``, a
        decoding setting that needs no retraining; ``decoding`` overrides any of them, as ``pitrec eval``
        takes them (``["pit.one_to_many=false", "pit.beam_width=30"]``; ``pitrec.decoding.settings``)."""
        run = open_run(run_dir, method)
        if last_level is not None:
            if run.method not in ("tiger", "pit"):
                raise ValueError(f"last_level applies to tiger and pit runs; {run_dir} is a {run.method} run")
            run.cfg = run.cfg.with_overrides({run.method: {"last_level": last_level}})
        if decoding:
            run.cfg = run.cfg.with_overrides(checked_decoding(run.method, decoding))
        configure_process(run.cfg.run, threads, retain_memory)
        store = UpdateStore(state_dir if state_dir is not None else run.path / "serving") if persist else None
        rec = cls(run, load_engine(run, resolve_device(device), dtype), store, compact_every)
        if store is not None:
            rec._restore()
        return rec

    @property
    def engine(self) -> Engine:
        """The current version (immutable; a later update replaces it, never changes it)."""
        return self._engine

    @property
    def version(self) -> int:
        return self._engine.version

    # -- reading -----------------------------------------------------------------------------
    def recommend(self, history: Sequence[Hashable], k: int = 10, exclude_history: bool = False,
                  ignore_unknown: bool = False, explain: bool = True) -> Recommendation:
        """The top ``k`` items after ``history`` (raw ids, oldest first), with scores and, for
        generative methods, the SIDs behind each score. Only the last ``data.max_history`` items
        are used (and excluded), as in evaluation."""
        engine = self._engine
        dense, ignored = self._resolve(engine, history, ignore_unknown, "history")
        row = engine.rank(_padded([dense]), _check_k(k), exclude_history, explain)[0]
        return Recommendation(version=engine.version, method=engine.method, items=self._scored(row), ignored=ignored)

    def recommend_many(self, histories: Sequence[Sequence[Hashable]], k: int = 10, exclude_history: bool = False,
                       ignore_unknown: bool = False, explain: bool = True) -> BatchRecommendation:
        """``recommend`` for many users in one batched pass, all from the same index version."""
        engine = self._engine
        if not len(histories):
            raise BadRequest("histories is empty: give at least one history")
        resolved = [self._resolve(engine, h, ignore_unknown, f"histories[{i}]") for i, h in enumerate(histories)]
        rows = engine.rank(_padded([dense for dense, _ in resolved]), _check_k(k), exclude_history, explain)
        return BatchRecommendation(version=engine.version, method=engine.method,
                                   results=[RecommendationRow(items=self._scored(r), ignored=ignored)
                                            for r, (_, ignored) in zip(rows, resolved)])

    def recommend_each(self, requests: Sequence[RecommendRequest]) -> list[Recommendation | ServeError]:
        """Independent requests answered together from one index version (the service batches
        concurrent requests through here): requests with the same ``k`` and ``exclude_history``
        share one model pass, so each gets what ``recommend`` would give it; a bad request gets
        its own error in its slot and does not fail the others."""
        engine = self._engine
        out: list[Recommendation | ServeError | None] = [None] * len(requests)
        groups: dict[tuple[int, bool], list[tuple[int, np.ndarray, list[Hashable]]]] = {}
        for i, req in enumerate(requests):
            try:
                k = _check_k(req.k)
                dense, ignored = self._resolve(engine, req.history, req.ignore_unknown, "history")
            except ServeError as exc:
                out[i] = exc
                continue
            groups.setdefault((k, req.exclude_history, req.explain), []).append((i, dense, ignored))
        for (k, exclude, explain), members in groups.items():
            rows = engine.rank(_padded([dense for _, dense, _ in members]), k, exclude, explain)
            for (i, _, ignored), row in zip(members, rows):
                out[i] = Recommendation(version=engine.version, method=engine.method, items=self._scored(row),
                                        ignored=ignored)
        return out  # type: ignore[return-value]

    def item(self, raw_id: Hashable) -> ItemInfo:
        engine = self._engine
        dense = self.catalog.dense(raw_id, engine.n_items)
        if dense is None:
            raise ItemNotFound(f"item {raw_id!r} is not in the catalogue (index version {engine.version})")
        return self._item_info(engine, dense)

    def health(self) -> Health:
        engine = self._engine
        return Health(status="ok", method=engine.method, version=engine.version, items=engine.n_items)

    def stats(self) -> Stats:
        engine = self._engine
        s = engine.stats()
        persistence: dict[str, Any] = {"enabled": self.store is not None}
        if self.store is not None:
            persistence.update(state_dir=str(self.store.root), log_records=self.store.pending,
                               compact_every=self.compact_every)
        return Stats(version=engine.version, method=engine.method, items=engine.n_items, **self.counters,
                     sids=s["sids"], edges=s["edges"], collisions=s["collisions"], index=s["index"],
                     persistence=persistence, decoding=decoding_settings(self.run.cfg, engine.method),
                     explanations=s.get("explanations", {}))

    # -- updates -----------------------------------------------------------------------------
    def add_item(self, raw_id: Hashable, title: str = "", attributes: Sequence[Hashable] = ()) -> ItemInfo:
        """A new item, recommendable as soon as this returns (PIT: SIDs from I2T)."""
        if not isinstance(raw_id, (int, str)) or isinstance(raw_id, bool) or raw_id == "":
            raise BadRequest(f"item id must be an integer or a non-empty string, got {raw_id!r}")
        if not isinstance(title, str):
            raise BadRequest(f"title must be a string, got {type(title).__name__}")
        if isinstance(attributes, (str, bytes)) or not isinstance(attributes, Sequence):
            raise BadRequest(f"attributes must be a list of attribute ids, got {type(attributes).__name__}")
        with self._write_lock:
            engine = self._engine
            existing = self.catalog.dense(raw_id)
            if existing is not None:
                raise DuplicateItem(f"item id {raw_id!r} already exists (as {self.catalog.ids[existing]!r}); "
                                    f"ids are unique, compared as strings")
            attrs = self.catalog.attribute_dense(list(attributes))
            new, record = engine.with_new_item(self.catalog, raw_id, title, attrs)
            self._commit(new, record, lambda: self.catalog.append(raw_id, title, attrs))
            return self._item_info(new, new.n_items - 1)

    def feedback(self, history: Sequence[Hashable], item: Hashable, ignore_unknown: bool = False) -> FeedbackResult:
        """A user with ``history`` interacted with ``item``: record which of the item's SIDs
        this user's model state prefers, as training does (PIT)."""
        with self._write_lock:
            engine = self._engine
            dense = self.catalog.dense(item, engine.n_items)
            if dense is None:
                raise UnknownItems([item], "the feedback item", hint="")
            history_ids, _ = self._resolve(engine, history, ignore_unknown, "history")
            new, record, pick = engine.with_feedback(_padded([history_ids]), dense)
            record["id"] = self.catalog.ids[dense]
            self._commit(new, record)
            return FeedbackResult(version=new.version, item=self.catalog.ids[dense], chosen_sid=record["codes"],
                                  was_primary=pick == 0, sids=new.item_sids(dense))

    def compact(self) -> None:
        """Write a snapshot of the current version and empty the update log."""
        with self._write_lock:
            self._snapshot()

    def close(self) -> None:
        """Compact if there are logged updates (a clean shutdown restarts without a replay)."""
        if self.store is not None and self.store.pending:
            self.compact()

    # -- internals ---------------------------------------------------------------------------
    def _commit(self, new: Engine, record: dict[str, Any], apply: Callable[[], Any] | None = None) -> None:
        """Durable first (the log), then visible (catalogue, then the engine reference)."""
        record["version"] = new.version
        if self.store is not None:
            self.store.append(record)
        if apply is not None:
            apply()
        self._engine = new
        self._count(record)
        if self.store is not None and self.store.pending >= self.compact_every:
            self._snapshot()

    def _count(self, record: dict[str, Any]) -> None:
        self.counters["items_added" if record["op"] == "add_item" else "feedback_accepted"] += 1

    def _snapshot(self) -> None:
        if self.store is not None:
            self.store.write_snapshot(self._engine, self.catalog, self.base, dict(self.counters))

    def _restore(self) -> None:
        """The last snapshot, then every logged update after it, checked version by version."""
        store, engine = self.store, self._engine
        meta = store.snapshot_meta()
        if meta is not None:
            where = store.snapshot_dir / "snapshot.json"
            if meta.get("base") != self.base:
                raise RunDirError(f"{where}: serving state of another training state ({meta.get('base')} vs "
                                  f"{self.base}); move {store.root} away to start fresh")
            for item in meta.get("added_items", []):
                self.catalog.append(item["id"], item["title"], self.catalog.attribute_dense(item["attributes"]))
            engine = engine.load_state(store.snapshot_dir)
            if engine.version != meta.get("version") or engine.n_items != len(self.catalog):
                raise RunDirError(f"{where}: says version {meta.get('version')} with {len(self.catalog)} items, "
                                  f"the saved index has version {engine.version} with {engine.n_items}")
            self.counters.update(meta.get("counters", {}))
        for i, record in enumerate(store.records(), 1):
            where = f"{store.log_path} record {i}"
            version = record.get("version")
            if not isinstance(version, int) or record.get("op") not in ("add_item", "feedback"):
                raise RunDirError(f"{where}: needs an integer 'version' and op add_item|feedback, got {record}")
            if version <= engine.version:
                continue  # already in the snapshot (a crash between snapshot and log reset)
            engine = engine.replay(record, where)
            if record["op"] == "add_item":
                if self.catalog.dense(record["id"]) is not None or record["item"] != len(self.catalog):
                    raise RunDirError(f"{where}: item {record['id']!r} is a duplicate or out of order")
                self.catalog.append(record["id"], record.get("title", ""),
                                    self.catalog.attribute_dense(record.get("attributes", [])))
            if engine.version != version:
                raise RunDirError(f"{where}: replay reached version {engine.version}, the log says {version}")
            self._count(record)
        self._engine = engine

    def _resolve(self, engine: Engine, history: Sequence[Hashable], ignore_unknown: bool, where: str
                 ) -> tuple[np.ndarray, list[Hashable]]:
        """A raw history -> its last ``max_history`` dense ids (at ``engine``'s version) and the
        unknown ids it dropped."""
        if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
            raise BadRequest(f"{where} must be a list of item ids, got {type(history).__name__}")
        if not len(history):
            raise BadRequest(f"{where} is empty: recommendations need at least one known item")
        dense, unknown = self.catalog.resolve(history, engine.n_items, where, ignore_unknown)
        if not dense:
            raise BadRequest(f"{where}: none of its {len(history)} item ids is known (e.g. {unknown[:5]!r})")
        return np.asarray(dense[-self.max_history:], dtype=np.int64), unknown

    def _scored(self, row: list[Ranked]) -> list[ScoredItem]:
        return [ScoredItem(id=self.catalog.ids[r.item], score=r.score, sids=r.sids) for r in row]

    def _item_info(self, engine: Engine, dense: int) -> ItemInfo:
        c = self.catalog
        return ItemInfo(id=c.ids[dense], version=engine.version, title=c.texts[dense],
                        attributes=[c.attribute_ids[a] for a in c.attributes[dense]],
                        added_online=dense >= c.n_base, sids=engine.item_sids(dense))


def _padded(rows: list[np.ndarray]) -> torch.Tensor:
    """Left-padded (B, longest) batch of dense histories, the models' input convention."""
    return torch.from_numpy(left_pad(rows, max(len(r) for r in rows)))


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= MAX_K:
        raise BadRequest(f"k must be an integer in [1, {MAX_K}], got {k!r}")
    return int(k)
