"""train.optimizer_impl: the trainer's AdamW runs fused by default; the loop and foreach
implementations are the same algorithm (same weights after the same steps)."""

from __future__ import annotations

import pytest
import torch

from pitrec.eval.evaluator import Evaluator
from pitrec.train.api import build_recipe, prepare_data
from pitrec.train.trainer import Trainer, build_adamw


def _weights_after_steps(impl: str, steps: int = 6) -> list[torch.Tensor]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    decay = [p for p in net.parameters() if p.dim() >= 2]
    rest = [p for p in net.parameters() if p.dim() < 2]
    opt = build_adamw([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], 0.01, impl)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def test_the_three_implementations_reach_the_same_weights():
    loop = _weights_after_steps("loop")
    for impl in ("foreach", "fused"):
        for a, b in zip(loop, _weights_after_steps(impl)):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    untrained = _weights_after_steps("loop", steps=0)
    assert any(not torch.allclose(a, b) for a, b in zip(loop, untrained))  # the steps did move them


def test_the_trainer_builds_the_configured_implementation(tiny_cfg):
    for impl, fused, foreach in (("fused", True, None), ("foreach", None, True), ("loop", None, False)):
        cfg = tiny_cfg(None, f"train.optimizer_impl={impl}")
        data, split = prepare_data(cfg)
        trainer = Trainer(cfg, build_recipe("sasrec", cfg, data, split), Evaluator(split, ks=(5,), max_users=5))
        trainer._build_optimizer()
        assert trainer.optimizer.defaults["fused"] is fused and trainer.optimizer.defaults["foreach"] is foreach
    with pytest.raises(Exception, match="optimizer_impl"):
        tiny_cfg(None, "train.optimizer_impl=sgd")
    with pytest.raises(ValueError, match="optimizer_impl"):
        build_adamw([{"params": [torch.nn.Parameter(torch.zeros(2))]}], 0.1, "sgd")
