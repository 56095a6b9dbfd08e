"""Online updates of PIT's index: a new item is recommendable at once, feedback records the
training's minimum-loss SID choice, and accepted updates survive a restart (log replay over the
last snapshot, compaction, a torn log line)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from pitrec.data.batches import PAD
from pitrec.serve import Recommender
from pitrec.serve.errors import NotSupported
from pitrec.serve.loader import RunDirError
from pitrec.serve.schemas import MAX_K


def everything(rec: Recommender, history) -> list:
    """k large enough that the beams cover every SID of the tiny index: every item comes back."""
    return [i.id for i in rec.recommend(history, k=MAX_K).items]


def test_a_new_item_is_recommendable_at_once(pit_run):
    rec = Recommender.load(pit_run, persist=False)
    v0, pc = rec.version, rec.run.cfg.pit
    assert "fresh" not in everything(rec, [1, 2, 3])
    attribute = rec.catalog.attribute_ids[0]
    info = rec.add_item("fresh", "a brand new title", attributes=[attribute])
    assert info.version == v0 + 1 == rec.version and info.added_online and info.attributes == [attribute]
    assert 1 <= len(info.sids) <= pc.max_sids_per_item
    assert all(0 <= c < size for s in info.sids for c, size in zip(s.sid, rec.engine.index.codebook_sizes))
    answer = rec.recommend([1, 2, 3], k=MAX_K)
    assert answer.version == v0 + 1 and "fresh" in [i.id for i in answer.items]
    assert rec.recommend(["fresh", 2], k=3).items  # and usable in a history
    assert rec.stats().items_added == 1 and rec.stats().items == 41


def test_new_item_text_is_embedded_in_the_runs_space(pit_run):
    """The refitted encoder reproduces the content vectors the run was trained on, so an item
    re-added with a known item's text and attributes gets that item's content vector."""
    rec = Recommender.load(pit_run, persist=False)
    engine = rec.engine
    embedder = engine.models.new_item_embedder(rec.catalog)
    stored = engine.models.csa.item_embedding.content.numpy()
    for item in (0, 17, 39):
        vector = embedder(rec.catalog, rec.catalog.texts[item], rec.catalog.attributes[item], "copy")
        np.testing.assert_allclose(vector[0], stored[item], atol=1e-4)


def test_new_items_of_a_run_on_the_tokenizer_input_get_a_zero_collaborative_part(trained_runs):
    """pit.item_content=tokenizer_input: the run's content rows are [unit text ; collaborative]. A
    known item's text comes back as its unit text vector beside zeros (it has no interactions
    yet), and the new item is tokenised and recommendable."""
    rec = Recommender.load(trained_runs("pit-cf"), persist=False)
    engine = rec.engine
    stored = engine.models.csa.item_embedding.content.numpy()
    text = stored.shape[1] - 4
    assert text > 0 and np.abs(stored[:, text:]).sum() > 0  # catalogue items do carry a collaborative part
    np.testing.assert_allclose(np.linalg.norm(stored[:, :text], axis=1), 1.0, atol=1e-5)
    embedder = engine.models.new_item_embedder(rec.catalog)
    for item in (0, 17, 39):
        vector = embedder(rec.catalog, rec.catalog.texts[item], rec.catalog.attributes[item], "copy")[0]
        np.testing.assert_allclose(vector[:text], stored[item, :text], atol=1e-4)
        assert not vector[text:].any()
    info = rec.add_item("fresh", "a brand new title")
    assert info.added_online and info.sids
    assert "fresh" in everything(rec, [1, 2, 3])


def test_feedback_records_the_minimum_loss_sid(pit_run):
    rec = Recommender.load(pit_run, persist=False)
    rec.add_item("multi", "yet another title")
    item = rec.catalog.dense("multi")
    history = [5, 6, 7]
    engine = rec.engine
    before = {tuple(s.sid): s.weight for s in rec.item("multi").sids}
    assert len(before) >= 2, "the premise: I2T proposed several SIDs"
    # the expected choice, computed here: -log P(SID | history) + log(items holding the SID)
    cand, mask, _ = engine.index.candidates(np.array([item]), rec.run.cfg.pit.candidates)
    h = torch.tensor([[rec.catalog.dense(i) for i in history]])
    u2t = engine.models.u2t
    with torch.no_grad():
        nll = u2t.candidate_nll(u2t.encode(engine.history_codes[h], h == PAD), torch.from_numpy(cand))[0].numpy()
    cost = nll + np.log(np.maximum(engine.index.sid_item_counts(cand[0]), 1))
    expected = cand[0, np.argmin(np.where(mask[0], cost, np.inf))].tolist()
    result = rec.feedback(history, "multi")
    assert result.chosen_sid == expected and result.version == engine.version + 1 == rec.version
    after = {tuple(s.sid): s.weight for s in result.sids}
    assert after[tuple(expected)] == before[tuple(expected)] + 1
    others = [k for k in before if list(k) != expected]
    assert {k: after[k] for k in others} == {k: before[k] for k in others} and set(after) == set(before)
    assert rec.stats().feedback_accepted == 1


def state_of(rec: Recommender) -> dict:
    return {"version": rec.version, "items": len(rec.catalog),
            "a": rec.item("a").model_dump(), "5": rec.item(5).model_dump(),
            "recs": rec.recommend([1, 2, "a"], k=8).model_dump(), "counters": dict(rec.counters)}


def test_accepted_updates_survive_a_restart(pit_run, serve_state):
    rec = Recommender.load(pit_run, state_dir=serve_state)
    rec.add_item("a", "first new title")
    rec.add_item(7777, "second new title")
    rec.feedback([1, 2], "a")
    rec.feedback([3, 4], 5)
    expected = state_of(rec)
    log = serve_state / "updates.jsonl"
    assert len(log.read_text().splitlines()) == 4
    del rec  # no close(): as after a crash, only the log holds the updates
    again = Recommender.load(pit_run, state_dir=serve_state)
    assert state_of(again) == expected

    with open(log, "a") as fh:  # a crash in the middle of appending an update
        fh.write('{"op": "add_item", "ver')
    torn = Recommender.load(pit_run, state_dir=serve_state)
    assert state_of(torn) == expected
    torn.add_item("b", "third new title")  # appended on a fresh line
    assert [json.loads(line)["version"] for line in log.read_text().splitlines()] == list(
        range(expected["version"] - 3, expected["version"] + 2))

    torn.close()  # compaction: snapshot, empty log
    assert log.read_text() == "" and (serve_state / "snapshot" / "snapshot.json").is_file()
    after_compaction = Recommender.load(pit_run, state_dir=serve_state)
    assert after_compaction.version == expected["version"] + 1 and after_compaction.item("b").added_online
    assert after_compaction.item("a").sids == torn.item("a").sids and after_compaction.item(5).sids == torn.item(5).sids
    assert after_compaction.counters == torn.counters == {"items_added": 3, "feedback_accepted": 2}
    after_compaction.feedback([1], "b")
    final = state_of(after_compaction)
    assert state_of(Recommender.load(pit_run, state_dir=serve_state)) == final


def test_a_crash_between_snapshot_and_log_reset_replays_nothing_twice(pit_run, serve_state):
    rec = Recommender.load(pit_run, state_dir=serve_state)
    rec.add_item("a", "new title")
    rec.feedback([1], "a")
    log = serve_state / "updates.jsonl"
    logged = log.read_text()
    expected = state_of(rec)
    rec.compact()
    log.write_text(logged)  # the old records are back, as if the reset never happened
    assert state_of(Recommender.load(pit_run, state_dir=serve_state)) == expected


def test_periodic_compaction(pit_run, serve_state):
    rec = Recommender.load(pit_run, state_dir=serve_state, compact_every=2)
    rec.add_item("a", "new title")
    assert rec.stats().persistence["log_records"] == 1
    rec.feedback([1], "a")
    assert rec.stats().persistence["log_records"] == 0
    meta = json.loads((serve_state / "snapshot" / "snapshot.json").read_text())
    assert meta["version"] == rec.version and meta["counters"] == {"items_added": 1, "feedback_accepted": 1}


def test_serving_state_of_another_training_state_is_refused(pit_run, serve_state):
    rec = Recommender.load(pit_run, state_dir=serve_state)
    rec.add_item("a", "new title")
    rec.close()
    path = serve_state / "snapshot" / "snapshot.json"
    meta = json.loads(path.read_text())
    meta["base"]["version"] += 1
    path.write_text(json.dumps(meta))
    with pytest.raises(RunDirError, match="another training state"):
        Recommender.load(pit_run, state_dir=serve_state)


def test_a_corrupt_log_record_is_named(pit_run, serve_state):
    rec = Recommender.load(pit_run, state_dir=serve_state)
    rec.add_item("a", "new title")
    log = serve_state / "updates.jsonl"
    record = json.loads(log.read_text())
    record["codes"] = [[99, 99, 99]]
    log.write_text(json.dumps(record) + "\n")
    with pytest.raises(RunDirError, match="updates.jsonl record 1"):
        Recommender.load(pit_run, state_dir=serve_state)


def test_pit_without_csa_tokenises_new_items_from_the_content_vector(trained_runs):
    rec = Recommender.load(trained_runs("pit-no-csa"), persist=False)
    assert rec.engine.models.csa is None
    info = rec.add_item("plain", "content only title")
    assert info.sids and "plain" in everything(rec, [1, 2])


def test_a_run_whose_text_encoder_cannot_be_reproduced_refuses_new_items(pit_run, tmp_path):
    """A changed TF-IDF seed gives another SVD basis: the check against the saved content
    vectors catches it, and the service answers that it cannot embed new text (every time)."""
    for key, value, message in (("tfidf_seed", 99, "does not reproduce"), ("encoder", "npy", "precomputed")):
        run = tmp_path / f"run-{key}"
        shutil.copytree(pit_run, run)
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["embed"][key] = value
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
        rec = Recommender.load(run, persist=False)
        for _ in range(2):
            with pytest.raises(NotSupported, match=message):
                rec.add_item("new", "a title")
        assert rec.version == rec.engine.version and len(rec.catalog) == 40
        assert rec.recommend([1, 2], k=3).items  # serving is unaffected
