"""End to end through ``pitrec bench``: real subprocess runs on tiny synthetic data, then resume,
re-run on a config change, a crashing run, and the report command."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pitrec.bench import runner as runner_module
from pitrec.bench.results import load_results
from pitrec.cli import app

runner = CliRunner()
CRASHING_WORKER = "import sys; print('Traceback ...'); print('MemoryError: simulated'); sys.exit(3)"


def bench(*args: str):
    return runner.invoke(app, ["bench", *args], catch_exceptions=False)


SMOKE = Path(__file__).resolve().parents[2] / "benchmarks" / "smoke.yaml"


def smoke(root: Path, *extra: str):
    """``benchmarks/smoke.yaml`` with one seed, its runs and results under ``root``."""
    return bench(str(SMOKE), f"--runs_dir={root / 'runs'}", f"--results_dir={root / 'results'}", "--seeds=[0]",
                 "--progress=false", *extra)


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """One sweep of the smoke benchmark (popularity + sasrec, seed 0), made once and copied by each test."""
    root = tmp_path_factory.mktemp("swept")
    result = smoke(root)
    assert result.exit_code == 0, result.output
    return root


def copy_of(swept: Path, tmp_path: Path) -> Path:
    """The swept runs and results under ``tmp_path`` (the run directories recorded in the copied
    results still name the originals, which only the plots read)."""
    shutil.copytree(swept / "runs", tmp_path / "runs")
    shutil.copytree(swept / "results", tmp_path / "results")
    return tmp_path


def test_sweep_writes_results_report_and_plots(swept):
    doc = load_results(swept / "results" / "tiny.json")
    assert [(r["method"], r["variant"], r["seed"]) for r in doc["runs"]] == [("popularity", "full", 0),
                                                                           ("sasrec", "full", 0)]
    for run in doc["runs"]:
        test_metrics = json.loads((Path(run["run_dir"]) / "test_metrics.json").read_text())
        assert run["metrics"]["ndcg@10"] == test_metrics["test"]["ndcg@10"]
        assert run["peak_rss_mb"] > 0 and run["wall_seconds"] > 0 and run["config_hash"]
    assert doc["runs"][1]["epochs"] == 2 and doc["runs"][1]["train_samples_per_s"] > 0
    # the record keeps the curves the plots draw, for when the run directory is gone
    sasrec_log = [json.loads(line) for line in (Path(doc["runs"][1]["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert doc["runs"][1]["curves"]["ndcg@10"] == [rec["valid"]["ndcg@10"] for rec in sasrec_log]
    assert "bench" in doc["command"]
    md = (swept / "results" / "tiny.md").read_text()
    assert f"{doc['summary']['sasrec']['ndcg@10']['mean']:.4f} (1 seed)" in md  # one seed: no spread claimed
    assert (swept / "results" / "tiny_curves.png").is_file()  # sasrec logged validation per epoch
    assert "SID churn: skipped" in md


def test_rerun_skips_finished_runs(swept, tmp_path):
    copy_of(swept, tmp_path)
    finished = sorted((tmp_path / "runs").rglob("test_metrics.json"))
    before = {p: p.stat().st_mtime_ns for p in finished}
    result = smoke(tmp_path)
    assert result.exit_code == 0, result.output
    assert result.output.count("skipped (finished") == 2 and "2 skipped" in result.output
    assert {p: p.stat().st_mtime_ns for p in finished} == before  # nothing retrained or re-tested


@pytest.mark.slow
def test_partial_run_resumes(swept, tmp_path):
    copy_of(swept, tmp_path)
    run_dir = tmp_path / "runs" / "tiny" / "sasrec-full" / "seed0"
    (run_dir / "test_metrics.json").unlink()
    log_before = (run_dir / "metrics.jsonl").read_text()
    result = smoke(tmp_path, "--method", "sasrec")
    assert result.exit_code == 0, result.output
    assert "resuming from its last checkpoint" in result.output and "1 resumed" in result.output
    assert (run_dir / "metrics.jsonl").read_text() == log_before  # the finished epoch was not trained again
    assert json.loads((run_dir / "bench.json").read_text())["resumed"] is True
    assert load_results(tmp_path / "results" / "tiny.json")["runs"][1]["resumed"] is True


@pytest.mark.slow
def test_changed_config_reruns(swept, tmp_path):
    copy_of(swept, tmp_path)
    result = smoke(tmp_path, "--method", "popularity", "--overrides.train.lr=0.01")
    assert result.exit_code == 0, result.output
    assert "config changed" in result.output and "1 rerun" in result.output
    doc = load_results(tmp_path / "results" / "tiny.json")
    old = load_results(swept / "results" / "tiny.json")
    assert doc["runs"][0]["config_hash"] != old["runs"][0]["config_hash"]  # popularity replaced
    assert doc["runs"][1] == old["runs"][1]  # sasrec kept as it was


def test_a_run_is_credited_to_the_commit_it_started_from(swept, tmp_path, monkeypatch):
    """A commit made while a run trains must not be recorded as the run's code."""
    head = {"sha": "sha-at-start"}
    monkeypatch.setattr(runner_module, "git_sha", lambda *a, **k: head["sha"])
    spawn = runner_module._spawn

    def commit_during_the_run(*args, **kwargs):
        result = spawn(*args, **kwargs)
        head["sha"] = "sha-committed-meanwhile"
        return result

    monkeypatch.setattr(runner_module, "_spawn", commit_during_the_run)
    copy_of(swept, tmp_path)
    result = smoke(tmp_path, "--method", "popularity", "--overrides.train.lr=0.02")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "runs" / "tiny" / "popularity-full" / "seed0" / "bench.json").read_text())
    assert meta["git_sha"] == "sha-at-start"
    record = load_results(tmp_path / "results" / "tiny.json")["runs"][0]
    assert (record["method"], record["git_sha"]) == ("popularity", "sha-at-start")


