"""``pitrec train`` end to end through the real command line (typer's CliRunner)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from pitrec.cli import app

TINY_DATA = ["--data.synthetic_users=120", "--data.synthetic_items=50", "--data.synthetic_clusters=4",
             "--run.progress=false", "--run.num_threads=1"]


def test_train_sasrec_writes_a_run_and_resumes_it(tmp_path):
    out = tmp_path / "run"
    args = ["train", "sasrec", "--out", str(out), "--seed", "3", *TINY_DATA, "--train.epochs=2", "--sasrec.hidden=16",
            "--sasrec.ffn=32", "--sasrec.max_len=8", "--train.batch_size=64"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "sasrec" in result.output and "N@10" in result.output
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["method"] == "sasrec" and metrics["epochs_run"] == 2 and metrics["seed"] == 3
    assert (out / "config.yaml").read_text().count("hidden: 16") == 1

    again = CliRunner().invoke(app, args)  # the same --out without --resume must not clobber it
    assert again.exit_code == 2 and "--resume" in again.output

    resumed = CliRunner().invoke(app, ["train", "sasrec", "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    again_metrics = json.loads((out / "test_metrics.json").read_text())["test"]
    assert {k: v for k, v in again_metrics.items() if k != "users_per_s"} == \
        {k: v for k, v in metrics["test"].items() if k != "users_per_s"}


def test_train_popularity(tmp_path):
    out = tmp_path / "pop"
    result = CliRunner().invoke(app, ["train", "popularity", "--out", str(out), *TINY_DATA])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["method"] == "popularity" and metrics["epochs_run"] == 0
    assert 0 < metrics["test"]["recall@20"] <= 1


def test_a_bad_override_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["train", "sasrec", "--out", str(tmp_path / "x"), "--sasrec.hiden=16"])
    assert result.exit_code == 2
    assert "sasrec.hiden" in result.output
