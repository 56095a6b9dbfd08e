"""The Python API: a run directory alone rebuilds each method, the served rankings are the ones
that were evaluated, and bad input is an error that names it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pitrec.config import config_from_dict
from pitrec.eval.metrics import rank_metrics
from pitrec.serve import Recommender
from pitrec.serve.errors import BadRequest, DuplicateItem, ItemNotFound, NotSupported, UnknownItems
from pitrec.serve.loader import RunDirError
from pitrec.train.api import prepare_data
from pitrec.train.run_dir import RunDir


def raw_test_split(run_dir: Path):
    """The run's test histories (raw ids) and targets (dense); the test reads the data, the service must not."""
    data, split = prepare_data(config_from_dict(RunDir(run_dir).read_config_dict()))
    return data, [data.raw_items(h) for h in split.test_history], split.test_target


def load_without_dataset(monkeypatch, run: Path, **kwargs) -> Recommender:
    def refuse(*_, **__):
        raise AssertionError("the service tried to load the dataset")

    with monkeypatch.context() as m:
        m.setattr("pitrec.data.readers.load_interactions", refuse)
        m.setattr("pitrec.train.api.load_interactions", refuse)
        return Recommender.load(run, **kwargs)


@pytest.mark.parametrize("method", ["pit", "tiger", "sasrec", "content-knn", "tiger-ids", "pit-ids"])
def test_served_rankings_reproduce_the_evaluated_test_metrics(trained_runs, monkeypatch, method):
    run = trained_runs(method)
    rec = load_without_dataset(monkeypatch, run, persist=False)
    assert rec.engine.method == method.removesuffix("-ids")
    if method.endswith("-ids"):  # the served generator reads the trained id rows
        u2t = rec.engine.model if method == "tiger-ids" else rec.engine.models.u2t
        assert u2t.item_emb is not None and u2t.item_emb.weight[:-1].abs().sum() > 0
    expected = json.loads((run / "test_metrics.json").read_text())["test"]
    data, histories, targets = raw_test_split(run)
    out = rec.recommend_many(histories, k=20)
    topk = torch.full((len(histories), 20), -1, dtype=torch.long)
    for row, result in enumerate(out.results):
        scores = [item.score for item in result.items]
        assert scores == sorted(scores, reverse=True)
        dense = data.dense_items([item.id for item in result.items])
        topk[row, :len(dense)] = torch.tensor(dense, dtype=torch.long)
    metrics = {k: float(v.mean()) for k, v in rank_metrics(topk, torch.from_numpy(targets), (10, 20)).items()}
    for name in ("recall@10", "ndcg@10", "recall@20", "ndcg@20"):
        assert metrics[name] == pytest.approx(expected[name], abs=1e-12), name


def test_generative_answers_carry_their_sids(trained_runs):
    pit = Recommender.load(trained_runs("pit"), persist=False)
    assert pit.run.cfg.pit.aggregation == "weighted"
    out = pit.recommend([1, 2, 3], k=5)
    assert out.method == "pit" and out.version == pit.version and len(out.items) == 5
    for item in out.items:
        assert item.sids and all(len(s.sid) == len(pit.engine.index.codebook_sizes) for s in item.sids)
        # the score is a log-sum-exp of log P(SID | user) + log q(SID | item) over the SIDs the
        # beams reached: at least one term, at most all of the item's SIDs
        w = np.array([s.weight for s in item.sids]) + 1e-6
        terms = np.array([s.log_prob for s in item.sids]) + np.log(w / w.sum())
        assert terms.min() - 1e-4 <= item.score <= np.logaddexp.reduce(terms) + 1e-4
    tiger = Recommender.load(trained_runs("tiger"), persist=False)
    for item in tiger.recommend([1, 2], k=3).items:
        assert len(item.sids) == 1 and item.sids[0].log_prob == pytest.approx(item.score)  # the beam's score


