"""The engine interface: one immutable version of a served method.

Why immutable: readers must never see a half-updated index. An update builds the NEXT engine
(a copy of the index plus its recompiled trie) and the recommender swaps one reference; a reader
that picked up the previous engine finishes on it and reports its version. Models (torch
modules) are shared read-only between versions; only the index side is copied.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Sequence

import torch

from pitrec.serve.catalog import Catalog
from pitrec.serve.errors import NotSupported
from pitrec.serve.schemas import SidInfo


@dataclass
class Ranked:
    item: int  # dense id
    score: float
    sids: list[SidInfo] = field(default_factory=list)


class Engine(ABC):
    method: str
    version: int
    n_items: int

    @abstractmethod
    def rank(self, history: torch.Tensor, k: int, exclude_history: bool, explain: bool = True) -> list[list[Ranked]]:
        """history (B, T) dense ids, left-padded with PAD -> per row up to ``k`` distinct items,
        best first. ``explain``: also log P(SID | history) for every SID of each item where that
        costs a model pass (PIT's multi-SID items); otherwise those SIDs carry weights only."""

    def item_sids(self, item: int) -> list[SidInfo]:
        """The item's SIDs (generative methods), strongest first."""
        return []

    def stats(self) -> dict[str, Any]:
        return {"sids": 0, "edges": 0, "collisions": {}, "index": {}}

    def fingerprint(self) -> dict[str, Any]:
        """Identifies the trained state a saved serving state was built on."""
        return {"method": self.method, "items": self.n_items, "version": self.version}

    # -- updates: each returns the next engine and the log record that replays it -----------
    def with_new_item(self, catalog: Catalog, raw_id: Hashable, title: str, attributes: Sequence[int]
                      ) -> tuple["Engine", dict[str, Any]]:
        raise NotSupported(f"{self.method} cannot add items online: it has no way to give a new item "
                           f"an identity the trained model can recommend (PIT can)")

    def with_feedback(self, history: torch.Tensor, item: int) -> tuple["Engine", dict[str, Any], int]:
        """-> (next engine, log record, picked candidate column: 0 = the item's strongest SID)."""
        raise NotSupported(f"{self.method} has no online index to update with feedback "
                           f"(PIT's beam index records user-guided SID selections)")

    def replay(self, record: dict[str, Any], where: str) -> "Engine":
        raise NotSupported(f"{where}: {self.method} engines have no updates to replay")

    def save_state(self, folder: Path) -> None:
        raise NotSupported(f"{self.method} has no mutable serving state")

    def load_state(self, folder: Path) -> "Engine":
        raise NotSupported(f"{self.method} has no mutable serving state")
