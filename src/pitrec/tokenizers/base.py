"""The tokenizer interface: embeddings (or an external table) -> raw semantic IDs.

A tokenizer only produces codes; the stage applies the collision policy, caches and copies the
result, so every tokenizer gets identical handling of those and is comparable in the benchmarks.
Implementations register themselves in ``TOKENIZERS`` under the name ``tokenizer.name`` uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from pitrec.data.interactions import Interactions
from pitrec.tokenizers.sid_table import SidTable


class Tokenizer(ABC):
    name: ClassVar[str]
    needs_embeddings: ClassVar[bool] = True

    def __init__(self, cfg, progress: bool = False) -> None:
        self.cfg = cfg  # the ``tokenizer`` config section
        self.progress = progress

    @abstractmethod
    def fit(self, embeddings: np.ndarray | None, data: Interactions, seed: int) -> SidTable:
        """Codes for every dense item, before any collision policy; deterministic for ``seed``.
        ``meta`` should describe how they were made (``tokenizer``, fit seconds, diagnostics)."""


def check_embeddings(embeddings: np.ndarray | None, data: Interactions, who: str) -> np.ndarray:
    if embeddings is None:
        raise ValueError(f"tokenizer {who} needs item embeddings (pitrec.embed.stage.item_embeddings)")
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != data.n_items:
        raise ValueError(f"tokenizer {who}: embeddings of shape {emb.shape} for {data.n_items} items "
                         f"(expected ({data.n_items}, d))")
    if not np.isfinite(emb).all():
        raise ValueError(f"tokenizer {who}: embeddings hold NaN or infinite values "
                         f"(first bad row {int(np.argwhere(~np.isfinite(emb))[0, 0])})")
    return emb