def test_popularity_is_served_from_its_counts(trained_runs):
    rec = Recommender.load(trained_runs("popularity"), persist=False)
    data, _, _ = raw_test_split(trained_runs("popularity"))
    out = rec.recommend([1], k=5)
    counts = np.bincount(np.concatenate([s[:-2] for s in data.sequences]), minlength=data.n_items)
    assert [data.item_index[i.id] for i in out.items] == list(np.argsort(-counts, kind="stable")[:5])
    assert out.items[0].score == pytest.approx(counts.max())


def test_unknown_ids_are_named_or_dropped_on_request(pit_run):
    rec = Recommender.load(pit_run, persist=False)
    with pytest.raises(UnknownItems, match="'nope'.*ignore_unknown") as err:
        rec.recommend([1, "nope", 2], k=3)
    assert err.value.ids == ["nope"]
    out = rec.recommend([1, "nope", 2], k=3, ignore_unknown=True)
    assert out.ignored == ["nope"] and out.items == rec.recommend([1, 2], k=3).items
    assert rec.recommend(["1", "2"], k=3).items == rec.recommend([1, 2], k=3).items  # ids match by string form
    with pytest.raises(BadRequest, match="none of its 1 item ids is known"):
        rec.recommend(["nope"], k=3, ignore_unknown=True)
    with pytest.raises(UnknownItems, match="histories\\[1\\]"):
        rec.recommend_many([[1], [2, "x"]], k=3)


@pytest.mark.parametrize("bad", [0, -1, 10_000, 2.5, "3", True, None])
def test_k_out_of_range_or_of_the_wrong_type(pit_run, bad):
    rec = Recommender.load(pit_run, persist=False)
    with pytest.raises(BadRequest, match="k must be an integer"):
        rec.recommend([1], k=bad)


def test_empty_or_malformed_histories(pit_run):
    rec = Recommender.load(pit_run, persist=False)
    with pytest.raises(BadRequest, match="history is empty"):
        rec.recommend([], k=3)
    with pytest.raises(BadRequest, match="must be a list"):
        rec.recommend("1,2", k=3)
    with pytest.raises(BadRequest, match="histories is empty"):
        rec.recommend_many([], k=3)


def test_batch_equals_one_by_one_and_exclusion_works(pit_run):
    rec = Recommender.load(pit_run, persist=False)
    histories = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 10, 11, 12]]
    batch = rec.recommend_many(histories, k=4, exclude_history=True)
    for history, row in zip(histories, batch.results):
        single = rec.recommend(history, k=4, exclude_history=True)
        assert [i.id for i in row.items] == [i.id for i in single.items]
        assert [i.score for i in row.items] == pytest.approx([i.score for i in single.items], abs=1e-5)
        used = set(history[-rec.max_history:])
        assert not used & {i.id for i in row.items} and len(row.items) == 4


def test_items_and_stats(pit_run):
    rec = Recommender.load(pit_run, persist=False)
    info = rec.item(3)
    assert info.id == 3 and not info.added_online and info.sids and info.version == rec.version
    weights = [s.weight for s in info.sids]
    assert weights == sorted(weights, reverse=True)
    with pytest.raises(ItemNotFound):
        rec.item("nope")
    stats = rec.stats()
    assert stats.items == 40 and stats.method == "pit" and stats.edges >= 40 and stats.sids >= 1
    assert set(stats.collisions) >= {"colliding_sid_share", "primary_collision_share"}


def test_duplicate_and_bad_new_items(pit_run):
    rec = Recommender.load(pit_run, persist=False)
    with pytest.raises(DuplicateItem, match="already exists"):
        rec.add_item("1", "a title")  # same string form as the catalogue's integer id 1
    with pytest.raises(BadRequest, match="unknown attribute"):
        rec.add_item("new", "a title", attributes=["no-such-attribute"])
    with pytest.raises(BadRequest, match="item id must be"):
        rec.add_item(True, "a title")
    assert rec.version == rec.engine.version and len(rec.catalog) == 40  # nothing half-added


