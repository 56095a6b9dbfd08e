"""The cold-start benchmark trains as the bench row it names, with only its own run settings on top."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from pitrec.bench.plan import plan_runs
from pitrec.bench.spec import load_bench

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from cold_start import cold_start_config, default_label  # noqa: E402

ROW = "pit/cf-lean-stride-ffn256-below-capped-siblings-frozen8-wd"


def _args(**kw) -> argparse.Namespace:
    base = dict(data=None, held_out=0.05, seed=1, threads=1, overlay=None, out="runs/cold-x", label=None,
                reuse=False, bench=None, method=None, dataset=None)
    return argparse.Namespace(**{**base, **kw})


def test_bench_row_config_is_the_rows_but_for_the_run_settings():
    args = _args(bench=str(ROOT / "benchmarks/main.yaml"), method=ROW, dataset="beauty")
    cfg = cold_start_config(args, ["pit.beam_width=6"]).to_dict()
    runs, _ = plan_runs(load_bench(ROOT / "benchmarks/main.yaml"), methods=[ROW], datasets=["beauty"])
    row = next(r for r in runs if r.seed == 1).cfg.to_dict()
    assert cfg["run"]["out"] == "runs/cold-x" and row["run"]["out"] != "runs/cold-x"
    assert cfg["pit"]["beam_width"] == 6
    for section in row:
        mine, theirs = dict(cfg[section]), dict(row[section])
        if section == "run":
            for key in ("out", "num_threads"):
                mine.pop(key), theirs.pop(key)
        if section == "pit":
            mine.pop("beam_width"), theirs.pop("beam_width")
        assert mine == theirs, section
    assert cfg["train"]["weight_decay"] == 0.1 and cfg["train"]["max_minutes"] == 30
    assert cfg["data"]["path"].endswith("amazon2014/beauty") and cfg["eval"]["valid_users"] == 3000
    assert default_label(args) == f"beauty-{ROW}-seed1"


def test_bench_row_must_be_one_pit_row_and_data_comes_from_it():
    main = str(ROOT / "benchmarks/main.yaml")
    with pytest.raises(SystemExit, match="one PIT row"):
        cold_start_config(_args(bench=main, method="tiger/cf-stride-ffn256-wd", dataset="beauty"), [])
    with pytest.raises(SystemExit, match="not --data"):
        cold_start_config(_args(bench=main, method=ROW, data="x"), [])
    with pytest.raises(SystemExit, match="without --bench"):
        cold_start_config(_args(method=ROW), [])


def test_without_bench_the_synthetic_data_is_the_default():
    cfg = cold_start_config(_args(), [])
    assert cfg.data.format == "synthetic" and cfg.run.seed == 1 and cfg.run.out == "runs/cold-x"
