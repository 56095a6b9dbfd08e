"""Checkpoints are safetensors + JSON, round-trip exactly, and a failure in the middle of a save
leaves the previous checkpoint whole and loadable."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch

import pitrec.train.checkpoint as checkpoint
from pitrec.train.checkpoint import load_checkpoint, save_checkpoint


def _model_and_optimizer(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(torch.randn(5, 4)).pow(2).sum().backward()
    opt.step()
    return model, opt


def test_round_trip_restores_modules_optimizer_extra_tensors_and_state(tmp_path):
    model, opt = _model_and_optimizer(0)
    extra = {"codes": torch.arange(6).reshape(2, 3)}
    save_checkpoint(tmp_path / "ck", {"net": model}, {"epoch": 3, "best": 0.25}, optimizer=opt, extra_tensors=extra)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "extra.safetensors", "model.safetensors", "optimizer.safetensors", "state.json"]
    json.loads((tmp_path / "ck" / "state.json").read_text())  # plain JSON, no pickles

    other, other_opt = _model_and_optimizer(1)
    state, extra_back = load_checkpoint(tmp_path / "ck", {"net": other}, other_opt)
    assert state["epoch"] == 3 and state["best"] == 0.25
    assert torch.equal(extra_back["codes"], extra["codes"])
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    saved, loaded = opt.state_dict()["state"], other_opt.state_dict()["state"]
    assert saved.keys() == loaded.keys()
    for pid in saved:
        for key in saved[pid]:
            assert torch.equal(torch.as_tensor(saved[pid][key]), torch.as_tensor(loaded[pid][key]))


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, opt = _model_and_optimizer(0)
    target = tmp_path / "checkpoint" / "latest"
    save_checkpoint(target, {"net": model}, {"step": 1}, optimizer=opt)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    real_save_file = safetensors.torch.save_file

    def dies_on_the_optimizer(tensors, filename, *args, **kwargs):
        if filename.endswith("optimizer.safetensors"):
            raise OSError("disk full (simulated)")
        return real_save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", dies_on_the_optimizer)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(target, {"net": model}, {"step": 2}, optimizer=opt)
    monkeypatch.undo()

    assert sorted(p.name for p in target.parent.iterdir()) == ["latest"]  # no half-written leftovers
    fresh, fresh_opt = _model_and_optimizer(5)
    state, _ = load_checkpoint(target, {"net": fresh}, fresh_opt)
    assert state["step"] == 1
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, before[key])


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    model, _ = _model_and_optimizer(0)
    save_checkpoint(tmp_path / "ck", {"net": model}, {})
    with pytest.raises(RuntimeError, match="does not match module 'net'"):
        load_checkpoint(tmp_path / "ck", {"net": torch.nn.Linear(4, 3)})
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "missing", {"net": model})
