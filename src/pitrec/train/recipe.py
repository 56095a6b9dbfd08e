"""The seam between the generic training loop and a method.

A recipe builds its stages and models (``prepare``), hands the loop its batches and its loss, and
answers ranking queries for evaluation. Everything else (optimiser, schedule, early stopping,
checkpoints, resume, logging, timing) is the ``Trainer``'s job and therefore identical for every
method in a comparison.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from pitrec.data.interactions import Interactions
from pitrec.data.split import Split
from pitrec.eval.evaluator import Ranker


class Recipe(ABC):
    name: ClassVar[str] = "recipe"
    trainable: ClassVar[bool] = True
    # DDP must be told when some parameters get no gradient in a step (e.g. an encoding table
    # only one history encoding uses, or PIT's frozen I2T); finding them costs a walk of the
    # autograd graph per step, so a recipe whose every parameter always trains turns it off
    ddp_find_unused_parameters: ClassVar[bool] = True
    # a run directory whose checkpoint this recipe will load (re-evaluation, resume): its SID
    # table is read rather than built again (``pitrec.tokenizers.stage.trained_sid_table``)
    sids_from: Path | None = None

    def __init__(self, cfg, data: Interactions, split: Split, device: torch.device, run=None):
        self.cfg = cfg
        self.data = data
        self.split = split
        self.device = device
        self.run = run  # RunDir or None (in-memory runs in tests)

    # -- building ---------------------------------------------------------------------------
    @abstractmethod
    def prepare(self) -> None:
        """Build (or load cached) stage artifacts and the models, on ``self.device``."""

    def modules(self) -> dict[str, torch.nn.Module]:
        """Everything that is checkpointed, by name."""
        return {}

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups; the default applies weight decay to matrices only."""
        decay, no_decay = [], []
        for mod in self.modules().values():
            for p in mod.parameters():
                if p.requires_grad:
                    (decay if p.dim() >= 2 else no_decay).append(p)
        wd = self.cfg.train.weight_decay
        return [g for g in ({"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}) if g["params"]]

    # -- training ---------------------------------------------------------------------------
    def train_batches(self, epoch: int, rng: np.random.Generator) -> Sequence[Any]:
        """The epoch's batches, as a list so a resumed run can skip those already done."""
        return []

    def training_step(self, batch: Any, step: int) -> dict[str, torch.Tensor]:
        """Losses of one batch; ``loss`` is back-propagated, the rest are logged."""
        raise NotImplementedError

    def batch_size_of(self, batch: Any) -> int:
        return len(batch)

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        """Extra per-epoch statistics to log (e.g. SID churn)."""
        return {}

    # -- evaluation / state -------------------------------------------------------------------
    @abstractmethod
    def ranker(self) -> Ranker:
        ...

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Non-module state that must survive a resume (tensors, JSON)."""
        return {}, {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        pass

    def save_artifacts(self, run) -> None:
        """Write recipe artifacts (SID table, beam index...) into the run directory at the end."""

    def train(self, mode: bool = True) -> None:
        for m in self.modules().values():
            m.train(mode)
