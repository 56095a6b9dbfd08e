"""Collision policies: what to do when several items get the same semantic ID.

A generative recommender decodes SIDs and maps them back to items; a SID shared by ``m`` items
cannot tell them apart. TIGER's answer, our default ``extra_level``, appends one level: the
items of each shared SID get suffixes ``0, 1, 2...`` in dense-id order, and items with a unique SID
get ``0``. The new level's codebook size is the largest collision group (1 when nothing collides;
the level is appended even then, so every table of a config has the same number of levels).
``keep`` leaves collisions in place, ``error`` refuses them. The collision figures before the
policy are kept in ``meta["before_policy"]`` so ``stats()`` can report them afterwards.
"""

from __future__ import annotations

import numpy as np

from pitrec.tokenizers.sid_table import SidTable, collision_summary

POLICIES = ("extra_level", "keep", "error")


def apply_collision_policy(table: SidTable, policy: str) -> SidTable:
    if policy not in POLICIES:
        raise ValueError(f"unknown collision policy {policy!r}; known: {', '.join(POLICIES)}")
    before = collision_summary(table.codes)
    meta = {**table.meta, "collision_policy": policy, "before_policy": before}
    if policy == "error" and before["distinct_sids"] < table.n_items:
        raise ValueError(f"{table.n_items - before['distinct_sids']} item(s) share a SID with another item "
                         f"(largest group {before['max_collision_group']}); tokenizer.collision=error refuses "
                         f"that. Use extra_level to disambiguate or keep to allow it.")
    if policy != "extra_level":
        return SidTable(table.codes, table.codebook_sizes, meta, table.item_ids)
    suffix = disambiguation_suffix(table.codes)
    codes = np.concatenate([table.codes, suffix[:, None]], axis=1)
    sizes = [*table.codebook_sizes, int(suffix.max()) + 1 if len(suffix) else 1]
    return SidTable(codes, sizes, meta, table.item_ids)


def disambiguation_suffix(codes: np.ndarray) -> np.ndarray:
    """Rank of each item among the items sharing its SID, in dense-id order (stable)."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    _, group = np.unique(codes, axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")  # items grouped, dense-id order within a group
    sorted_groups = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    first_of_group = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    suffix = np.empty(len(codes), dtype=np.int64)
    suffix[order] = np.arange(len(order)) - first_of_group
    return suffix