def test_methods_without_an_online_index_say_so(trained_runs):
    for method in ("tiger", "sasrec"):
        rec = Recommender.load(trained_runs(method), persist=False)
        with pytest.raises(NotSupported, match="cannot"):
            rec.add_item("new", "a title")
        with pytest.raises(NotSupported, match="feedback"):
            rec.feedback([1, 2], 3)


def test_a_broken_run_directory_is_named(tmp_path, pit_run):
    with pytest.raises(RunDirError, match="config.yaml"):
        Recommender.load(tmp_path, persist=False)
    broken = tmp_path / "run"
    shutil.copytree(pit_run, broken, ignore=shutil.ignore_patterns("serving"))
    (broken / "catalog.json.gz").unlink()
    with pytest.raises(RunDirError, match="catalog.json.gz"):
        Recommender.load(broken, persist=False)


def test_the_serve_command_refuses_a_directory_that_is_not_a_run(tmp_path):
    from typer.testing import CliRunner

    from pitrec.cli import app

    result = CliRunner().invoke(app, ["serve", str(tmp_path), "--no-persist"])
    assert result.exit_code == 2 and "config.yaml" in result.output


@pytest.mark.parametrize("args,command,expected", [
    ([], "serve", True), (["--no-retain-memory"], "serve", False),
    ([], "recommend", None), (["--retain-memory"], "recommend", True),
])
def test_serving_commands_pass_their_allocator_choice_to_the_loader(tmp_path, monkeypatch, args, command, expected):
    """The service retains freed memory unless told not to (its own process); offline
    ``recommend`` keeps the run's setting unless told. The loader is stopped before it configures
    this test process."""
    from typer.testing import CliRunner

    from pitrec.cli import app
    from pitrec.serve.loader import RunDirError

    seen = {}

    def fake_load(run_dir, **kwargs):
        seen.update(kwargs)
        raise RunDirError("stopped by the test")

    monkeypatch.setattr(Recommender, "load", fake_load)
    extra = ["--input", str(tmp_path), "--out", str(tmp_path / "o.csv")] if command == "recommend" else ["--no-persist"]
    result = CliRunner().invoke(app, [command, str(tmp_path), *extra, *args])
    assert "stopped by the test" in result.output, result.output
    assert seen["retain_memory"] is expected


@pytest.mark.parametrize("method", ["pit", "tiger"])
def test_bfloat16_generator_serves_valid_rankings_close_to_float32(trained_runs, method):
    """dtype=bfloat16 only changes the generator's precision: every answer is still k distinct
    catalogue items reached through valid SIDs, new items and feedback still work (PIT), and the
    rankings stay close to float32's (near-ties may flip, so closeness, not equality)."""
    run = trained_runs(method)
    fast = Recommender.load(run, persist=False, dtype="bfloat16")
    exact = Recommender.load(run, persist=False)
    generator = fast.engine.model if method == "tiger" else fast.engine.models.u2t
    assert {p.dtype for p in generator.parameters()} == {torch.bfloat16}
    data, histories, _ = raw_test_split(run)
    a = fast.recommend_many(histories, k=5).results
    b = exact.recommend_many(histories, k=5).results
    catalogue = set(data.item_ids)
    overlap = []
    for ra, rb in zip(a, b):
        ids = [item.id for item in ra.items]
        assert len(ids) == 5 == len(set(ids)) and set(ids) <= catalogue
        assert all(item.sids and np.isfinite(item.score) for item in ra.items)
        overlap.append(len(set(ids) & {item.id for item in rb.items}) / 5)
    assert np.mean(overlap) > 0.8, np.mean(overlap)
    if method == "pit":
        fast.add_item("bf16-new", title="a brand new item", attributes=[])
        assert fast.item("bf16-new").sids
        assert fast.feedback(histories[0], histories[1][-1]).version == fast.version


