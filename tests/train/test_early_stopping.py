"""Early stopping and best-checkpoint selection, with a scripted recipe whose validation NDCG@10
per epoch is known in advance, so the expected stopping epoch and test metrics are exact."""

from __future__ import annotations

import math

import numpy as np
import torch

from pitrec.config import load_config
from pitrec.data.split import Split
from pitrec.eval.evaluator import Evaluator
from pitrec.train.recipe import Recipe
from pitrec.train.run_dir import RunDir
from pitrec.train.trainer import Trainer

N_ITEMS = 30
# rank (0-based) of the true next item in each epoch's list: NDCG@10 = 1 / log2(rank + 2)
RANK_BY_EPOCH = [6, 2, 5, 3, 4, 0, 0, 0]


def _successor_split(n_users: int = 12) -> Split:
    """Sequences u, u+1, u+2, u+3 (mod N_ITEMS): the next item is always last + 1."""
    seqs = [np.array([(u + i) % N_ITEMS for i in range(4)], dtype=np.int64) for u in range(n_users)]
    return Split(n_items=N_ITEMS, train=[s[:-2] for s in seqs], valid_history=[s[:-2] for s in seqs],
                 valid_target=np.array([s[-2] for s in seqs]), test_history=[s[:-1] for s in seqs],
                 test_target=np.array([s[-1] for s in seqs]), max_history=4)


class _Scripted(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3))
        self.register_buffer("rank", torch.tensor(RANK_BY_EPOCH[0]))


class _ScriptedRanker:
    """Puts the true next item at ``position`` of a list of distinct items."""

    def __init__(self, position: int):
        self.position = position

    def rank(self, history: torch.Tensor, k: int, exclude_history: bool = False) -> torch.Tensor:
        others = list(range(1, k))
        offsets = torch.tensor(others[:self.position] + [0] + others[self.position:])
        return (history[:, -1:] + 1 + offsets) % N_ITEMS


class ScriptedRecipe(Recipe):
    name = "scripted"

    def prepare(self) -> None:
        self.model = _Scripted()

    def modules(self):
        return {"scripted": self.model}

    def train_batches(self, epoch, rng):
        return [[0], [1]]

    def training_step(self, batch, step):
        return {"loss": (self.model.weight ** 2).sum()}

    def on_epoch_end(self, epoch):
        self.model.rank.fill_(RANK_BY_EPOCH[epoch])
        return {}

    def ranker(self):
        return _ScriptedRanker(int(self.model.rank))


def test_stops_after_patience_and_tests_the_best_checkpoint(tmp_path):
    cfg = load_config(overrides=["train.epochs=8", "train.patience=3", "run.progress=false"])
    split = _successor_split()
    recipe = ScriptedRecipe(cfg, None, split, torch.device("cpu"), None)
    recipe.prepare()
    run = RunDir(tmp_path).create()
    result = Trainer(cfg, recipe, Evaluator(split, ks=cfg.eval.ks), run=run).fit()

    ndcg = [1 / math.log2(r + 2) for r in RANK_BY_EPOCH]
    # epoch 2 is best (rank 2); epochs 3, 4, 5 do not beat it -> stop after epoch 5 (patience 3),
    # although epoch 6 would have been better still
    log = run.metrics()
    assert [r["epoch"] for r in log] == [1, 2, 3, 4, 5]
    assert [r["valid"]["ndcg@10"] for r in log] == ndcg[:5]
    assert result["best_epoch"] == 2 and result["epochs_run"] == 5
    assert result["best_valid"] == ndcg[1]
    # the model in memory ended at rank 4 (epoch 5); the test figures are those of the best one
    assert result["test"]["ndcg@10"] == ndcg[1]
    assert result["test"]["recall@5"] == 1.0
