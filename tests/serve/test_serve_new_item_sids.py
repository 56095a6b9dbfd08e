"""``pit.new_item_sids=content_neighbours``: an added item takes the primary SIDs of the trained
items whose text is nearest its own, weighted by similarity, is scored times
``pit.neighbour_item_weight``, and survives a restart through the journal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pitrec.serve import Recommender
from pitrec.serve.cold_start import content_neighbour_sids
from pitrec.serve.errors import NotSupported
from pitrec.serve.schemas import MAX_K

NEIGHBOURS = ["pit.new_item_sids=content_neighbours"]


def sids_of(rec: Recommender, item) -> dict[tuple, float]:
    return {tuple(s.sid): s.weight for s in rec.item(item).sids}


def test_nearest_primary_sids_in_order_of_similarity_shared_ones_once():
    trained = np.eye(4)[[0, 1, 2, 1, 0]]  # item 4 has item 0's text, item 3 item 1's
    primary = np.array([[0, 0], [0, 1], [1, 0], [0, 1], [2, 2]])  # items 1 and 3 share a SID
    new = np.array([0.8, 0.6, 0.0, 0.0])
    codes, weights = content_neighbour_sids(trained, new, primary, k=4, max_sids=4, edge_weight=2.0)
    # similarities: items 0 and 4 at .8, items 1 and 3 at .6 (one SID), item 2 at 0
    assert codes.tolist() == [[0, 0], [2, 2], [0, 1]]
    assert weights == pytest.approx([2.0, 2.0, 1.5])
    codes, _ = content_neighbour_sids(trained, new, primary, k=4, max_sids=2, edge_weight=1.0)
    assert codes.tolist() == [[0, 0], [2, 2]]
    codes, weights = content_neighbour_sids(trained, new, primary, k=1, max_sids=4, edge_weight=1.0)
    assert codes.tolist() == [[0, 0]] and weights.tolist() == [1.0]


@pytest.mark.parametrize("method", ["pit", "pit-cf"])  # pit-cf: content rows [text ; collaborative vector]
def test_an_item_with_a_trained_items_text_gets_that_items_primary_sid(trained_runs, method):
    rec = Recommender.load(trained_runs(method), persist=False, decoding=[*NEIGHBOURS, "pit.new_item_neighbours=1"])
    twin = 5
    title, attrs = rec.catalog.texts[twin], rec.catalog.attributes[twin]
    assert title
    others = [i for i in range(rec.catalog.n_base) if (rec.catalog.texts[i], rec.catalog.attributes[i]) == (title, attrs)]
    info = rec.add_item("twin", title, [rec.catalog.attribute_ids[a] for a in attrs])
    primaries = {tuple(rec.engine.index.primary_codes()[i]) for i in others}
    assert set(sids_of(rec, "twin")) <= primaries and len(info.sids) == 1


def test_neighbour_items_are_scored_times_their_own_weight_and_trained_items_keep_theirs(pit_run):
    history = [1, 2, 3]
    served = {}
    for weight in (1.0, 2.0):
        rec = Recommender.load(pit_run, persist=False, decoding=[*NEIGHBOURS, f"pit.neighbour_item_weight={weight}",
                                                                 "pit.added_item_weight=0.25"])
        rec.add_item("fresh", rec.catalog.texts[7] + " refill")
        served[weight] = {i.id: i.score for i in rec.recommend(history, k=MAX_K).items}
    assert "fresh" in served[1.0] and "fresh" in served[2.0]
    assert served[2.0]["fresh"] == pytest.approx(served[1.0]["fresh"] + math.log(2.0), abs=1e-5)
    trained = (set(served[1.0]) & set(served[2.0])) - {"fresh"}
    assert trained and all(served[2.0][i] == pytest.approx(served[1.0][i], abs=1e-6) for i in trained)


def test_neighbour_sids_come_back_from_the_journal(pit_run, serve_state):
    rec = Recommender.load(pit_run, state_dir=serve_state, decoding=NEIGHBOURS)
    rec.add_item("fresh", rec.catalog.texts[3])
    before = sids_of(rec, "fresh")
    again = Recommender.load(pit_run, state_dir=serve_state, decoding=NEIGHBOURS)
    assert sids_of(again, "fresh") == pytest.approx(before)
    assert 1 <= len(before) <= again.run.cfg.pit.max_sids_per_item


def test_a_run_without_csa_refuses_the_neighbour_rule_by_name(trained_runs):
    rec = Recommender.load(trained_runs("pit-no-csa"), persist=False, decoding=NEIGHBOURS)
    with pytest.raises(NotSupported, match="content_neighbours"):
        rec.add_item("fresh", "a brand new title")
