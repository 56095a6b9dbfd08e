"""A bench config that changes only decoding settings measures finished runs again instead of
retraining them (``pitrec.decoding.settings.DECODING_KEYS``), through ``pitrec bench`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pitrec.bench.results import load_results
from pitrec.cli import app
from pitrec.train.evaluate_run import evaluate_run
from pitrec.train.run_dir import RunDir

TINY_TIGER = {
    "embed": {"encoder": "tfidf", "tfidf_dim": 16},
    "tokenizer": {"name": "rqkmeans", "levels": 2, "codebook_size": 4},
    "u2t": {"d_model": 16, "heads": 2, "encoder_layers": 1, "decoder_layers": 1, "ffn": 32},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.005, "warmup_steps": 0, "lr_schedule": "constant"},
    "tiger": {"beam_width": 6, "last_level": "model"},
}


def tiger_with(lr: float = 0.005, **tiger) -> dict:
    return {**TINY_TIGER, "tiger": {**TINY_TIGER["tiger"], **tiger}, "train": {**TINY_TIGER["train"], "lr": lr}}


def bench(path: Path, *extra: str):
    return CliRunner().invoke(app, ["bench", str(path), "--progress=false", *extra], catch_exceptions=False)


@pytest.mark.slow
def test_decoding_change_measures_the_finished_run_again_without_training(write_bench, tmp_path):
    def config(**tiger) -> Path:  # tiger's settings, and lr
        return write_bench(methods=[{"method": "popularity"}, {"method": "tiger", "overrides": tiger_with(**tiger)}],
                           overrides={"run": {"num_threads": 1}, "embed": {"cache_dir": str(tmp_path / "cache")}})

    first = bench(config())
    assert first.exit_code == 0, first.output
    run = RunDir(tmp_path / "runs" / "tiny" / "tiger-full" / "seed0")
    trained = {p: p.stat().st_mtime_ns for p in (run.path / "checkpoint").rglob("*") if p.is_file()}
    before = json.loads(run.test_metrics_path.read_text())

    second = bench(config(last_level="renormalized"))
    assert second.exit_code == 0, second.output
    assert "tiger seed0: finished; only decoding changed (tiger.last_level=renormalized)" in second.output
    assert second.output.split("runs:")[-1].strip() == "1 redecoded, 1 skipped"
    assert {p: p.stat().st_mtime_ns for p in (run.path / "checkpoint").rglob("*") if p.is_file()} == trained
    after = json.loads(run.test_metrics_path.read_text())
    expected = evaluate_run(run.path, "test", ["run.progress=false"])["metrics"]  # config.yaml now says renormalized
    assert {k: after["test"][k] for k in expected if "@" in k} == {k: v for k, v in expected.items() if "@" in k}
    assert after["redecoded"][0]["overrides"] == {"tiger": {"last_level": "renormalized"}}
    assert after["redecoded"][0]["previous_test"] == before["test"]
    assert {k: after[k] for k in ("best_epoch", "epochs_run", "train_seconds")} == \
        {k: before[k] for k in ("best_epoch", "epochs_run", "train_seconds")}
    assert json.loads((run.path / "decoding_stats.json").read_text())["last_level"] == "renormalized"
    # the results file carries the new metrics and says they were measured again
    doc = load_results(tmp_path / "results" / "tiny.json")
    record = next(r for r in doc["runs"] if r["method"] == "tiger")
    assert record["metrics"]["ndcg@10"] == after["test"]["ndcg@10"] and record["redecoded"] == after["redecoded"]
    assert record["decoding"] == {"beam_width": 6, "constrained": True, "last_level": "renormalized"}

    third = bench(config(last_level="renormalized"))
    assert third.exit_code == 0 and "2 skipped" in third.output, third.output
    # a bench-wide decoding override reaches every run's config; popularity does not read tiger's
    # settings, so its config follows and its metrics stay
    popularity = RunDir(tmp_path / "runs" / "tiny" / "popularity-full" / "seed0")
    kept = json.loads(popularity.test_metrics_path.read_text())
    fourth = bench(config(last_level="renormalized"), "--overrides.tiger.constrained=true",
                   "--overrides.pit.aggregation=max")
    assert fourth.exit_code == 0, fourth.output
    assert json.loads(popularity.test_metrics_path.read_text()) == kept
    assert bench(config(last_level="renormalized"), "--overrides.pit.aggregation=max").output.count("skipped (") == 2
    # a training setting changed as well: trained again, from scratch
    fifth = bench(config(last_level="renormalized", beam_width=8, lr=0.004), "--overrides.pit.aggregation=max")
    assert fifth.exit_code == 0, fifth.output
    assert "tiger seed0: config changed" in fifth.output and fifth.output.split("runs:")[-1].strip() == "1 rerun, 1 skipped"
