"""Content kNN: every item ranked by the cosine similarity of its content embedding (the one the
generative methods tokenise) to the user's last items. No training.

Why it is in the comparison: a generator on content-only SIDs can only recommend what the SIDs let
it tell apart, and the SIDs are built from these embeddings. If it does not beat ranking by the
embeddings themselves, the budget did not let it learn the sequence (at 30 CPU-minutes content-SID
TIGER's test NDCG@10 was .0176 on beauty and .0068 on sports, this .0217 and .0131;
benchmarks/results/, benchmarks/tuning/content_sids_sports.md).

Score of item i: sum over the last ``knn.last_items`` history items h_j (latest j = 0) of
``knn.decay``^j cos(x_i, x_{h_j}). The query items themselves are not recommended (an item is
its own nearest neighbour); a user without history gets the training popularity order. The unit
embeddings and the counts are saved in the run directory, so serving needs no dataset.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from pitrec.config import Section
from pitrec.data.batches import PAD, recent_rows_sum
from pitrec.embed.stage import item_embeddings
from pitrec.eval.evaluator import topk_from_scores
from pitrec.registry import RECIPES, SECTIONS
from pitrec.train.recipe import Recipe
from pitrec.utils.io import atomic_save_npy

VECTORS_FILE = "knn_item_vectors.npy"
COUNTS_FILE = "knn_item_counts.npy"


@SECTIONS.register("knn")
class ContentKNNConfig(Section):
    last_items: int = Field(1, ge=1)  # how many of the latest history items query the neighbours
    decay: float = Field(0.5, gt=0, le=1)  # weight of the j-th latest item: decay ** j


class ContentKNNRanker:
    def __init__(self, unit_vectors: torch.Tensor, counts: torch.Tensor, last_items: int, decay: float):
        self.unit = unit_vectors.float()
        self.last_items, self.decay = last_items, decay
        # users without history: the popularity order, ties by item id (as the popularity baseline),
        # as ranks (n for the most popular item), exact in float32 where counts minus offsets are not
        order = torch.argsort(-counts, stable=True)
        self.fallback = torch.empty(len(counts)).index_put_((order,), torch.arange(len(counts), 0, -1).float())

    def scores(self, history: torch.Tensor) -> torch.Tensor:
        """history (B, T) left-padded with PAD -> (B, n_items); query items -inf."""
        unit = self.unit.to(history.device)
        latest = history[:, -self.last_items:]
        real = latest != PAD
        scores = recent_rows_sum(unit, history, self.last_items, self.decay) @ unit.T
        rows = torch.arange(len(history), device=history.device).unsqueeze(1).expand_as(latest)
        scores[rows[real], latest[real]] = float("-inf")
        empty = ~real.any(1)
        if empty.any():
            scores[empty] = self.fallback.to(device=history.device, dtype=scores.dtype)
        return scores

    def rank(self, history: torch.Tensor, k: int, exclude_history: bool = False) -> torch.Tensor:
        return topk_from_scores(self.scores(history), k, history if exclude_history else None)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


@RECIPES.register("content-knn")
class ContentKNNRecipe(Recipe):
    name = "content-knn"
    trainable = False

    def prepare(self) -> None:
        vectors = item_embeddings(self.cfg, self.data)
        if vectors.shape[0] != self.split.n_items:
            raise ValueError(f"content embeddings have {vectors.shape[0]} rows, the dataset {self.split.n_items} items")
        self.unit = unit_rows(vectors)
        self.counts = self.split.train_item_counts()

    def ranker(self) -> ContentKNNRanker:
        kc = self.cfg.knn
        return ContentKNNRanker(torch.from_numpy(self.unit), torch.from_numpy(self.counts), kc.last_items, kc.decay)

    def save_artifacts(self, run) -> None:
        atomic_save_npy(run.path / VECTORS_FILE, self.unit)
        atomic_save_npy(run.path / COUNTS_FILE, self.counts)
