"""Planning: configs resolved up front, unknown methods warned about, resume decisions by hash."""

from __future__ import annotations

import pytest
import yaml

import pitrec.config
from pitrec.bench.plan import config_hash, decoding_changes, plan_runs, run_state
from pitrec.bench.spec import BenchError, load_bench
from pitrec.train.run_dir import RunDir


def test_runs_cover_datasets_methods_seeds(write_bench):
    bench = load_bench(write_bench(seeds=[0, 1]))
    runs, notes = plan_runs(bench)
    assert notes == []
    assert [(r.dataset, r.method.label, r.seed) for r in runs] == [
        ("tiny", "popularity", 0), ("tiny", "popularity", 1), ("tiny", "sasrec", 0), ("tiny", "sasrec", 1)]
    sasrec = runs[2]
    assert sasrec.run_dir.parts[-3:] == ("tiny", "sasrec-full", "seed0")
    assert (sasrec.cfg.run.seed, sasrec.cfg.train.epochs, sasrec.cfg.data.format) == (0, 1, "synthetic")
    assert sasrec.cfg.run.out == str(sasrec.run_dir)


def test_unregistered_method_is_skipped_with_a_warning(write_bench):
    bench = load_bench(write_bench(methods=[{"method": "popularity"}, {"method": "nosuch"},
                                            {"method": "nosuch", "variant": "ablated"}]))
    runs, notes = plan_runs(bench)
    assert [r.method.method for r in runs] == ["popularity"]
    assert len(notes) == 1
    assert "'nosuch' is not a registered recipe" in notes[0] and "nosuch/ablated" in notes[0]
    assert "popularity" in notes[0]  # lists the known ones


def test_filters(write_bench):
    bench = load_bench(write_bench())
    runs, _ = plan_runs(bench, methods=["sasrec"])
    assert {r.method.method for r in runs} == {"sasrec"}
    variants = load_bench(write_bench(methods=[{"method": "sasrec"}, {"method": "sasrec", "variant": "wide",
                                                                      "overrides": {"sasrec": {"hidden": 32}}}]))
    assert {r.method.label for r in plan_runs(variants, methods=["sasrec"])[0]} == {"sasrec", "sasrec/wide"}
    assert {r.method.label for r in plan_runs(variants, methods=["sasrec/full"])[0]} == {"sasrec"}  # main alone
    assert {r.method.label for r in plan_runs(variants, methods=["sasrec/wide"])[0]} == {"sasrec/wide"}
    with pytest.raises(BenchError, match="--method sasrek matches nothing.*popularity, sasrec"):
        plan_runs(bench, methods=["sasrek"])
    with pytest.raises(BenchError, match="--dataset beauty"):
        plan_runs(bench, datasets=["beauty"])


def test_method_limited_to_some_datasets(write_bench):
    tiny = {"path": "synthetic", "data": {"synthetic_users": 120, "synthetic_items": 50, "synthetic_clusters": 4}}
    bench = load_bench(write_bench(datasets={"tiny": tiny, "other": tiny},
                                   methods=[{"method": "popularity"},
                                            {"method": "popularity", "variant": "only-other", "datasets": ["other"]}]))
    runs, _ = plan_runs(bench)
    assert [(r.dataset, r.method.label) for r in runs] == [
        ("tiny", "popularity"), ("other", "popularity"), ("other", "popularity/only-other")]
    assert [r.method.label for r in plan_runs(bench, datasets=["tiny"])[0]] == ["popularity"]


def test_bad_override_names_run_and_key(write_bench):
    bench = load_bench(write_bench(methods=[{"method": "sasrec", "overrides": {"train": {"lrr": 0.1}}}]))
    with pytest.raises(BenchError, match=r"dataset tiny, method sasrec, seed 0.*train\.lrr"):
        plan_runs(bench)


def test_protocol_must_match_across_methods(write_bench, monkeypatch):
    real = pitrec.config.builtin_layer
    monkeypatch.setattr(pitrec.config, "builtin_layer",
                        lambda name: {"eval": {"ks": [10]}} if name == "sasrec" else real(name))
    with pytest.raises(BenchError, match="evaluation protocol"):
        plan_runs(load_bench(write_bench()))
    # the bench protocol is applied last, so setting it explicitly restores one protocol for all
    runs, _ = plan_runs(load_bench(write_bench(protocol={"eval": {"ks": [5, 10, 20]}})))
    assert {tuple(r.cfg.eval.ks) for r in runs} == {(5, 10, 20)}


