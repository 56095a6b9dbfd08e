"""SASRec recipe: every position of every training sequence is a next-item target.

Sequences longer than ``sasrec.max_len`` are cut into consecutive windows so that no training
target is dropped (on Amazon Beauty 12% of the targets sit beyond the last 20 items of a few
long histories). Batches group windows of similar length: most histories are short (median 4),
so a random batch padded to its longest member spends most of its transformer time on padding.
"""

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


def training_windows(train: list[np.ndarray], max_len: int) -> list[np.ndarray]:
    """Cut each sequence into windows of at most ``max_len + 1`` items, counted back from its end,
    whose targets (items 1..) together cover every item after the first exactly once."""
    windows = []
    for seq in train:
        end = len(seq)
        while end >= 2:
            windows.append(seq[max(0, end - max_len - 1):end])
            end -= max_len
    return windows


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                            window_batches: int = 64) -> list[np.ndarray]:
    """Shuffle, sort by length inside windows of ``window_batches`` batches, cut into batches and
    shuffle the batch order: batches stay random in content but have little padding."""
    order = rng.permutation(len(lengths))
    window = batch_size * window_batches
    chunks = [order[s:s + window] for s in range(0, len(order), window)]
    order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in chunks]) if chunks else order
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


@RECIPES.register("sasrec")
class SASRecRecipe(Recipe):
    name = "sasrec"
    ddp_find_unused_parameters = False  # every parameter enters every loss

    def prepare(self) -> None:
        mc = self.cfg.sasrec
        if self.cfg.train.long_history_stride != 1:
            raise ValueError("train.long_history_stride applies to TIGER's and PIT's prefix windows; SASRec "
                             "trains on whole sequences of sasrec.max_len items (leave it at 1)")
        self.model = SASRec(self.split.n_items, mc).to(self.device)
        windows = training_windows(self.split.train, mc.max_len)
        if not windows:
            raise ValueError("sasrec: no training sequence has two or more items; nothing to learn from")
        self.inputs = left_pad([w[:-1] for w in windows], mc.max_len)
        self.targets = left_pad([w[1:] for w in windows], mc.max_len)
        self.lengths = (self.inputs != PAD).sum(axis=1)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"sasrec": self.model}

    def train_batches(self, epoch: int, rng: np.random.Generator) -> list[np.ndarray]:
        bs = self.cfg.train.batch_size
        if self.cfg.sasrec.bucket_by_length:
            return length_bucketed_batches(self.lengths, bs, rng)
        order = rng.permutation(len(self.inputs))
        return [order[i:i + bs] for i in range(0, len(order), bs)]

    def training_step(self, batch: np.ndarray, step: int) -> dict[str, torch.Tensor]:
        inputs = trim_columns(self.inputs[batch])
        targets = self.targets[batch][:, -inputs.shape[1]:]
        inputs = torch.from_numpy(inputs).to(self.device)
        targets = torch.from_numpy(targets).to(self.device)
        return {"loss": self.model.loss(inputs, targets)}

    def batch_size_of(self, batch: np.ndarray) -> int:
        return int(self.lengths[batch].sum())

    def ranker(self) -> SASRecRanker:
        return SASRecRanker(self.model)
