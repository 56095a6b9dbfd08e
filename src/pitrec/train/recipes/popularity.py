"""Popularity: every user gets the items most often interacted with in training."""

from __future__ import annotations

import torch

from pitrec.eval.evaluator import topk_from_scores
from pitrec.registry import RECIPES
from pitrec.train.recipe import Recipe


class PopularityRanker:
    def __init__(self, counts: torch.Tensor):
        # ties broken by item id (a tiny decreasing offset), so results are deterministic
        self.scores = counts.double() - torch.arange(len(counts), dtype=torch.float64) * 1e-9

    def rank(self, history: torch.Tensor, k: int, exclude_history: bool = False) -> torch.Tensor:
        scores = self.scores.to(history.device).unsqueeze(0).expand(history.shape[0], -1)
        return topk_from_scores(scores, k, history if exclude_history else None)


@RECIPES.register("popularity")
class PopularityRecipe(Recipe):
    name = "popularity"
    trainable = False

    def prepare(self) -> None:
        self.counts = torch.from_numpy(self.split.train_item_counts())

    def ranker(self) -> PopularityRanker:
        return PopularityRanker(self.counts)
