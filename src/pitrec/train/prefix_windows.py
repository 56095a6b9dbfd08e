"""Training windows for a causal-encoder generator: every (history, next item) pair of
``PrefixSamples``, grouped so that one encoder pass serves many pairs.

With a causal encoder the state of history position i depends only on items <= i, so a user's
sequence encoded once yields the exact memory of each of its prefixes. A window is a stretch of a
user's training sequence, LEFT-padded so that its targets, always its last items, line up in the
last columns of a batch. The first window of a user spans its first ``max_history + 1`` items and
covers every target whose history fits in ``max_history``; each later target (a longer history,
cut to the last ``max_history`` items) gets its own window, so every pair sees exactly the
history ``PrefixSamples`` would give it.

Those one-target windows are few targets but most of the encoder's work (on beauty 11% of the
targets, 68% of the encoded positions), and a batch of them costs several times a batch of
first windows. ``long_stride`` k > 1 lets k consecutive later targets share one window of
``max_history + 1`` items ending at the last of them: the earlier ones then see the last
``max_history - k + 1`` to ``max_history - 1`` items instead of ``max_history``. Every target is
still trained once; only long users' histories shorten, by at most k - 1 items.
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
    def __init__(self, train: Sequence[np.ndarray], max_history: int, long_stride: int = 1):
        if not 1 <= long_stride <= max_history:
            raise ValueError(f"train.long_history_stride must lie in [1, max_history = {max_history}], "
                             f"got {long_stride}")
        width = max_history + 1
        rows, n_targets = [], []
        for s in train:
            n = len(s)
            if n < 2:
                continue
            rows.append(s[:width])
            n_targets.append(min(n, width) - 1)
            # histories longer than max_history: a window per ``long_stride`` targets (1: exact)
            for first in range(width, n, long_stride):
                last = min(first + long_stride, n) - 1
                rows.append(s[last - max_history:last + 1])
                n_targets.append(last - first + 1)
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


def training_windows(train: Sequence[np.ndarray], cfg, causal: bool) -> PrefixWindows | None:
    """The windows of a causal generator's training pairs; None for a bidirectional encoder, which
    encodes each pair's history on its own (then a ``long_history_stride`` would go unused)."""
    if causal:
        return PrefixWindows(train, cfg.data.max_history, cfg.train.long_history_stride)
    if cfg.train.long_history_stride != 1:
        raise ValueError("train.long_history_stride needs a causal encoder (u2t.encoder_attention=causal): "
                         "a bidirectional one encodes every pair's history separately")
    return None
