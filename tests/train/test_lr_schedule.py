"""train.lr_schedule: a linear warm-up, then constant or a cosine decay over the training budget
(train.epochs, or train.max_minutes when that ends first)."""

from __future__ import annotations

import math

import pytest

from pitrec.train.api import train_run
from pitrec.train.trainer import Trainer
from pitrec.utils.io import read_jsonl


def _trainer(tiny_cfg, *overrides):
    cfg = tiny_cfg(None, *overrides)
    trainer = Trainer.__new__(Trainer)  # the schedule reads only cfg and state
    trainer.cfg, trainer.state = cfg, {"step": 0}
    return trainer


def test_cosine_rates_by_hand(tiny_cfg):
    t = _trainer(tiny_cfg, "train.lr=0.01", "train.warmup_steps=4", "train.lr_schedule=cosine",
                 "train.min_lr_ratio=0.1")
    assert [t._lr_at(s) for s in range(4)] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])
    assert t._lr_at(10, 0.0) == pytest.approx(0.01)
    assert t._lr_at(10, 0.5) == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))
    assert t._lr_at(10, 0.25) == pytest.approx(0.01 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))))
    assert t._lr_at(10, 1.0) == pytest.approx(0.001)
    assert t._lr_at(10, 3.0) == pytest.approx(0.001)  # past the budget: the floor, not a rise
    constant = _trainer(tiny_cfg, "train.lr=0.01", "train.warmup_steps=4")
    assert constant._lr_at(10, 0.9) == pytest.approx(0.01)


def test_budget_used_takes_the_tighter_of_steps_and_minutes(tiny_cfg):
    t = _trainer(tiny_cfg, "train.epochs=10")
    t.state["step"] = 25
    assert t._budget_used(10, elapsed_s=0.0, budget_s=math.inf) == pytest.approx(0.25)
    assert t._budget_used(10, elapsed_s=30.0, budget_s=60.0) == pytest.approx(0.5)
    assert t._budget_used(10, elapsed_s=6.0, budget_s=60.0) == pytest.approx(0.25)


def test_a_cosine_run_decays_to_the_floor_over_its_epochs(tiny_cfg, tmp_path):
    """End to end: the logged rate (the last step's of each epoch) falls every epoch and the last
    epoch ends at the floor; the constant run logs the same rate throughout."""
    rates = {}
    for schedule in ("constant", "cosine"):
        out = tmp_path / schedule
        train_run("sasrec", tiny_cfg(out, "train.epochs=4", "train.lr=0.004", "train.warmup_steps=0",
                           f"train.lr_schedule={schedule}", "train.min_lr_ratio=0.05"))
        rates[schedule] = [r["lr"] for r in read_jsonl(out / "metrics.jsonl")]
    assert rates["constant"] == pytest.approx([0.004] * 4)
    cos = rates["cosine"]
    assert len(cos) == 4 and all(a > b for a, b in zip(cos, cos[1:]))
    # the last step of epoch e runs at progress (e * steps - 1) / (4 * steps), just below e / 4
    assert cos[1] == pytest.approx(0.004 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 2 / 4))), rel=0.15)
    assert cos[-1] == pytest.approx(0.004 * 0.05, rel=0.5)


def test_the_cpu_budget_clock_ignores_time_spent_waiting(tiny_cfg):
    """A neighbour's load shows up as waiting: it moves the wall clock, hardly the CPU clock."""
    import time
    clocks = {}
    for clock in ("wall", "cpu"):
        t = _trainer(tiny_cfg, f"train.budget_clock={clock}")
        t.state.update(train_seconds=5.0, train_cpu_seconds=100.0)
        t._segment_start = (time.perf_counter(), time.process_time())
        time.sleep(0.3)
        clocks[clock] = t._budget_clock()
    assert clocks["wall"] == pytest.approx(5.3, abs=0.1)
    assert 100.0 <= clocks["cpu"] < 100.1


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_a_spent_budget_stops_training_after_the_step_that_spent_it(tiny_cfg, tmp_path, clock):
    out = tmp_path / clock
    result = train_run("sasrec", tiny_cfg(out, "train.epochs=20", "train.max_minutes=0.00001",
                                          f"train.budget_clock={clock}"))
    assert result["steps"] == 1 and result["epochs_run"] == 0
    assert len(read_jsonl(out / "metrics.jsonl")) == 1  # the cut epoch is logged and validated once
