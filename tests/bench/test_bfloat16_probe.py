"""The bfloat16 probe times the same products in both dtypes, records what the machine offers,
and keeps one record per label."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "tuning"))
import bfloat16_probe  # noqa: E402


def test_both_dtypes_compute_the_same_products():
    for case in bfloat16_probe.CASES:
        f32, b16 = bfloat16_probe._call(case, torch.float32)(), bfloat16_probe._call(case, torch.bfloat16)()
        assert f32.dtype == torch.float32 and b16.dtype == torch.bfloat16 and f32.shape == b16.shape
        torch.testing.assert_close(b16.float(), f32, rtol=0.05, atol=0.5)  # bfloat16 keeps 8 bits of mantissa


def test_a_run_records_timings_and_the_machine_and_replaces_its_label(tmp_path, monkeypatch):
    monkeypatch.setattr(bfloat16_probe, "RESULTS", tmp_path)
    for _ in range(2):
        monkeypatch.setattr(sys, "argv", ["bfloat16_probe.py", "--repeats", "2", "--label", "t"])
        bfloat16_probe.main()
    doc = json.loads((tmp_path / "bfloat16_probe.json").read_text())
    (run,) = doc["runs"]
    assert run["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and run["repeats"] == 2
    for t in run["timings"].values():
        assert t["float32_ms"] > 0 and t["bfloat16_over_float32"] == t["bfloat16_ms"] / t["float32_ms"]
    assert "| t |" in (tmp_path / "bfloat16_probe.md").read_text()
