"""The evaluator: leave-one-out, full ranking over all items, hits on item ids.

Every method plugs in through one small protocol, ``Ranker.rank(history, k, exclude_history)``
returning the top-k item ids per user, so SASRec (scores over all items) and the generative
models (constrained beam search -> SIDs -> items) are measured by the same code.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np
import torch

from pitrec.data.batches import PAD, EvalSamples
from pitrec.data.split import Split
from pitrec.eval.metrics import rank_metrics


class Ranker(Protocol):
    def rank(self, history: torch.Tensor, k: int, exclude_history: bool = False) -> torch.Tensor:
        """history (B, T) left-padded with PAD=-1 -> (B, k) distinct item ids, best first
        (-1 where the model has fewer than k items to offer)."""
        ...


def topk_from_scores(scores: torch.Tensor, k: int, history: torch.Tensor | None = None) -> torch.Tensor:
    """Top-k over full item scores (B, n_items) -> (B, k); with ``history`` its items are masked.

    An item scored ``-inf`` (masked) is never returned, even when fewer than k others remain,
    and a catalog smaller than k cannot fill the row: those places are ``PAD`` (-1), as the
    ``Ranker`` contract says, rather than a masked item or a narrower tensor.
    """
    if history is not None:
        scores = scores.clone()
        rows = torch.arange(history.shape[0], device=history.device).unsqueeze(1).expand_as(history)
        valid = history != PAD
        scores[rows[valid], history[valid]] = float("-inf")
    width = min(k, scores.shape[1])
    values, items = scores.topk(width, dim=1)
    items = items.masked_fill(values == float("-inf"), PAD)
    if width < k:
        items = torch.cat([items, items.new_full((items.shape[0], k - width), PAD)], dim=1)
    return items


class Evaluator:
    def __init__(self, split: Split, ks=(5, 10, 20), batch_size: int = 512, mask_history: bool = False,
                 device: torch.device | str = "cpu", max_users: int | None = None, seed: int = 0):
        self.split = split
        self.ks = sorted(set(int(k) for k in ks))
        self.batch_size = batch_size
        self.mask_history = mask_history
        self.device = torch.device(device)
        self._parts: dict[str, EvalSamples] = {}
        self.max_users = max_users
        self.seed = seed

    def samples(self, part: str) -> EvalSamples:
        if part not in self._parts:
            hist, target = self.split.part(part)
            samples = EvalSamples(hist, target, self.split.max_history)
            if self.max_users is not None and self.max_users < len(samples):
                # a fixed random subset (for quick validation during training); test uses all users
                idx = np.sort(np.random.default_rng(self.seed).choice(len(samples), self.max_users, replace=False))
                samples.history, samples.target, samples.user = samples.history[idx], samples.target[idx], samples.user[idx]
            self._parts[part] = samples
        return self._parts[part]

    @torch.no_grad()
    def evaluate(self, ranker: Ranker, part: str = "test", progress: bool = False) -> dict[str, float]:
        """Mean metrics over users plus ``users`` and ``users_per_s``."""
        samples = self.samples(part)
        kmax = max(self.ks)
        per_user: dict[str, list[torch.Tensor]] = {}
        start = time.perf_counter()
        batches = samples.batches(self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=(len(samples) + self.batch_size - 1) // self.batch_size,
                           desc=f"eval {part}", leave=False)
        for batch in batches:
            batch = batch.to(self.device)
            topk = ranker.rank(batch.history, kmax, exclude_history=self.mask_history)
            if topk.shape != (len(batch), kmax):
                raise ValueError(f"ranker returned shape {tuple(topk.shape)}, expected {(len(batch), kmax)}")
            if self.mask_history:
                _check_no_history(topk, batch.history)
            for name, values in rank_metrics(topk.cpu(), batch.target.cpu(), self.ks).items():
                per_user.setdefault(name, []).append(values)
        seconds = time.perf_counter() - start
        out = {name: float(torch.cat(v).mean()) for name, v in per_user.items()}
        out = dict(sorted(out.items(), key=lambda kv: (kv[0].split("@")[0] != "recall", int(kv[0].split("@")[1]))))
        out["users"] = len(samples)
        out["users_per_s"] = len(samples) / max(seconds, 1e-9)
        return out


def _check_no_history(topk: torch.Tensor, history: torch.Tensor) -> None:
    clash = (topk.unsqueeze(2) == history.unsqueeze(1)) & (topk.unsqueeze(2) >= 0)
    if clash.any():
        raise ValueError("mask_history is on but the ranker returned an item from the user's history")
