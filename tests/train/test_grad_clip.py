"""Gradient clipping per model: an auxiliary model's large gradient must not shrink another's."""

from __future__ import annotations

import torch

from pitrec.train.trainer import clip_per_module


def _with_grad(values: list[float]) -> torch.nn.Linear:
    m = torch.nn.Linear(len(values), 1, bias=False)
    m.weight.grad = torch.tensor([values])
    return m


def test_each_model_is_clipped_on_its_own():
    big, small = _with_grad([30.0, 40.0]), _with_grad([0.3, 0.4])  # norms 50 and 0.5
    frozen = torch.nn.Linear(2, 1)  # no gradients at all: skipped
    clip_per_module([big, small, frozen], 1.0)
    torch.testing.assert_close(big.weight.grad.norm(), torch.tensor(1.0))
    torch.testing.assert_close(small.weight.grad, torch.tensor([[0.3, 0.4]]))  # a global norm would scale it by 1/50
    assert frozen.weight.grad is None
