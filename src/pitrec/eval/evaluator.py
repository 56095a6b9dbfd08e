"""The evaluator: leave-one-out, full ranking over all items, hits on item ids.

Every method plugs in through one small protocol, ``Ranker.rank(history, k, exclude_history)``
returning the top-k item ids per user, so SASRec (scores over all items) and the generative
models (constrained beam search -> SIDs -> items) are measured by the same code.

Under torchrun (a ``torch.distributed`` process group exists) each process ranks a disjoint,
contiguous block of the users and the per-user metric sums are added over processes, so every
process returns the metrics of the whole population, equal to a single-process evaluation up to
the order of the float64 sums.
"""

from __future__ import annotations

import copy
import time
from typing import Protocol

import numpy as np
import torch

from pitrec.data.batches import PAD, EvalSamples
from pitrec.data.split import Split
from pitrec.train import distributed as dist
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
                 device: torch.device | str = "cpu", max_users: int | None = None, seed: int = 0,
                 distributed: bool | None = None):
        self.split = split
        self.ks = sorted(set(int(k) for k in ks))
        self.batch_size = batch_size
        self.mask_history = mask_history
        self.device = torch.device(device)
        self._parts: dict[str, EvalSamples] = {}
        self.max_users = max_users
        self.seed = seed
        self.distributed = distributed  # None: shard whenever a process group exists; False: never

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
        """Mean metrics over users plus ``users`` and ``users_per_s`` (all users, also when
        each process ranks only its shard)."""
        samples = self.samples(part)
        shard = self._shard()
        if shard is not None:
            return self._evaluate_shard(ranker, samples, *shard, part=part, progress=progress)
        start = time.perf_counter()
        per_user = self._per_user(ranker, samples, part, progress)
        seconds = time.perf_counter() - start
        out = {name: float(values.mean()) for name, values in per_user.items()}
        out = dict(sorted(out.items(), key=lambda kv: (kv[0].split("@")[0] != "recall", int(kv[0].split("@")[1]))))
        out["users"] = len(samples)
        out["users_per_s"] = len(samples) / max(seconds, 1e-9)
        return out

    @torch.no_grad()
    def per_user(self, ranker: Ranker, part: str = "test", progress: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(user index, {metric: (users,) float64}) for every user of ``part``, in this process:
        what ``evaluate`` averages, kept per user so that two models ranked on the same users can
        be compared user by user (``pitrec.eval.paired``)."""
        samples = self.samples(part)
        per_user = self._per_user(ranker, samples, part, progress)
        return samples.user.copy(), {name: values.numpy() for name, values in per_user.items()}

    def _per_user(self, ranker: Ranker, samples: EvalSamples, part: str, progress: bool) -> dict[str, torch.Tensor]:
        kmax = max(self.ks)
        per_user: dict[str, list[torch.Tensor]] = {}
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
        return {name: torch.cat(v) for name, v in per_user.items()}

    def _shard(self) -> tuple[int, int] | None:
        """(rank, world) when evaluation is split over a process group, else None."""
        if self.distributed is False or not dist.is_distributed():
            return None
        return dist.rank(), dist.world_size()

    def _evaluate_shard(self, ranker: Ranker, samples: EvalSamples, rank: int, world: int,
                        part: str, progress: bool) -> dict[str, float]:
        """Rank a contiguous block of users here, then add every process's float64 metric sums.
        The sums are broadcast from rank 0 after the all-reduce so every process holds the same
        bits: early stopping must decide identically everywhere."""
        start = time.perf_counter()
        lo, hi = (len(samples) * rank) // world, (len(samples) * (rank + 1)) // world
        mine = copy.copy(samples)
        mine.history, mine.target, mine.user = samples.history[lo:hi], samples.target[lo:hi], samples.user[lo:hi]
        names = [f"{m}@{k}" for m in ("recall", "ndcg") for k in self.ks]  # the single-process order
        local = Evaluator(self.split, self.ks, self.batch_size, self.mask_history, self.device, distributed=False)
        local._parts[part] = mine
        sums = torch.zeros(len(names), dtype=torch.float64)
        if len(mine):
            means = local.evaluate(ranker, part, progress=progress)
            sums = torch.tensor([means[n] * len(mine) for n in names], dtype=torch.float64)
        sums = dist.broadcast(dist.all_reduce_sum(sums))
        seconds = time.perf_counter() - start
        out = {n: float(v) / len(samples) for n, v in zip(names, sums.cpu().tolist())}
        out["users"] = len(samples)
        out["users_per_s"] = len(samples) / max(seconds, 1e-9)
        return out


def _check_no_history(topk: torch.Tensor, history: torch.Tensor) -> None:
    clash = (topk.unsqueeze(2) == history.unsqueeze(1)) & (topk.unsqueeze(2) >= 0)
    if clash.any():
        raise ValueError("mask_history is on but the ranker returned an item from the user's history")
