"""A CPU run builds and trains under torch's deterministic algorithms unless ``run.deterministic``
is off: with several threads, indexing a parameter by a tensor (CSA, Item-to-Token, RQ-VAE)
otherwise has a backward whose sums depend on thread scheduling, and two processes with one seed
trained different PIT weights on the synthetic data (identical with the mode on)."""

from __future__ import annotations

import pytest
import torch

from pitrec.train import trainer as trainer_module
from pitrec.train.api import train_run


@pytest.mark.parametrize("deterministic", [True, False])
def test_training_runs_in_the_deterministic_mode_the_config_asks_for(tiny_cfg, monkeypatch, deterministic):
    seen = []
    fit = trainer_module.Trainer.fit

    def spy(self):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return fit(self)

    monkeypatch.setattr(trainer_module.Trainer, "fit", spy)
    assert not torch.are_deterministic_algorithms_enabled()
    train_run("sasrec", tiny_cfg(None, "train.epochs=1", f"run.deterministic={str(deterministic).lower()}"))
    assert seen == [deterministic]
    assert not torch.are_deterministic_algorithms_enabled()  # restored for whatever the process does next
