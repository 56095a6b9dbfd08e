"""Time to accuracy (eval.accuracy_target): with the scripted recipe of test_early_stopping, whose
NDCG@10 per epoch is known in advance, and a fake clock that only evaluations advance, the probed
figures, the reported seconds and the stop are exact."""

from __future__ import annotations

import json
import math
import types

import pytest
import torch
from test_early_stopping import RANK_BY_EPOCH, ScriptedRecipe, _successor_split

from pitrec.config import load_config
from pitrec.eval.evaluator import Evaluator
from pitrec.train import accuracy_probe
from pitrec.train.accuracy_probe import AccuracyProbe
from pitrec.train.run_dir import RunDir
from pitrec.train.trainer import Trainer

NDCG = [1 / math.log2(r + 2) for r in RANK_BY_EPOCH]
EVAL_SECONDS = 100.0  # what each evaluation costs on the fake clock; nothing else advances it


class _ClockedEvaluator(Evaluator):
    def __init__(self, split, clock: list[float], **kw):
        super().__init__(split, **kw)
        self.clock = clock

    def evaluate(self, ranker, part, progress=False):
        self.clock[0] += EVAL_SECONDS
        return super().evaluate(ranker, part, progress=progress)


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    now = [0.0]
    monkeypatch.setattr(accuracy_probe, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    return now


def _fit(tmp_path, clock, *overrides: str, probe: bool = True):
    cfg = load_config(overrides=["train.epochs=8", "train.patience=3", "run.progress=false", *overrides])
    split = _successor_split()
    recipe = ScriptedRecipe(cfg, None, split, torch.device("cpu"), None)
    recipe.prepare()
    run = RunDir(tmp_path).create()
    evaluator = _ClockedEvaluator(split, clock, ks=cfg.eval.ks) if probe else Evaluator(split, ks=cfg.eval.ks)
    return Trainer(cfg, recipe, evaluator, run=run, clock_start=0.0).fit(), run


def test_first_epoch_at_target_is_timed_without_the_probes_and_stops_the_run(tmp_path, clock):
    result, run = _fit(tmp_path, clock, "eval.accuracy_target=0.5")  # epoch 2 reaches NDCG@10 .5 (rank 2)
    log = run.metrics()
    assert [r["epoch"] for r in log] == [1, 2]  # stop_at_target
    assert [r["test_probe"]["ndcg@10"] for r in log] == NDCG[:2]
    # each epoch's validation is on the clock (100 s each), the test probes (100 s each) are not
    assert [r["test_probe"]["pipeline_seconds"] for r in log] == [100.0, 200.0]
    assert [r["test_probe"]["probe_seconds"] for r in log] == [EVAL_SECONDS, EVAL_SECONDS]
    assert result["time_to_accuracy_s"] == 200.0 and result["accuracy_epoch"] == 2
    assert result["probe_best"] == NDCG[1] and result["probe_best_epoch"] == 2
    assert result["accuracy_target"] == 0.5 and result["accuracy_metric"] == "ndcg@10"
    assert result["pipeline_seconds"] == 200.0
    # the clock is in every checkpoint, so a resumed run continues it
    assert json.loads((run.latest / "state.json").read_text())["pipeline_seconds"] == 200.0
    on_disk = json.loads((run.path / "test_metrics.json").read_text())
    assert on_disk["time_to_accuracy_s"] == 200.0


def test_probes_select_nothing_and_an_unreached_target_is_none(tmp_path, clock):
    probed, _ = _fit(tmp_path / "probed", clock, "eval.accuracy_target=0.99", "eval.stop_at_target=false")
    plain, _ = _fit(tmp_path / "plain", clock, probe=False)
    assert probed["time_to_accuracy_s"] is None and probed["accuracy_epoch"] is None
    assert probed["probe_best"] == max(NDCG[:5]) and probed["probe_best_epoch"] == 2
    # same epochs, same best checkpoint, same test figures as a run without probes
    for key in ("epochs_run", "best_epoch", "best_valid"):
        assert probed[key] == plain[key]
    assert {k: v for k, v in probed["test"].items() if k != "users_per_s"} == \
        {k: v for k, v in plain["test"].items() if k != "users_per_s"}
    assert "time_to_accuracy_s" not in plain


def test_reached_target_without_stop_keeps_training_and_keeps_the_first_time(tmp_path, clock):
    result, run = _fit(tmp_path, clock, "eval.accuracy_target=0.5", "eval.stop_at_target=false", "train.patience=8")
    assert result["epochs_run"] == 8
    assert result["time_to_accuracy_s"] == 200.0 and result["accuracy_epoch"] == 2  # not epoch 6's
    assert result["probe_best"] == 1.0 and result["probe_best_epoch"] == 6


def test_a_resumed_probe_continues_the_interrupted_clock(clock):
    cfg = load_config(overrides=["eval.accuracy_target=0.1"])
    probe = AccuracyProbe(cfg, evaluator=None, clock_start=0.0)
    clock[0] = 30.0
    probe.resumed({"pipeline_seconds": 500.0})
    assert probe.pipeline_seconds() == 530.0
    assert not AccuracyProbe(load_config(), evaluator=None).enabled


def test_train_run_times_from_before_the_data_is_read(tmp_path, tiny_cfg):
    from pitrec.train.api import train_run

    result = train_run("sasrec", tiny_cfg(tmp_path / "run", "eval.accuracy_target=0.0001"))
    log = RunDir(tmp_path / "run").metrics()
    assert result["accuracy_epoch"] == 1 and result["epochs_run"] == 1  # reached at once, stopped
    # the clock started before loading and training, so the first probe comes after the first epoch's time
    assert result["time_to_accuracy_s"] == log[0]["test_probe"]["pipeline_seconds"] > log[0]["epoch_seconds"] > 0


def test_a_method_with_nothing_to_train_is_timed_by_its_final_test(tmp_path):
    from pitrec.train.api import train_run

    cfg = load_config("popularity", overrides=["data.synthetic_users=120", "data.synthetic_items=50",
                                               "run.progress=false", "run.num_threads=1", f"run.out={tmp_path / 'pop'}",
                                               "eval.accuracy_target=0.0001"])
    result = train_run("popularity", cfg)
    assert result["epochs_run"] == 0 and result["accuracy_epoch"] == 0
    assert result["probe_best"] == result["test"]["ndcg@10"] >= 0.0001
    assert result["time_to_accuracy_s"] == result["pipeline_seconds"] > 0
    unreachable = train_run("popularity", cfg.with_overrides(["eval.accuracy_target=1.0", f"run.out={tmp_path / 'p2'}"]))
    assert unreachable["time_to_accuracy_s"] is None and unreachable["probe_best"] == result["probe_best"]
