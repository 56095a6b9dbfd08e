"""The cold-start benchmark trains as the bench row it names, with only its own run settings on top."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

from pitrec.bench.plan import plan_runs
from pitrec.bench.spec import load_bench

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from cold_start import (DEMO_OVERLAY, cold_cases, cold_start_config, content_knn_cold,  # noqa: E402
                        default_label, ranked_metrics, warm_sample, without_items)

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
    with pytest.raises(SystemExit, match="not from --data or --overlay"):
        cold_start_config(_args(bench=main, method=ROW, data="x"), [])
    with pytest.raises(SystemExit, match="not from --data or --overlay"):
        cold_start_config(_args(bench=main, method=ROW, overlay="extra.yaml"), [])
    with pytest.raises(SystemExit, match="without --bench"):
        cold_start_config(_args(method=ROW), [])


def test_without_bench_the_synthetic_data_is_the_default():
    cfg = cold_start_config(_args(), [])
    assert cfg.data.format == "synthetic" and cfg.run.seed == 1 and cfg.run.out == "runs/cold-x"
    # the demo overlay applies unless another (or none: "") is given
    assert cfg.to_dict() == cold_start_config(_args(overlay=str(DEMO_OVERLAY)), []).to_dict()
    assert cfg.to_dict() != cold_start_config(_args(overlay=""), []).to_dict()


def _catalogue(tmp_path: Path):
    """Five items on the unit circle at 0, 10, 80, 90 and 180 degrees; item "d" (90) is held out."""
    from pitrec.data.interactions import Interactions

    angles = np.radians([0, 10, 80, 90, 180])
    npy = tmp_path / "vectors.npy"
    np.save(npy, np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32))
    data = Interactions(sequences=[np.array([0, 1, 3]), np.array([2, 3, 4]), np.array([3, 0, 1])],
                        user_ids=["u1", "u2", "u3"], item_ids=["a", "b", "c", "d", "e"])
    cfg = cold_start_config(_args(), ["embed.encoder=npy", f"embed.npy_path={npy}", "knn.last_items=1"])
    return cfg, data


def test_cold_cases_are_first_held_out_items_after_position_zero(tmp_path):
    _, data = _catalogue(tmp_path)
    histories, targets = cold_cases(data, np.array([3]))
    # u3 starts with the held-out item: no history before it, not a cold case
    assert histories == [["a", "b"], ["c"]] and targets == ["d", "d"]
    reduced, info = without_items(data, np.array([3]), min_len=2)
    assert reduced.item_ids == ["a", "b", "c", "e"] and info == {"users_dropped": 0, "items_kept": 4}
    assert [s.tolist() for s in reduced.sequences] == [[0, 1], [2, 3], [0, 1]]


def test_content_knn_on_cold_cases_matches_hand_ranking(tmp_path):
    cfg, data = _catalogue(tmp_path)
    # last item b (10 deg): a (10 off), c (70), d (80), e (170) -> d at rank 3 (0-based 2);
    # last item c (80 deg): d (10 off) first
    got = content_knn_cold(cfg, data, [["a", "b"], ["c"]], ["d", "d"], new_items={3})
    assert got["recall@10"] == 1.0 and got["recall@20"] == 1.0
    assert got["ndcg@10"] == pytest.approx((1 / np.log2(4) + 1.0) / 2)
    # top-10 slots: 4 candidates per user (query item excluded) + -1 padding; d fills one per user
    assert got["new_item_share_of_top10"] == pytest.approx(2 / 20)


def test_ranked_metrics_counts_hits_on_ids_and_the_new_items_share_of_ten_slots():
    from types import SimpleNamespace as NS

    class FakeService:
        def recommend_many(self, histories, k, explain):
            assert k == 20 and explain is False
            rows = [["x", "new1", "y"], ["z"]]  # user 1's target y at rank 3; user 2 misses
            return NS(results=[NS(items=[NS(id=i) for i in row]) for row in rows])

    got = ranked_metrics(FakeService(), [["a"], ["b"]], ["y", "q"], new={"new1"})
    assert got["recall@10"] == 0.5 and got["ndcg@10"] == pytest.approx(0.5 / np.log2(4))
    assert got["new_item_share_of_top10"] == pytest.approx(1 / 20)


def test_warm_sample_takes_test_histories_and_targets_in_raw_ids(tmp_path):
    from pitrec.data.split import leave_one_out

    _, data = _catalogue(tmp_path)
    split = leave_one_out(data, max_history=20, min_interactions=3)
    histories, targets = warm_sample(data, split, n=5, seed=0)
    assert sorted(zip(map(tuple, histories), targets)) == [(("a", "b"), "d"), (("c", "d"), "e"), (("d", "a"), "b")]
