"""Methods that score every item (SASRec, popularity, content kNN): top-k of a full score vector,
exactly as their evaluation rankers do (``topk_from_scores``), with the scores returned too."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from pitrec.data.errors import DataError
from pitrec.eval.evaluator import topk_from_scores
from pitrec.models.sasrec import SASRec
from pitrec.serve.engines.base import Engine, Ranked
from pitrec.serve.loader import RunDirError, ServedRun
from pitrec.train.recipes.content_knn import COUNTS_FILE, VECTORS_FILE, ContentKNNRanker
from pitrec.train.recipes.popularity import PopularityRanker


class ScoreEngine(Engine):
    version = 0

    def __init__(self, method: str, n_items: int, score_fn: Callable[[torch.Tensor], torch.Tensor]):
        self.method, self.n_items, self.score_fn = method, n_items, score_fn

    @torch.no_grad()
    def rank(self, history: torch.Tensor, k: int, exclude_history: bool, explain: bool = True) -> list[list[Ranked]]:
        scores = self.score_fn(history)
        items = topk_from_scores(scores, k, history if exclude_history else None)
        picked = scores.gather(1, items.clamp(min=0))
        return [[Ranked(i, s) for i, s in zip(row_items, row_scores) if i >= 0]
                for row_items, row_scores in zip(items.tolist(), picked.tolist())]


def load_score_engine(run: ServedRun, device: str | torch.device) -> ScoreEngine:
    n = len(run.catalog)
    device = torch.device(device)
    if run.method == "sasrec":
        model = SASRec(n, run.cfg.sasrec)
        run.load_modules({"sasrec": model})
        model.to(device).eval()
        return ScoreEngine("sasrec", n, lambda history: model.scores(history.to(device)))
    if run.method == "content-knn":
        return ScoreEngine("content-knn", n, _knn_scores(run, n, device))
    return ScoreEngine("popularity", n, _popularity_scores(run))


def _knn_scores(run: ServedRun, n: int, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    arrays = []
    for name in (VECTORS_FILE, COUNTS_FILE):
        try:
            arrays.append(np.load(run.path / name, allow_pickle=False))
        except (OSError, ValueError, EOFError) as exc:
            raise RunDirError(f"{run.path / name}: missing or unreadable; a content-knn run directory holds "
                              f"its item vectors and counts ({exc})") from None
    vectors, counts = arrays
    if vectors.ndim != 2 or len(vectors) != n or counts.shape != (n,):
        raise RunDirError(f"{run.path}: {VECTORS_FILE} {vectors.shape} and {COUNTS_FILE} {counts.shape} "
                          f"do not match catalog.json.gz ({n} items)")
    kc = run.cfg.knn
    ranker = ContentKNNRanker(torch.from_numpy(vectors).to(device), torch.from_numpy(counts), kc.last_items, kc.decay)
    return lambda history: ranker.scores(history.to(device))


def _popularity_scores(run: ServedRun) -> Callable[[torch.Tensor], torch.Tensor]:
    """Popularity keeps no checkpoint: its counts are recomputed from the training split of the
    run's configured data (the one method served with the dataset, not the run directory alone)."""
    from pitrec.train.api import prepare_data

    try:
        _, split = prepare_data(run.cfg)
    except (DataError, FileNotFoundError, ValueError) as exc:
        raise RunDirError(f"{run.path}: popularity keeps no counts in its run directory and its data cannot be "
                          f"reloaded from config.yaml ({exc})") from None
    if split.n_items != len(run.catalog):
        raise RunDirError(f"{run.path}: the reloaded data has {split.n_items} items, "
                          f"catalog.json.gz {len(run.catalog)}")
    ranker = PopularityRanker(torch.from_numpy(split.train_item_counts()))
    return lambda history: ranker.scores.unsqueeze(0).expand(history.shape[0], -1)
