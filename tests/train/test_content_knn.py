"""Content kNN against hand-computed cosine scores, and the run directory it serves from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pitrec.data.batches import PAD
from pitrec.serve import Recommender
from pitrec.serve.loader import RunDirError
from pitrec.train.recipes.content_knn import COUNTS_FILE, VECTORS_FILE, ContentKNNRanker, unit_rows

# 5 items in 2-D: 0 and 1 point along x, 2 along y, 3 diagonal, 4 along -x
VECTORS = np.array([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0], [1.0, 1.0], [-1.0, 0.0]])
COUNTS = torch.tensor([1, 5, 3, 0, 2])


def _ranker(last_items: int, decay: float = 0.5) -> ContentKNNRanker:
    return ContentKNNRanker(torch.from_numpy(unit_rows(VECTORS)), COUNTS, last_items, decay)


def test_the_last_item_queries_its_cosine_neighbours_and_is_not_returned():
    history = torch.tensor([[PAD, 2, 0]])  # latest item 0 (along x)
    scores = _ranker(1).scores(history)[0]
    r = 1 / np.sqrt(2)
    expected = [float("-inf"), 1.0, 0.0, r, -1.0]
    assert scores.tolist() == pytest.approx(expected)
    assert _ranker(1).rank(history, 3).tolist() == [[1, 3, 2]]


def test_earlier_items_add_with_decaying_weight_and_padding_adds_nothing():
    history = torch.tensor([[2, 0], [PAD, 0]])  # user 0: item 2 then 0; user 1: only item 0
    scores = _ranker(2, decay=0.25).scores(history)
    r = 1 / np.sqrt(2)
    # user 0: cos(., item 0) + 0.25 cos(., item 2); both query items excluded
    assert scores[0].tolist() == pytest.approx([float("-inf"), 1.0, float("-inf"), r + 0.25 * r, -1.0])
    assert scores[1].tolist() == pytest.approx([float("-inf"), 1.0, 0.0, r, -1.0])


def test_a_user_without_history_gets_the_popularity_order_with_ties_by_item_id():
    ranker = _ranker(3)
    assert ranker.rank(torch.tensor([[PAD, PAD, PAD]]), 5).tolist() == [[1, 2, 4, 0, 3]]
    tied = ContentKNNRanker(torch.from_numpy(unit_rows(VECTORS)), torch.tensor([2, 7, 2, 7, 2]), 1, 0.5)
    assert tied.rank(torch.tensor([[PAD]]), 5).tolist() == [[1, 3, 0, 2, 4]]
    with_history = ranker.rank(torch.tensor([[PAD, PAD, PAD], [PAD, PAD, 0]]), 2)
    assert with_history.tolist() == [[1, 2], [1, 3]]


def test_history_masking_on_request_removes_every_history_item():
    history = torch.tensor([[3, 1, 0]])  # last_items=1: only item 0 queries, but all three are history
    assert _ranker(1).rank(history, 2, exclude_history=True).tolist() == [[2, 4]]


def test_the_served_run_needs_its_vectors_and_names_what_is_missing(trained_runs, tmp_path):
    import shutil

    run = tmp_path / "knn"
    shutil.copytree(trained_runs("content-knn"), run)
    rec = Recommender.load(run, persist=False)
    assert rec.engine.method == "content-knn" and len(rec.recommend([1, 2], k=4).items) == 4
    np.save(run / COUNTS_FILE, np.zeros(3, dtype=np.int64))
    with pytest.raises(RunDirError, match="do not match catalog"):
        Recommender.load(run, persist=False)
    (run / VECTORS_FILE).write_bytes(b"\x93NUMPY")  # a truncated file
    with pytest.raises(RunDirError, match=VECTORS_FILE):
        Recommender.load(run, persist=False)
    (run / VECTORS_FILE).unlink()
    with pytest.raises(RunDirError, match=VECTORS_FILE):
        Recommender.load(run, persist=False)