def test_hash_ignores_display_and_location_only(write_bench):
    cfg = plan_runs(load_bench(write_bench()))[0][0].cfg
    h = config_hash(cfg.to_dict())
    assert config_hash(cfg.with_overrides({"run": {"out": "elsewhere", "progress": True}}).to_dict()) == h
    # the allocator changes speed, never results: runs from before the setting existed still resume
    assert config_hash(cfg.with_overrides({"run": {"retain_freed_memory": False}}).to_dict()) == h
    older = cfg.to_dict()
    older["run"].pop("retain_freed_memory")
    assert config_hash(older) == h
    assert config_hash(cfg.with_overrides({"train": {"lr": 0.5}}).to_dict()) != h
    assert config_hash(cfg.with_overrides({"run": {"seed": 9}}).to_dict()) != h


def test_run_state_new_partial_done_changed(write_bench):
    spec = plan_runs(load_bench(write_bench()))[0][0]
    assert run_state(spec).kind == "new"
    run = RunDir(spec.run_dir).create()
    run.write_config(spec.cfg.with_overrides({"run": {"progress": True}}))
    assert run_state(spec).kind == "partial"
    run.write_json("test_metrics.json", {"test": {}})
    assert run_state(spec).kind == "done"
    changed = plan_runs(load_bench(write_bench(), ["--overrides.train.lr=0.5"]))[0][0]
    state = run_state(changed)
    assert state.kind == "changed" and "config changed" in state.detail
    # a run written while a since-retired key existed: done at the key's neutral value, re-run otherwise
    saved = spec.cfg.to_dict()
    for value, kind in ((0, "done"), (2, "changed")):
        run.config_path.write_text(yaml.safe_dump({**saved, "pit": {**saved["pit"], "expand_last_levels": value}}))
        assert run_state(spec).kind == kind
    assert "pit.expand_last_levels=2 is no longer supported" in run_state(spec).detail
    run.config_path.write_text("train: {no_such_key: 1}\n")
    state = run_state(spec)
    assert state.kind == "changed" and "no longer loads" in state.detail


def test_decoding_changes_only_when_nothing_but_decoding_differs(write_bench):
    cfg = plan_runs(load_bench(write_bench()))[0][0].cfg
    base = cfg.to_dict()

    def changed(**sections):
        return cfg.with_overrides(sections).to_dict()

    assert decoding_changes(base, base) is None  # nothing to do
    assert decoding_changes(base, changed(tiger={"last_level": "renormalized", "beam_width": 30})) == {
        "tiger": {"last_level": "renormalized", "beam_width": 30}}
    assert decoding_changes(base, changed(pit={"aggregation": "max"})) == {"pit": {"aggregation": "max"}}
    # where and how a run is shown is not a difference; training settings are
    assert decoding_changes(base, changed(tiger={"beam_width": 30}, run={"out": "elsewhere"})) == {
        "tiger": {"beam_width": 30}}
    assert decoding_changes(base, changed(tiger={"beam_width": 30}, train={"lr": 0.5})) is None
    assert decoding_changes(base, changed(eval={"valid_users": 7}, tiger={"beam_width": 30})) is None


def test_run_state_redecodes_a_finished_run_whose_decoding_changed(write_bench):
    spec = plan_runs(load_bench(write_bench()))[0][0]
    run = RunDir(spec.run_dir).create()
    run.write_config(spec.cfg)
    wanted = plan_runs(load_bench(write_bench(), ["--overrides.tiger.last_level=renormalized"]))[0][0]
    assert run_state(wanted).kind == "changed"  # unfinished: nothing to measure again, so it is re-run
    run.write_json("test_metrics.json", {"test": {}})
    state = run_state(wanted)
    assert state.kind == "redecode" and state.changes == {"tiger": {"last_level": "renormalized"}}
    assert "tiger.last_level=renormalized" in state.detail
    both = plan_runs(load_bench(write_bench(), ["--overrides.tiger.last_level=renormalized",
                                                 "--overrides.train.lr=0.5"]))[0][0]
    assert run_state(both).kind == "changed"
