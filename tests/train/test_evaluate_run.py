"""``pitrec eval``: a trained run measured again. With no overrides it must reproduce the test
figures written at the end of training (same recipe, checkpoint and ranker); protocol overrides
apply; settings the checkpoint depends on are refused."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pitrec.cli import app
from pitrec.config import ConfigError
from pitrec.train.evaluate_run import evaluate_run, paired_runs

METRIC_KEYS = [f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)]


@pytest.mark.parametrize("method", ["sasrec", "tiger", "pit", "pit-cf", "popularity"])
def test_reproduces_the_test_metrics_written_by_training(trained_runs, method):
    run = trained_runs(method)
    written = json.loads((run / "test_metrics.json").read_text())["test"]
    record = evaluate_run(run)
    assert record["method"] == method.split("-")[0]
    assert record["part"] == "test" and record["mask_history"] is False
    assert {k: record["metrics"][k] for k in METRIC_KEYS} == {k: written[k] for k in METRIC_KEYS}
    assert record["metrics"]["users"] == written["users"]


def test_masked_history_never_recommends_history_items(trained_runs):
    run = trained_runs("sasrec")
    plain = evaluate_run(run)["metrics"]
    masked = evaluate_run(run, overrides=["--eval.mask_history=true"])
    # the evaluator raises if a ranked list holds a history item, so finishing is the check
    assert masked["mask_history"] is True and masked["metrics"]["users"] == plain["users"]
    assert masked["overrides"] == {"eval": {"mask_history": True}}


def test_validation_part_on_all_users(trained_runs):
    run = trained_runs("tiger")
    part = evaluate_run(run, part="valid", overrides={"eval": {"valid_users": 0}})
    subset = evaluate_run(run, part="valid", overrides={"eval": {"valid_users": 30}})
    assert part["metrics"]["users"] == 100  # every synthetic user has a validation item
    assert subset["metrics"]["users"] == 30


@pytest.mark.parametrize("override", ["--u2t.d_model=32", "--train.lr=0.1", "--data.max_history=3", "--run.seed=2"])
def test_refuses_settings_the_checkpoint_depends_on(trained_runs, override):
    key = override[2:].split("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        evaluate_run(trained_runs("tiger"), overrides=[override])


def test_cli_prints_and_writes_json(trained_runs, tmp_path):
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["eval", str(trained_runs("sasrec")), "--json", str(out),
                                      "--eval.mask_history=true"])
    assert result.exit_code == 0, result.output
    assert "history masked" in result.output
    record = json.loads(out.read_text())
    assert record["mask_history"] is True and set(METRIC_KEYS) <= set(record["metrics"])


def test_cli_names_a_missing_run_directory(tmp_path):
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    text = result.output.replace("\n", "")  # rich wraps long lines
    assert "nowhere/config.yaml: missing" in text and "run directory" in text


@pytest.mark.parametrize("method", ["tiger", "pit-cf"])
def test_reads_the_sid_table_its_checkpoint_was_trained_on(trained_runs, method, monkeypatch):
    """Building the SID stage again can give another table under another BLAS thread count or
    machine (the collaborative SVD's last float bits change, and RQ-VAE fits other codes), so
    a re-evaluation must read the run's own table and never rebuild it."""
    run = trained_runs(method)
    written = json.loads((run / "test_metrics.json").read_text())["test"]

    def rebuilt(*args, **kwargs):
        raise AssertionError("the SID stage was built again instead of read from the run directory")

    monkeypatch.setattr("pitrec.tokenizers.stage.sid_table", rebuilt)
    record = evaluate_run(run)
    assert {k: record["metrics"][k] for k in METRIC_KEYS} == {k: written[k] for k in METRIC_KEYS}


def test_pit_can_be_measured_again_with_one_sid_per_item(trained_runs, monkeypatch):
    """``pit.one_to_many`` is a decoding setting (the single-SID ablation's inference): a trained
    run can be ranked again through its items' strongest SIDs only, without retraining."""
    import pitrec.train.recipes.pit as pit_recipe

    decoded_with = []
    real = pit_recipe.compile_index

    def spy(index, one_to_many, device):
        decoded_with.append(one_to_many)
        return real(index, one_to_many, device)

    monkeypatch.setattr(pit_recipe, "compile_index", spy)
    single = evaluate_run(trained_runs("pit"), overrides=["--pit.one_to_many=false"])
    assert decoded_with and not any(decoded_with)
    assert single["overrides"] == {"pit": {"one_to_many": False}}
    assert single["metrics"]["users"] == evaluate_run(trained_runs("pit"))["metrics"]["users"]
    assert decoded_with[-1] is True  # the run's own setting when not overridden


def test_paired_runs_compare_the_two_runs_own_test_metrics(trained_runs):
    """The per-user comparison averages to what each run's own evaluation reports."""
    tiger, pit = trained_runs("tiger"), trained_runs("pit")
    record = paired_runs(tiger, pit)
    assert record["methods"] == ["tiger", "pit"] and record["part"] == "test"
    own_a, own_b = evaluate_run(tiger)["metrics"], evaluate_run(pit)["metrics"]
    assert record["users"] == own_a["users"]
    by_metric = {d["metric"]: d for d in record["differences"]}
    assert set(by_metric) == set(METRIC_KEYS)
    for metric, d in by_metric.items():
        assert d["mean_a"] == pytest.approx(own_a[metric]) and d["mean_b"] == pytest.approx(own_b[metric])
        assert d["difference"] == pytest.approx(own_b[metric] - own_a[metric])
        assert d["low"] <= d["difference"] + 1e-12 and d["difference"] <= d["high"] + 1e-12
        assert d["b_better_users"] + d["a_better_users"] <= d["users"] == record["users"]


def test_a_run_paired_with_itself_differs_nowhere(trained_runs):
    record = paired_runs(trained_runs("sasrec"), trained_runs("sasrec"), part="valid")
    assert all((d["difference"], d["low"], d["high"], d["p_value"], d["b_better_users"], d["a_better_users"]) ==
               (0.0, 0.0, 0.0, 1.0, 0, 0) for d in record["differences"])


def test_paired_runs_refuse_runs_on_different_splits(trained_runs, tmp_path):
    import shutil

    import yaml

    other = tmp_path / "popularity-90-users"
    shutil.copytree(trained_runs("popularity"), other)
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["data"]["synthetic_users"] = 90
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="not evaluated on the same test users"):
        paired_runs(trained_runs("popularity"), other)
    # the validation subset is drawn with each run's seed: another seed, other users, and the error says how to pair
    config["data"]["synthetic_users"], config["run"]["seed"] = 100, config["run"]["seed"] + 1
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="valid_users=0 takes every user"):
        paired_runs(trained_runs("popularity"), other, part="valid", overrides={"eval": {"valid_users": 30}})
    assert paired_runs(trained_runs("popularity"), other, part="valid", overrides={"eval": {"valid_users": 0}})["users"] == 100


def test_cli_eval_paired_prints_and_writes_json(trained_runs, tmp_path):
    out = tmp_path / "paired.json"
    result = CliRunner().invoke(app, ["eval-paired", str(trained_runs("popularity")), str(trained_runs("sasrec")),
                                      "--json", str(out), "--resamples", "200"])
    assert result.exit_code == 0, result.output
    assert "ndcg@10" in result.output and "b - a" in result.output
    record = json.loads(out.read_text())
    assert record["methods"] == ["popularity", "sasrec"] and record["resamples"] == 200
    assert record["git_sha"] and record["machine"] and "eval-paired" in record["command"]
    assert {d["metric"] for d in record["differences"]} == set(METRIC_KEYS)
