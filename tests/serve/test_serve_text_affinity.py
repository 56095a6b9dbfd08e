"""``pit.new_item_text_affinity``: an added item's log-score gains strength x the cosine of its text
to the user's last history item's (or the mean of its last few), per user; trained items' scores do
not move, and the term survives a restart (restored items are embedded again from their catalogue entries)."""

from __future__ import annotations

import pytest
import torch

from pitrec.data.batches import PAD
from pitrec.decoding.aggregate import aggregate_beams
from pitrec.decoding.pit_ranker import TextAffinity
from pitrec.index.trie import Trie
from pitrec.serve import Recommender
from pitrec.serve.loader import RunDirError
from pitrec.serve.schemas import MAX_K

HISTORY = [1, 2, 3]


def test_the_table_is_strength_times_cosine_to_the_last_history_item():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6], [0.0, 1.0]])
    affinity = TextAffinity(text, first_added=3, strength=2.0)
    table = affinity.table(torch.tensor([[PAD, 0, 2], [1, 0, 0]]))  # left-padded; last items 2 and 0
    assert table.flatten().tolist() == pytest.approx([2 * 0.96, 2 * 0.8, 2 * 0.8, 0.0])


def test_a_longer_history_compares_with_the_normalised_mean_of_its_last_items():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])
    histories = torch.tensor([[0, 0, 1], [PAD, PAD, 1], [PAD, PAD, PAD]])  # the last is an empty history
    two = TextAffinity(text, first_added=2, strength=1.0, history=2).table(histories)
    mean = 0.5 ** 0.5  # the unit mean of rows 0 and 1 is (1, 1) / sqrt 2
    assert two[0].tolist() == pytest.approx([mean * 1.4, mean * 1.4])
    assert two[1].tolist() == pytest.approx([0.8, 0.6])  # PAD counts for nothing: row 1 alone
    assert two[2].tolist() == [0.0, 0.0]  # no history, no term (not item 0's)
    longer = TextAffinity(text, first_added=2, strength=1.0, history=50).table(histories)
    assert longer[0].tolist() == pytest.approx([2.0 / 5 ** 0.5, 2.2 / 5 ** 0.5])  # (2, 1) / sqrt 5
    last = TextAffinity(text, first_added=2, strength=1.0).table(histories)
    assert last[:2].flatten().tolist() == pytest.approx([0.8, 0.6, 0.8, 0.6])


def test_aggregation_adds_the_users_own_term_to_added_items_only():
    trie = Trie.build(torch.tensor([[0, 0], [0, 1], [1, 0]]).numpy(), [2, 2], n_items=3)
    leaves = trie.lookup(torch.tensor([[0, 0], [0, 1], [1, 0]])).repeat(2, 1)  # two users, all three SIDs
    log_probs = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]]))
    table = torch.tensor([[0.0], [1.0]])  # item 2 is the added one: +0 for user 0, +1 for user 1
    items, scores = aggregate_beams(leaves, log_probs, trie, 3, "sum", added_log_prior=(2, table))
    assert items.tolist() == [[0, 1, 2], [2, 0, 1]]
    assert scores[1, 0].item() == pytest.approx(torch.log(torch.tensor(0.2)).item() + 1.0)
    with pytest.raises(ValueError, match="added_log_prior"):
        aggregate_beams(leaves, log_probs, trie, 3, "sum", added_log_prior=(1, table))


def _scores(rec: Recommender) -> dict:
    return {i.id: i.score for i in rec.recommend(HISTORY, k=MAX_K, explain=False).items}


def _add_two(rec: Recommender) -> None:
    last = rec.catalog.dense(HISTORY[-1])
    rec.add_item("twin", rec.catalog.texts[last], [rec.catalog.attribute_ids[a] for a in rec.catalog.attributes[last]])
    rec.add_item("other", rec.catalog.texts[11] + " travel size")


def test_added_items_gain_strength_times_cosine_and_trained_items_keep_their_scores(pit_run):
    served, recs = {}, {}
    for strength in (0.0, 1.5):
        rec = Recommender.load(pit_run, persist=False, decoding=[f"pit.new_item_text_affinity={strength}",
                                                                 "pit.added_item_weight=1"])
        _add_two(rec)
        served[strength], recs[strength] = _scores(rec), rec
    rows = recs[1.5].engine.models.item_text_rows().first(recs[1.5].engine.n_items)
    last = recs[1.5].catalog.dense(HISTORY[-1])
    for added in ("twin", "other"):
        assert added in served[0.0] and added in served[1.5]
        cosine = float(rows[recs[1.5].catalog.dense(added)] @ rows[last])
        assert served[1.5][added] == pytest.approx(served[0.0][added] + 1.5 * cosine, abs=1e-4)
    assert float(rows[recs[1.5].catalog.dense("twin")] @ rows[last]) == pytest.approx(1.0, abs=1e-3)
    trained = (set(served[0.0]) & set(served[1.5])) - {"twin", "other"}
    assert trained and all(served[1.5][i] == pytest.approx(served[0.0][i], abs=1e-6) for i in trained)


def test_the_served_history_setting_moves_added_items_by_the_profile_cosine(pit_run):
    served, recs = {}, {}
    for history in (1, 3):
        rec = Recommender.load(pit_run, persist=False, decoding=["pit.new_item_text_affinity=1",
                                                                 f"pit.new_item_text_affinity_history={history}",
                                                                 "pit.added_item_weight=1"])
        _add_two(rec)
        served[history], recs[history] = _scores(rec), rec
    rows = recs[3].engine.models.item_text_rows().first(recs[3].engine.n_items)
    profile = torch.nn.functional.normalize(rows[[recs[3].catalog.dense(i) for i in HISTORY]].sum(0), dim=0)
    last = rows[recs[3].catalog.dense(HISTORY[-1])]
    for added in ("twin", "other"):
        row = rows[recs[3].catalog.dense(added)]
        assert served[3][added] - served[1][added] == pytest.approx(float(row @ profile - row @ last), abs=1e-4)
    assert float(rows[recs[3].catalog.dense("twin")] @ profile) < 0.999  # the profile is not the last item


def test_items_restored_after_a_restart_get_the_same_term(pit_run, serve_state):
    decoding = ["pit.new_item_text_affinity=2", "pit.added_item_weight=1"]
    rec = Recommender.load(pit_run, state_dir=serve_state, decoding=decoding)
    _add_two(rec)
    before = _scores(rec)
    again = Recommender.load(pit_run, state_dir=serve_state, decoding=decoding)
    assert again.engine.models.text_rows is None  # nothing embedded yet: the first ranking does it
    assert _scores(again) == pytest.approx(before, abs=1e-4)
    again.compact()
    snapshot = Recommender.load(pit_run, state_dir=serve_state, decoding=decoding)
    assert _scores(snapshot) == pytest.approx(before, abs=1e-4)


def test_a_run_without_csa_refuses_the_affinity_at_load(trained_runs):
    with pytest.raises(RunDirError, match="new_item_text_affinity"):  # the CLI reports it as a load error
        Recommender.load(trained_runs("pit-no-csa"), persist=False, decoding=["pit.new_item_text_affinity=1"])
