"""Tensors for training and evaluation.

Convention used by every model: histories are LEFT-padded with ``PAD = -1`` so the most recent
item is always the last column, and a batch is cut to its longest history (not to
``max_history``) so short histories (the common case: median ~4 items on Amazon) cost little.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

PAD = -1


def left_pad(seqs: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """(n, max_len) int64, the last ``max_len`` items of each sequence, right-aligned, PAD-filled."""
    out = np.full((len(seqs), max_len), PAD, dtype=np.int64)
    for row, s in enumerate(seqs):
        tail = s[-max_len:] if max_len else s[:0]
        if len(tail):
            out[row, max_len - len(tail):] = tail
    return out


def trim_columns(padded: np.ndarray) -> np.ndarray:
    """Drop leading all-PAD columns, keeping at least one column."""
    filled = (padded != PAD).any(axis=0)
    if not filled.any():
        return padded[:, -1:]
    return padded[:, int(np.argmax(filled)):]


def recent_rows_sum(rows: torch.Tensor, history: torch.Tensor, last: int, decay: float = 1.0) -> torch.Tensor:
    """(B, d): the sum of ``rows`` of each history's last ``last`` items, the j-th latest (j = 0 the
    last column) weighted decay ** j, PAD counting for nothing (an empty history sums to 0). What a
    user's recent items say about them, for content kNN's query and the cold-start text affinity."""
    latest = history[:, -last:]
    weights = decay ** torch.arange(latest.shape[1] - 1, -1, -1, device=history.device, dtype=rows.dtype)
    weights = weights.masked_fill(latest == PAD, 0.0)
    return (rows[latest.clamp(min=0)] * weights.unsqueeze(-1)).sum(1)


@dataclass
class Batch:
    history: torch.Tensor  # (B, T) int64, left-padded with PAD
    target: torch.Tensor  # (B,) int64 dense item ids
    user: torch.Tensor  # (B,) int64 dense user ids

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.history.to(device), self.target.to(device), self.user.to(device))

    def __len__(self) -> int:
        return int(self.target.shape[0])


class PrefixSamples:
    """Every (history, next item) pair of the training sequences: TIGER's training set.

    Stored as one padded matrix so a batch is a fancy-index, not a Python loop.
    """

    def __init__(self, train: Sequence[np.ndarray], max_history: int):
        users, ends = [], []
        for u, s in enumerate(train):
            if len(s) > 1:
                users.append(np.full(len(s) - 1, u, dtype=np.int64))
                ends.append(np.arange(1, len(s), dtype=np.int64))
        self.user = np.concatenate(users) if users else np.zeros(0, np.int64)
        end = np.concatenate(ends) if ends else np.zeros(0, np.int64)
        self.target = np.array([train[u][t] for u, t in zip(self.user, end)], dtype=np.int64)
        self.history = left_pad([train[u][max(0, t - max_history):t] for u, t in zip(self.user, end)], max_history)
        self.length = (self.history != PAD).sum(axis=1)
        self.max_history = max_history

    def __len__(self) -> int:
        return len(self.target)

    def batch(self, idx: np.ndarray) -> Batch:
        return Batch(
            history=torch.from_numpy(trim_columns(self.history[idx])),
            target=torch.from_numpy(self.target[idx]),
            user=torch.from_numpy(self.user[idx]),
        )

    def batches(self, batch_size: int, rng: np.random.Generator | None = None,
                bucket: bool = True, drop_last: bool = False) -> Iterator[Batch]:
        """Shuffled batches; with ``bucket`` samples of similar history length are grouped
        (within windows of 64 batches, then the batch order is shuffled again) to cut padding."""
        for idx in self.batch_indices(batch_size, rng, bucket, drop_last):
            yield self.batch(idx)

    def batch_indices(self, batch_size: int, rng: np.random.Generator | None = None,
                      bucket: bool = True, drop_last: bool = False) -> list[np.ndarray]:
        n = len(self)
        order = rng.permutation(n) if rng is not None else np.arange(n)
        if bucket and rng is not None:
            window = batch_size * 64
            chunks = []
            for start in range(0, n, window):
                w = order[start:start + window]
                chunks.append(w[np.argsort(self.length[w], kind="stable")])
            order = np.concatenate(chunks) if chunks else order
        out = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        if drop_last and out and len(out[-1]) < batch_size:
            out.pop()
        if rng is not None:
            perm = rng.permutation(len(out))
            out = [out[i] for i in perm]
        return out


class EvalSamples:
    """One (history, target) per user for the validation or test part of a split."""

    def __init__(self, histories: Sequence[np.ndarray], targets: np.ndarray, max_history: int):
        self.history = left_pad(histories, max_history)
        self.target = np.asarray(targets, dtype=np.int64)
        self.user = np.arange(len(self.target), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.target)

    def batches(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self), batch_size):
            sl = slice(start, start + batch_size)
            yield Batch(
                history=torch.from_numpy(trim_columns(self.history[sl])),
                target=torch.from_numpy(self.target[sl]),
                user=torch.from_numpy(self.user[sl]),
            )
