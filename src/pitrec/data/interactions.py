"""``Interactions``: the in-memory form every reader produces and every later stage consumes.

Ids are dense (users 0..U-1, items 0..I-1) so they can index tensors, and the raw ids are kept
in order so that results go back to the user in their own ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable, Sequence

import numpy as np


@dataclass
class Interactions:
    sequences: list[np.ndarray]  # per dense user: chronological dense item ids (int64)
    user_ids: list[Hashable]  # dense user id -> raw id
    item_ids: list[Hashable]  # dense item id -> raw id
    item_text: list[str] | None = None  # per dense item; None when the source has no item text
    item_attributes: list[list[int]] | None = None  # per dense item: dense attribute ids
    attribute_ids: list[Hashable] | None = None  # dense attribute id -> raw id
    name: str = "dataset"
    source: str = ""
    dropped: dict[str, int] = field(default_factory=dict)  # what filtering removed, by reason

    def __post_init__(self) -> None:
        self._item_index: dict[Hashable, int] | None = None
        self._user_index: dict[Hashable, int] | None = None
        if len(self.sequences) != len(self.user_ids):
            raise ValueError(f"{len(self.sequences)} sequences but {len(self.user_ids)} user ids")
        for name, arr in (("item_text", self.item_text), ("item_attributes", self.item_attributes)):
            if arr is not None and len(arr) != len(self.item_ids):
                raise ValueError(f"{name} has {len(arr)} rows for {len(self.item_ids)} items")

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_attributes(self) -> int:
        return len(self.attribute_ids) if self.attribute_ids is not None else 0

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    @property
    def item_index(self) -> dict[Hashable, int]:
        """Raw item id -> dense id."""
        if self._item_index is None:
            self._item_index = {raw: i for i, raw in enumerate(self.item_ids)}
        return self._item_index

    @property
    def user_index(self) -> dict[Hashable, int]:
        if self._user_index is None:
            self._user_index = {raw: u for u, raw in enumerate(self.user_ids)}
        return self._user_index

    def item_popularity(self) -> np.ndarray:
        return np.bincount(np.concatenate(self.sequences), minlength=self.n_items) if self.sequences else np.zeros(self.n_items, dtype=np.int64)

    def stats(self) -> dict[str, Any]:
        lengths = np.array([len(s) for s in self.sequences]) if self.sequences else np.zeros(1)
        n_inter = self.n_interactions
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n_inter,
            "avg_length": float(lengths.mean()) if self.n_users else 0.0,
            "min_length": int(lengths.min()) if self.n_users else 0,
            "max_length": int(lengths.max()) if self.n_users else 0,
            "density": n_inter / max(1, self.n_users * self.n_items),
            "attributes": self.n_attributes,
            "items_with_text": sum(1 for t in self.item_text if t) if self.item_text is not None else 0,
            "dropped": dict(self.dropped),
        }

    def raw_items(self, dense: Sequence[int] | np.ndarray) -> list[Hashable]:
        return [self.item_ids[int(i)] for i in dense]

    def dense_items(self, raw: Sequence[Hashable], what: str = "item") -> list[int]:
        """Map raw ids to dense ids; an unknown id is an error naming it (never silently dropped)."""
        index = self.item_index
        out = []
        for r in raw:
            if r not in index:
                # tolerate "12" vs 12 mismatches coming from JSON or the command line
                alt = _alt_key(r)
                if alt is not None and alt in index:
                    out.append(index[alt])
                    continue
                raise KeyError(f"unknown {what} id {r!r}")
            out.append(index[r])
        return out


def _alt_key(raw: Hashable) -> Hashable | None:
    if isinstance(raw, str):
        try:
            return int(raw)
        except ValueError:
            return None
    if isinstance(raw, (int, np.integer)):
        return str(int(raw))
    return None
