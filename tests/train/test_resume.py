"""A run interrupted mid-training and continued with ``resume`` ends exactly where the straight
run does: same parameters, same validation curve, same test metrics."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from pitrec.train.api import train_run
from pitrec.train.recipes.sasrec import SASRecRecipe
from pitrec.train.run_dir import RunDir


class SimulatedCrash(RuntimeError):
    pass


def _crash_at(monkeypatch, crash_step: int) -> None:
    original = SASRecRecipe.training_step

    def crashing(self, batch, step):
        if step == crash_step:
            raise SimulatedCrash(f"killed at step {step}")
        return original(self, batch, step)

    monkeypatch.setattr(SASRecRecipe, "training_step", crashing)


def _assert_same_parameters(a, b) -> None:
    for which in ("latest", "best"):
        pa = load_file(str(a / "checkpoint" / which / "model.safetensors"))
        pb = load_file(str(b / "checkpoint" / which / "model.safetensors"))
        assert pa.keys() == pb.keys()
        for key in pa:
            assert torch.equal(pa[key], pb[key]), f"{which}/{key} differs after resume"


@pytest.mark.parametrize("save_every_steps, crash_step, resumed_from_step", [
    (0, 6, 5),  # per-epoch checkpoints only: crash early in epoch 2, redo it from its start
    (2, 7, 6),  # mid-epoch checkpoints: crash inside epoch 2, continue from its 6th step
])
def test_interrupted_run_resumes_to_the_straight_result(straight_run, tiny_cfg, without_timings, tmp_path, monkeypatch,
                                                        save_every_steps, crash_step, resumed_from_step):
    straight_dir, straight = straight_run
    out = tmp_path / "run"
    cfg = tiny_cfg(out, f"train.save_every_steps={save_every_steps}")
    _crash_at(monkeypatch, crash_step)
    with pytest.raises(SimulatedCrash):
        train_run("sasrec", cfg)
    monkeypatch.undo()

    state = json.loads((out / "checkpoint" / "latest" / "state.json").read_text())
    assert state["step"] == resumed_from_step and not state["done"]
    with pytest.raises(FileExistsError, match="--resume"):
        train_run("sasrec", cfg)  # a fresh start must not silently overwrite the interrupted run

    resumed = train_run("sasrec", cfg, resume=True)
    assert without_timings(resumed) == without_timings(straight)
    assert resumed["steps"] == straight["steps"] > crash_step
    _assert_same_parameters(out, straight_dir)
    # the log has one line per epoch, with the same losses and validation metrics
    assert without_timings(RunDir(out).metrics()) == without_timings(RunDir(straight_dir).metrics())


def test_resuming_a_finished_run_only_re_evaluates(straight_run, tiny_cfg, without_timings, tmp_path):
    straight_dir, straight = straight_run
    out = tmp_path / "run"
    first = train_run("sasrec", tiny_cfg(out))
    again = train_run("sasrec", tiny_cfg(out), resume=True)
    assert without_timings(again) == without_timings(first) == without_timings(straight)
    assert len(RunDir(out).metrics()) == 3


def test_a_log_line_written_after_the_last_checkpoint_is_not_duplicated(tmp_path):
    run = RunDir(tmp_path).create()
    for step in (5, 10, 15):
        run.log_metrics({"epoch": step // 5, "step": step})
    with open(run.metrics_path, "a") as fh:
        fh.write('{"epoch": 4, "st')  # torn by a crash mid-append
    run.drop_metrics_after(10)
    run.log_metrics({"epoch": 3, "step": 15})
    assert [r["epoch"] for r in run.metrics()] == [1, 2, 3]
