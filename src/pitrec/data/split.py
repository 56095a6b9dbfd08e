"""Leave-one-out split, the protocol of SASRec, TIGER and PIT: per user, the last item is the
test target, the second-to-last the validation target, everything before is training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pitrec.data.interactions import Interactions


@dataclass
class Split:
    n_items: int
    train: list[np.ndarray]  # per user: training sequence (all but the last two items)
    valid_history: list[np.ndarray]  # = train
    valid_target: np.ndarray  # (U,)
    test_history: list[np.ndarray]  # all but the last item
    test_target: np.ndarray  # (U,)
    max_history: int = 20

    @property
    def n_users(self) -> int:
        return len(self.train)

    def part(self, name: str) -> tuple[list[np.ndarray], np.ndarray]:
        if name == "valid":
            return self.valid_history, self.valid_target
        if name == "test":
            return self.test_history, self.test_target
        raise ValueError(f"split part must be 'valid' or 'test', got {name!r}")

    def n_train_targets(self) -> int:
        """Number of (history, next item) training pairs: every position after the first."""
        return int(sum(max(0, len(s) - 1) for s in self.train))

    def train_item_counts(self) -> np.ndarray:
        seqs = [s for s in self.train if len(s)]
        if not seqs:
            return np.zeros(self.n_items, dtype=np.int64)
        return np.bincount(np.concatenate(seqs), minlength=self.n_items)


def leave_one_out(data: Interactions, max_history: int = 20, min_interactions: int = 3) -> Split:
    """Users with fewer than ``min_interactions`` (>= 3) cannot be split; they are an error,
    not a silent drop: filter them explicitly with k-core (``data.kcore_users``)."""
    short = [data.user_ids[u] for u, s in enumerate(data.sequences) if len(s) < min_interactions]
    if short:
        raise ValueError(
            f"{len(short)} user(s) have fewer than {min_interactions} interactions and cannot be split "
            f"leave-one-out (e.g. {short[:5]}); set data.kcore_users={min_interactions} to drop them explicitly")
    seqs = [np.asarray(s, dtype=np.int64) for s in data.sequences]
    return Split(
        n_items=data.n_items,
        train=[s[:-2] for s in seqs],
        valid_history=[s[:-2] for s in seqs],
        valid_target=np.array([s[-2] for s in seqs], dtype=np.int64),
        test_history=[s[:-1] for s in seqs],
        test_target=np.array([s[-1] for s in seqs], dtype=np.int64),
        max_history=max_history,
    )
