"""SASRec recipe: each user's training sequence is one sample and every position is a target."""

from __future__ import annotations

import numpy as np
import torch

from pitrec.data.batches import PAD, left_pad, trim_columns
from pitrec.eval.evaluator import topk_from_scores
from pitrec.models.sasrec import SASRec
from pitrec.registry import RECIPES
from pitrec.train.recipe import Recipe


class SASRecRanker:
    def __init__(self, model: SASRec):
        self.model = model

    @torch.no_grad()
    def rank(self, history: torch.Tensor, k: int, exclude_history: bool = False) -> torch.Tensor:
        return topk_from_scores(self.model.scores(history), k, history if exclude_history else None)


@RECIPES.register("sasrec")
class SASRecRecipe(Recipe):
    name = "sasrec"

    def prepare(self) -> None:
        mc = self.cfg.sasrec
        self.model = SASRec(self.split.n_items, mc).to(self.device)
        seqs = [s[-(mc.max_len + 1):] for s in self.split.train if len(s) >= 2]
        self.inputs = left_pad([s[:-1] for s in seqs], mc.max_len)
        self.targets = left_pad([s[1:] for s in seqs], mc.max_len)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"sasrec": self.model}

    def train_batches(self, epoch: int, rng: np.random.Generator):
        order = rng.permutation(len(self.inputs))
        bs = self.cfg.train.batch_size
        return [order[i:i + bs] for i in range(0, len(order), bs)]

    def training_step(self, batch: np.ndarray, step: int) -> dict[str, torch.Tensor]:
        inputs = trim_columns(self.inputs[batch])
        targets = self.targets[batch][:, -inputs.shape[1]:]
        inputs = torch.from_numpy(inputs).to(self.device)
        targets = torch.from_numpy(targets).to(self.device)
        return {"loss": self.model.loss(inputs, targets)}

    def batch_size_of(self, batch: np.ndarray) -> int:
        return int((self.targets[batch] != PAD).sum())

    def ranker(self) -> SASRecRanker:
        return SASRecRanker(self.model)