def test_bfloat16_is_refused_for_score_rankers_and_unknown_dtypes(trained_runs):
    with pytest.raises(ValueError, match="generative methods"):
        Recommender.load(trained_runs("sasrec"), persist=False, dtype="bfloat16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        Recommender.load(trained_runs("tiger"), persist=False, dtype="float16")


@pytest.mark.parametrize("source", ["frontier", "one_step", "decoded"])
@pytest.mark.parametrize("last_level", ["model", "renormalized"])
def test_pit_explanations_equal_teacher_forced_scores_of_every_sid(trained_runs, last_level, source, monkeypatch):
    """Single-SID items reuse their beam's score; multi-SID items' other SIDs are read off the
    search's last-level frontier, else scored one decoder step from the level before, else decoded
    from the start (each source forced here by hiding the ones before it). Every way, each reported
    log P(SID | history) is the model's teacher-forced log-probability (with the last level
    renormalised within the index's SIDs after the prefix, under that rule)."""
    from pitrec.data.batches import PAD
    from pitrec.decoding import explain_scores
    from pitrec.models.user_to_token import Memory

    def unreached(_model, _ranked, users, *args):
        return torch.full((len(users),), float("-inf")), torch.zeros(len(users), dtype=torch.bool)

    hidden = {"frontier": [], "one_step": ["_from_frontier"], "decoded": ["_from_frontier", "_one_step"]}[source]
    for name in hidden:
        monkeypatch.setattr(explain_scores, name, unreached if name == "_one_step" else
                            lambda _ranked, users, *args: torch.full((len(users),), float("-inf")))
    rec = Recommender.load(trained_runs("pit"), persist=False, last_level=last_level)
    engine, m = rec.engine, rec.engine.models
    data, histories, _ = raw_test_split(trained_runs("pit"))
    results = rec.recommend_many(histories[:30], k=8).results
    kinds = set()
    for history, result in zip(histories[:30], results):
        dense = torch.tensor([data.dense_items(history)[-rec.max_history:]])
        memory = m.u2t.encode(engine.history_codes[dense], dense == PAD)
        for item in result.items:
            sids = torch.tensor([[s.sid for s in item.sids]])
            last_valid = engine.trie.last_level_mask(sids) if last_level == "renormalized" else None
            expected = -m.u2t.candidate_nll(Memory(memory.states, memory.valid), sids, last_valid=last_valid)[0]
            got = torch.tensor([s.log_prob for s in item.sids])
            assert torch.allclose(got, expected, atol=1e-4), (item.id, got, expected)
            kinds.add(len(item.sids) > 1)
    assert kinds == {True, False}  # both kinds of item were explained
    counts = engine.models.explain_sources
    assert getattr(counts, source) > 0
    # under the renormalised last level the level before scores SIDs alone on their prefix without a step
    level_before = {"one_step", "alone"} if last_level == "renormalized" else {"one_step"}
    allowed = level_before if source == "one_step" else {source}
    assert {name for name in ("frontier", "one_step", "alone", "decoded") if getattr(counts, name)} <= allowed


def test_explain_false_returns_the_same_ranking_without_the_scoring_pass(trained_runs):
    rec = Recommender.load(trained_runs("pit"), persist=False)
    _, histories, _ = raw_test_split(trained_runs("pit"))
    full = rec.recommend_many(histories[:30], k=8).results
    fast = rec.recommend_many(histories[:30], k=8, explain=False).results
    multi = 0
    for a, b in zip(full, fast):
        assert [(i.id, i.score) for i in a.items] == [(i.id, i.score) for i in b.items]
        for ia, ib in zip(a.items, b.items):
            assert sorted(s.sid for s in ia.sids) == sorted(s.sid for s in ib.sids)
            if len(ib.sids) > 1:
                multi += 1
                assert all(s.log_prob is None for s in ib.sids)
            else:
                assert ib.sids[0].log_prob == pytest.approx(ia.sids[0].log_prob)
    assert multi > 0
    one = rec.recommend(histories[0], k=8, explain=False)
    assert [i.id for i in one.items] == [i.id for i in fast[0].items]


def test_tiger_served_with_the_renormalized_last_level_reproduces_its_re_evaluation(trained_runs):
    """``last_level`` is a decoding setting: the service and ``pitrec eval`` apply the same rule."""
    from pitrec.train.evaluate_run import evaluate_run

    run = trained_runs("tiger")
    rec = Recommender.load(run, persist=False, last_level="renormalized")
    assert rec.run.cfg.tiger.last_level == "renormalized"
    expected = evaluate_run(run, "test", ["tiger.last_level=renormalized", "run.progress=false"])["metrics"]
    assert_served_metrics_equal(rec, run, expected)
    with pytest.raises(ValueError, match="applies to tiger and pit runs"):
        Recommender.load(trained_runs("sasrec"), persist=False, last_level="renormalized")
    with pytest.raises(ValueError, match="last_level"):
        Recommender.load(run, persist=False, last_level="softmax")


def assert_served_metrics_equal(rec: Recommender, run: Path, expected: dict) -> list:
    """The service's top 20 for every test user, scored like the evaluator; returns the results."""
    data, histories, targets = raw_test_split(run)
    results = rec.recommend_many(histories, k=20).results
    topk = torch.full((len(histories), 20), -1, dtype=torch.long)
    for row, result in enumerate(results):
        assert len({item.id for item in result.items}) == len(result.items) == 20
        topk[row] = torch.tensor(data.dense_items([item.id for item in result.items]), dtype=torch.long)
    metrics = {k: float(v.mean()) for k, v in rank_metrics(topk, torch.from_numpy(targets), (10, 20)).items()}
    for name in ("recall@10", "ndcg@10", "recall@20", "ndcg@20"):
        assert metrics[name] == pytest.approx(expected[name], abs=1e-12), name
    return results


def test_pit_served_through_primary_sids_reproduces_its_re_evaluation(trained_runs):
    """``--decoding pit.one_to_many=false`` decodes through each item's strongest SID only: the
    service and ``pitrec eval`` apply the same setting, and each explained item names that SID."""
    from pitrec.config import ConfigError
    from pitrec.train.evaluate_run import evaluate_run

    run = trained_runs("pit")
    rec = Recommender.load(run, persist=False, decoding=["pit.one_to_many=false"])
    assert rec.run.cfg.pit.one_to_many is False and rec.stats().decoding["one_to_many"] is False
    assert Recommender.load(run, persist=False).stats().decoding["one_to_many"] is True
    expected = evaluate_run(run, "test", ["pit.one_to_many=false", "run.progress=false"])["metrics"]
    results = assert_served_metrics_equal(rec, run, expected)
    index = rec.engine.index
    assert index.sids_per_item().max() > 1  # the index does hold several SIDs per item
    primary = index.primary_codes()
    for result in results[:50]:
        for item in result.items:
            assert [s.sid for s in item.sids] == [primary[rec.catalog.dense(item.id)].tolist()]
            assert item.sids[0].log_prob is not None
    for wrong in (["pit.csa=false"], ["tiger.beam_width=30"], ["pit.beam_width"]):
        with pytest.raises(ConfigError):
            Recommender.load(run, persist=False, decoding=wrong)
    with pytest.raises(ConfigError, match=r"pit.csa does not apply .* pit.one_to_many"):
        Recommender.load(run, persist=False, decoding={"pit": {"csa": False}})


def test_renormalized_last_level_needs_constrained_decoding():
    from pitrec.config import ConfigError

    with pytest.raises(ConfigError, match="needs tiger.constrained=true"):
        config_from_dict({"tiger": {"last_level": "renormalized", "constrained": False}})
