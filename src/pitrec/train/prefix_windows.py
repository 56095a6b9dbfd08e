"""Training windows for a causal-encoder generator: every (history, next item) pair of
``PrefixSamples``, grouped so that one encoder pass serves many pairs.

With a causal encoder the state of history position i depends only on items <= i, so a user's
sequence encoded once yields the exact memory of each of its prefixes. A window is a stretch of a
user's training sequence, LEFT-padded so that its targets, always its last items, line up in the
last columns of a batch. The first window of a user spans its first ``max_history + 1`` items and
covers every target whose history fits in ``max_history``; each later target (a longer history,
cut to the last ``max_history`` items) gets its own window, so every pair sees exactly the
history ``PrefixSamples`` would give it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from pitrec.data.batches import PAD


@dataclass
class WindowBatch:
    items: torch.Tensor  # (B, m) int64, left-padded with PAD
    targets: torch.Tensor  # (B, n_last) bool: which of the last n_last columns are training targets

    @property
    def n_last(self) -> int:
        return int(self.targets.shape[1])

    @property
    def n_targets(self) -> int:
        return int(self.targets.sum())


class PrefixWindows:
    def __init__(self, train: Sequence[np.ndarray], max_history: int):
        width = max_history + 1
        rows, n_targets = [], []
        for s in train:
            n = len(s)
            if n < 2:
                continue
            rows.append(s[:width])
            n_targets.append(min(n, width) - 1)
            for t in range(width, n):  # histories longer than max_history: one window each
                rows.append(s[t - max_history:t + 1])
                n_targets.append(1)
        self.items = np.full((len(rows), width), PAD, dtype=np.int64)
        for r, s in enumerate(rows):
            self.items[r, width - len(s):] = s
        self.length = np.array([len(s) for s in rows], dtype=np.int64)
        self.n_targets = np.array(n_targets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def total_targets(self) -> int:
        return int(self.n_targets.sum())

    def batch(self, idx: np.ndarray) -> WindowBatch:
        m = int(self.length[idx].max())
        c = int(self.n_targets[idx].max())
        targets = np.arange(c) >= (c - self.n_targets[idx])[:, None]
        return WindowBatch(torch.from_numpy(self.items[idx, -m:]), torch.from_numpy(targets))

    def batch_indices(self, targets_per_batch: int, rng: np.random.Generator) -> list[np.ndarray]:
        """Shuffled batches of about ``targets_per_batch`` targets (the unit of ``train.batch_size``,
        so a batch carries as many training pairs as a ``PrefixSamples`` batch). Within chunks of
        about 64 batches, windows are sorted by (targets, length) so a batch wastes little on
        padding columns or on decoding non-targets."""
        order = rng.permutation(len(self))
        chunk = max(1, targets_per_batch * 64 // max(1, int(self.n_targets.mean())))
        parts = []
        for start in range(0, len(order), chunk):
            w = order[start:start + chunk]
            parts.append(w[np.lexsort((self.length[w], self.n_targets[w]))])
        order = np.concatenate(parts) if parts else order
        ends = np.cumsum(self.n_targets[order])
        cuts = np.searchsorted(ends, np.arange(targets_per_batch, ends[-1], targets_per_batch), side="left") + 1
        batches = [b for b in np.split(order, np.unique(cuts)) if len(b)]
        return [batches[i] for i in rng.permutation(len(batches))]
