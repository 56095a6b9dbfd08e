"""``SidTable``: one semantic ID (a tuple of codes, one per level) per item.

Contract used by every later stage: ``codes[i, l]`` is the level-``l`` code of dense item ``i``
and lies in ``[0, codebook_sizes[l])``. After a tokenizer's collision policy has run, rows are
unique (no two items share a SID); imported tables may collide and say so in ``stats()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SidTable:
    codes: np.ndarray  # (n_items, n_levels) int64
    codebook_sizes: list[int]
    meta: dict[str, Any] = field(default_factory=dict)  # tokenizer name, config, fit statistics

    def __post_init__(self) -> None:
        self.codes = np.asarray(self.codes, dtype=np.int64)
        if self.codes.ndim != 2:
            raise ValueError(f"codes must be (n_items, n_levels), got shape {self.codes.shape}")
        if len(self.codebook_sizes) != self.codes.shape[1]:
            raise ValueError(f"{len(self.codebook_sizes)} codebook sizes for {self.codes.shape[1]} levels")
        sizes = np.asarray(self.codebook_sizes)
        if len(self.codes) and ((self.codes < 0).any() or (self.codes >= sizes).any()):
            bad = np.argwhere((self.codes < 0) | (self.codes >= sizes))[0]
            raise ValueError(f"item {bad[0]} level {bad[1]}: code {self.codes[bad[0], bad[1]]} outside [0, {sizes[bad[1]]})")

    @property
    def n_items(self) -> int:
        return int(self.codes.shape[0])

    @property
    def n_levels(self) -> int:
        return int(self.codes.shape[1])
