"""Readers never see a half-updated index: while a writer adds items and records feedback,
every answer of concurrent readers (direct, or micro-batched as the web app does) equals the
answer recomputed on the one index version it reports."""

from __future__ import annotations

import random
import threading

import pytest
import torch

from pitrec.serve import Recommender
from pitrec.serve.batching import MicroBatcher
from pitrec.serve.schemas import MAX_K, RecommendRequest

HISTORIES = [[1, 2, 3], [4, 5], [6], [7, 8, 9, 10]]


def test_every_answer_is_consistent_with_exactly_one_version(pit_run):
    rec = Recommender.load(pit_run, persist=False)
    rec.add_item("warm-up", "the first new item fits the text encoder")  # keep the refit out of the race
    engines = {rec.version: rec.engine}
    answers, failures = [], []
    stop = threading.Event()
    batcher = MicroBatcher(rec.recommend_each, max_batch=4)

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                history = rng.choice(HISTORIES)
                if seed % 2:
                    answers.append((history, batcher.submit(RecommendRequest(history=history, k=MAX_K))))
                else:
                    answers.append((history, rec.recommend(history, k=MAX_K)))
        except Exception as exc:  # noqa: BLE001 - reported below, a thread cannot raise into pytest
            failures.append(exc)

    def writer() -> None:
        try:
            for i in range(6):
                rec.add_item(f"new-{i}", f"new title number {i}")
                engines[rec.version] = rec.engine
                rec.feedback(random.Random(i).choice(HISTORIES), f"new-{i}")
                engines[rec.version] = rec.engine
        except Exception as exc:  # noqa: BLE001
            failures.append(exc)
        finally:
            stop.set()

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    batcher.close()
    assert not failures, failures
    seen = {out.version for _, out in answers}
    assert len(seen) >= 3, f"the readers overlapped too few versions to test anything: {seen}"
    for history, out in answers:
        engine = engines[out.version]  # only versions a writer committed are ever reported
        dense = torch.tensor([[rec.catalog.dense(i) for i in history]])
        again = engine.rank(dense, MAX_K, False)[0]
        assert [rec.catalog.ids[r.item] for r in again] == [i.id for i in out.items]
        assert [r.score for r in again] == pytest.approx([i.score for i in out.items], abs=1e-5)
        assert len(out.items) == engine.n_items  # all items reachable at k=MAX_K in the tiny index
