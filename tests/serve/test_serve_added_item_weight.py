"""``pit.added_item_weight`` served: an item added after training has its score multiplied by
it, trained items keep theirs, and a weight that is not positive is refused."""

from __future__ import annotations

import math

import pytest

from pitrec.config import ConfigError
from pitrec.serve import Recommender
from pitrec.serve.schemas import MAX_K


def test_served_added_item_scores_are_multiplied_by_the_weight_and_trained_items_keep_theirs(pit_run):
    history = [1, 2, 3]
    served = {}
    for weight in (1.0, 0.5):
        rec = Recommender.load(pit_run, persist=False, decoding=[f"pit.added_item_weight={weight}"])
        assert rec.stats().decoding["added_item_weight"] == weight
        rec.add_item("fresh", "a brand new title")
        served[weight] = {i.id: i.score for i in rec.recommend(history, k=MAX_K).items}
    assert "fresh" in served[1.0] and "fresh" in served[0.5]  # the tiny index is covered by the beams
    assert served[0.5]["fresh"] == pytest.approx(served[1.0]["fresh"] + math.log(0.5), abs=1e-5)
    trained = set(served[1.0]) - {"fresh"}
    assert trained and all(served[0.5][i] == pytest.approx(served[1.0][i], abs=1e-6) for i in trained & set(served[0.5]))


def test_a_weight_that_is_not_positive_is_refused(pit_run):
    with pytest.raises((ConfigError, ValueError), match="added_item_weight"):
        Recommender.load(pit_run, persist=False, decoding=["pit.added_item_weight=0"])
