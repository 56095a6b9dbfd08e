"""The results file: contract schema, statistics, merge/replace semantics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pitrec.bench.results import (build_results, load_results, mean_std, merge_runs, run_record, summarize,
                                  write_results)
from pitrec.bench.spec import BenchError

METRICS = ("recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20")
PROTOCOL = {"split": "leave-one-out", "ranking": "full", "max_history": 20, "ks": [5, 10, 20], "mask_history": False}
PROVENANCE = {"git_sha": "abc123", "machine": "test machine", "command": "pitrec bench test.yaml"}
TOP_KEYS = ("dataset", "protocol", "git_sha", "machine", "command", "created", "runs", "summary")
RUN_KEYS = ("method", "variant", "seed", "metrics", "train_seconds", "train_samples_per_s", "eval_users_per_s",
            "peak_rss_mb")


def test_document_has_every_contract_key(make_run, tmp_path):
    runs = [make_run("sasrec", seed=s) for s in range(3)] + [make_run("pit", "no-csa", seed=0)]
    doc = build_results("beauty", PROTOCOL, runs, PROVENANCE)
    path = write_results(tmp_path / "beauty.json", doc)
    loaded = json.loads(path.read_text())
    assert all(k in loaded for k in TOP_KEYS)
    assert {"split", "ranking", "max_history", "ks"} <= set(loaded["protocol"])
    for run in loaded["runs"]:
        assert all(k in run for k in RUN_KEYS)
        assert set(METRICS) <= set(run["metrics"])
    # summary keyed by method for the main variant, method/variant otherwise; each metric {mean, std, n}
    assert set(loaded["summary"]) == {"sasrec", "pit/no-csa"}
    for stats in loaded["summary"].values():
        for m in METRICS:
            assert set(stats[m]) == {"mean", "std", "n"}
    assert load_results(path) == loaded


@pytest.mark.parametrize("drop", ["git_sha", "summary", "protocol"])
def test_missing_top_key_is_named(make_run, tmp_path, drop):
    doc = build_results("beauty", PROTOCOL, [make_run()], PROVENANCE)
    del doc[drop]
    path = tmp_path / "beauty.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(BenchError, match=f"beauty.json.*{drop}"):
        load_results(path)


def test_missing_metric_is_named(make_run):
    run = make_run()
    del run["metrics"]["ndcg@20"]
    with pytest.raises(BenchError, match=r"runs\.0\.metrics.*ndcg@20"):
        build_results("beauty", PROTOCOL, [run], PROVENANCE)


def test_broken_json_names_line(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{\n "dataset": "x",\n oops\n}')
    with pytest.raises(BenchError, match=r"x.json:3"):
        load_results(path)


def test_mean_and_sample_std(make_run):
    values = [0.031, 0.0405, 0.0377]
    runs = [make_run(seed=s, base=0.0) for s in range(3)]
    for run, v in zip(runs, values):
        run["metrics"]["ndcg@10"] = v
    stat = summarize(runs)["sasrec"]["ndcg@10"]
    assert stat["n"] == 3
    assert stat["mean"] == pytest.approx(np.mean(values), abs=1e-15)
    assert stat["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-15)
    assert summarize(runs)["sasrec"]["train_seconds"]["mean"] == pytest.approx(11.0)
    assert mean_std([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1}


def test_merge_replaces_same_key_and_keeps_others(make_run, tmp_path):
    path = tmp_path / "beauty.json"
    first = build_results("beauty", PROTOCOL, [make_run("popularity", seed=s, base=0.01) for s in range(3)]
                          + [make_run("sasrec", seed=0, base=0.02)], PROVENANCE)
    write_results(path, first)
    newer = [make_run("sasrec", seed=0, base=0.05), make_run("sasrec", seed=1, base=0.07)]
    second = build_results("beauty", PROTOCOL, newer, PROVENANCE, existing=load_results(path))
    keys = [(r["method"], r["variant"], r["seed"]) for r in second["runs"]]
    assert keys == [("popularity", "full", 0), ("popularity", "full", 1), ("popularity", "full", 2),
                    ("sasrec", "full", 0), ("sasrec", "full", 1)]
    sasrec0 = next(r for r in second["runs"] if r["method"] == "sasrec" and r["seed"] == 0)
    assert sasrec0["metrics"]["recall@5"] == pytest.approx(0.05)  # replaced
    assert second["summary"]["sasrec"]["recall@5"]["mean"] == pytest.approx(0.06)  # recomputed
    assert second["summary"]["popularity"]["recall@5"]["n"] == 3  # kept


def test_merge_orders_methods_then_variants():
    runs = [{"method": m, "variant": v, "seed": s} for m, v, s in
            [("pit", "no-csa", 0), ("pit", "full", 1), ("zeta", "full", 0), ("popularity", "full", 0), ("pit", "full", 0)]]
    order = [(r["method"], r["variant"], r["seed"]) for r in merge_runs([], runs)]
    assert order == [("popularity", "full", 0), ("pit", "full", 0), ("pit", "full", 1), ("pit", "no-csa", 0),
                     ("zeta", "full", 0)]


def test_protocol_mismatch_refuses_to_merge(make_run):
    old = build_results("beauty", PROTOCOL, [make_run()], PROVENANCE)
    other = dict(PROTOCOL, mask_history=True)
    with pytest.raises(BenchError, match="protocol"):
        build_results("beauty", other, [make_run(seed=1)], PROVENANCE, existing=old)


def test_run_record_from_test_metrics():
    test_metrics = {"method": "pit", "test": {**{m: 0.1 for m in METRICS}, "users": 100, "users_per_s": 50.0},
                    "best_valid": 0.2, "best_epoch": 3, "epochs_run": 5, "steps": 40, "train_seconds": 12.0,
                    "train_samples_per_s": 900.0, "eval_users_per_s": 50.0, "peak_rss_mb": 400.0,
                    "time_to_accuracy_s": 321.0, "nested": {"ignored": True}}
    rec = run_record("pit", "no-csa", 2, test_metrics, [5, 10, 20], {"run_dir": "runs/x"})
    assert rec["metrics"] == {m: 0.1 for m in METRICS}
    assert (rec["epochs"], rec["best_epoch"], rec["time_to_accuracy_s"], rec["run_dir"]) == (5, 3, 321.0, "runs/x")
    assert "nested" not in rec and "test" not in rec
    del test_metrics["test"]["ndcg@10"]
    with pytest.raises(BenchError, match="ndcg@10"):
        run_record("pit", "no-csa", 2, test_metrics, [5, 10, 20], {"run_dir": "runs/x"})
