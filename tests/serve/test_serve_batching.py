"""Micro-batching: concurrent requests answered together get exactly what they would get alone,
a bad request only fails itself, and the worker forms batches while it is busy."""

from __future__ import annotations

import threading
import time

import pytest

from pitrec.serve import Recommender
from pitrec.serve.batching import MicroBatcher
from pitrec.serve.errors import BadRequest, UnknownItems
from pitrec.serve.schemas import RecommendRequest


def test_recommend_each_answers_every_request_as_alone(pit_run):
    rec = Recommender.load(pit_run, persist=False)
    requests = [RecommendRequest(history=[1, 2, 3], k=4), RecommendRequest(history=[5], k=4),
                RecommendRequest(history=[6, 7], k=7, exclude_history=True),
                RecommendRequest(history=[1, "nope"], k=4),
                RecommendRequest(history=["nope"], k=4, ignore_unknown=True),
                RecommendRequest(history=[8, "nope"], k=3, ignore_unknown=True)]
    answers = rec.recommend_each(requests)
    assert isinstance(answers[3], UnknownItems) and isinstance(answers[4], BadRequest)
    for req, answer in zip(requests, answers):
        if isinstance(answer, Exception):
            continue
        alone = rec.recommend(req.history, req.k, req.exclude_history, req.ignore_unknown)
        assert [i.id for i in answer.items] == [i.id for i in alone.items] and answer.ignored == alone.ignored
        assert [i.score for i in answer.items] == pytest.approx([i.score for i in alone.items], abs=1e-5)
        assert answer.version == alone.version


def test_batches_form_while_the_worker_is_busy():
    seen = []

    def slow_echo(queries):
        seen.append(len(queries))
        time.sleep(0.05)
        return [q * 2 for q in queries]

    batcher = MicroBatcher(slow_echo, max_batch=8)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher.submit(i))) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    batcher.close()
    assert results == {i: 2 * i for i in range(20)}
    assert max(seen) > 1 and max(seen) <= 8 and sum(seen) == 20 == batcher.queries
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(1)


def test_a_failing_batch_fails_its_waiters_not_the_worker():
    def answer(queries):
        if "boom" in queries:
            raise ValueError("boom")
        return queries

    batcher = MicroBatcher(answer)
    with pytest.raises(ValueError, match="boom"):
        batcher.submit("boom")
    assert batcher.submit("fine") == "fine"
    batcher.close()
