"""Item-to-Token proposals that keep every SID naming one item.

Why: I2T generates a SID from an item's embedding, and items with similar content get the same
SID. Merged as they are, such proposals turn the index's SIDs into shared ones; on the demo data
the share of items whose strongest SID is shared grew from 0 to 65% in ten epochs, the history
encoding (primary SIDs) lost what distinguished items, and accuracy fell behind TIGER's.

A table built with a disambiguation level (``tokenizer.collision=extra_level``) has a last token
that carries no content: it only tells apart items whose semantic prefix is equal. I2T cannot know
it, so a proposal whose SID is held by another item gets the smallest free last token of its
prefix instead (what the tokenizer does for colliding items). Without such a level, or when the
prefix has no free token left, the proposal is dropped (the item keeps its current SIDs).
"""

from __future__ import annotations

import numpy as np


def unique_proposals(edge_items: np.ndarray, edge_codes: np.ndarray, items: np.ndarray, codes: np.ndarray,
                     scores: np.ndarray, alive: np.ndarray, free_last_level: bool,
                     last_level_size: int) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Proposals ``codes`` (B, C, L) for ``items`` (B,), given the index's current edges.

    Stronger proposals (higher ``scores``) claim a SID first. Returns the codes (last token
    possibly reassigned), the proposals that survive (B, C) and counts of what was done.
    """
    codes = codes.copy()
    alive = alive.copy()
    holder: dict[tuple[int, ...], int] = {}  # SID -> the one item that holds it (-1: several, legacy)
    used_last: dict[tuple[int, ...], set[int]] = {}
    for item, code in zip(edge_items.tolist(), map(tuple, edge_codes.tolist())):
        holder[code] = item if holder.get(code, item) == item else -1
        used_last.setdefault(code[:-1], set()).add(code[-1])
    rows, cols = np.nonzero(alive)
    order = np.argsort(-scores[rows, cols], kind="stable")
    reassigned = dropped = 0
    for r, c in zip(rows[order].tolist(), cols[order].tolist()):
        item = int(items[r])
        code = tuple(codes[r, c].tolist())
        owner = holder.get(code)
        if owner is None or owner == item:
            holder[code] = item
            used_last.setdefault(code[:-1], set()).add(code[-1])
            continue
        taken = used_last.setdefault(code[:-1], set())
        free = next((t for t in range(last_level_size) if t not in taken), None) if free_last_level else None
        if free is None:
            alive[r, c] = False
            dropped += 1
            continue
        new = code[:-1] + (free,)
        codes[r, c, -1] = free
        holder[new] = item
        taken.add(free)
        reassigned += 1
    n = max(1, len(rows))
    return codes, alive, {"proposals": float(len(rows)), "reassigned_share": reassigned / n, "dropped_share": dropped / n}