def test_crashing_run_does_not_stop_the_sweep(swept, tmp_path, monkeypatch):
    """A child that dies (here a stand-in worker, to spare a torch import) fails its run only."""
    monkeypatch.setattr(runner_module, "WORKER", [sys.executable, "-c", CRASHING_WORKER])
    copy_of(swept, tmp_path)
    result = smoke(tmp_path, "--overrides.train.lr=0.01")  # both runs changed, so both are started
    assert result.exit_code == 1
    assert result.output.count("FAILED (exit code 3") == 2 and "2 failed" in result.output
    assert "MemoryError: simulated" in result.output  # the tail of the run's bench.log
    assert "[2/2] tiny sasrec seed0" in result.output  # the sweep went on after the first crash
    # the earlier results came from run directories the new config replaced: they are not kept
    assert "removed its earlier result" in result.output
    assert load_results(tmp_path / "results" / "tiny.json")["runs"] == []


def test_report_command_and_readme(swept, tmp_path):
    shutil.copytree(swept / "results", tmp_path / "results")
    (tmp_path / "results" / "tiny.md").unlink()
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:begin -->\n<!-- results:end -->\n")
    # other benchmark scripts write their own JSON into the same folder: named as skipped, no error
    (tmp_path / "results" / "serve_load.json").write_text('{"runs": [{"label": "x"}]}')
    result = bench("report", "--results-dir", str(tmp_path / "results"), "--update-readme", "--readme", str(readme))
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "serve_load.json" in result.output
    assert (tmp_path / "results" / "tiny.md").is_file()
    doc = load_results(tmp_path / "results" / "tiny.json")
    assert f"{doc['summary']['popularity']['ndcg@10']['mean']:.4f}" in readme.read_text()


def test_unknown_method_only_is_a_clear_error(tmp_path):
    result = smoke(tmp_path, "--methods=[{method: nosuch}]")
    assert result.exit_code == 2
    assert "'nosuch' is not a registered recipe" in result.output and "nothing to run" in result.output
