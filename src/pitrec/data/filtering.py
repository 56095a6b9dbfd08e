"""k-core filtering. Every removal is counted in ``Interactions.dropped`` and reported by the
caller, because silently losing users or items changes the benchmark."""

from __future__ import annotations

import numpy as np

from pitrec.data.interactions import Interactions


def kcore(data: Interactions, min_user: int, min_item: int) -> Interactions:
    """Iteratively drop users with < ``min_user`` and items with < ``min_item`` interactions
    until both hold; item ids are re-densified, raw ids kept."""
    if min_user <= 0 and min_item <= 0:
        return data
    seqs = [s.copy() for s in data.sequences]
    user_keep = np.ones(len(seqs), dtype=bool)
    item_keep = np.ones(data.n_items, dtype=bool)
    while True:
        changed = False
        if min_item > 0:
            alive = [s for s, k in zip(seqs, user_keep) if k]
            counts = np.bincount(np.concatenate(alive), minlength=data.n_items) if alive else np.zeros(data.n_items, int)
            low = item_keep & (counts < min_item)
            if low.any():
                item_keep &= ~low
                seqs = [s[item_keep[s]] for s in seqs]
                changed = True
        if min_user > 0:
            lens = np.array([len(s) for s in seqs])
            low = user_keep & (lens < min_user)
            if low.any():
                user_keep &= ~low
                changed = True
        if not changed:
            break
    # items that no surviving user touches go too (they could never be a target or history)
    alive = [s for s, k in zip(seqs, user_keep) if k]
    used = np.zeros(data.n_items, dtype=bool)
    if alive:
        used[np.concatenate(alive)] = True
    item_keep &= used
    new_id = np.full(data.n_items, -1, dtype=np.int64)
    new_id[item_keep] = np.arange(int(item_keep.sum()))
    kept_items = np.flatnonzero(item_keep)
    new_seqs = [new_id[s] for s, k in zip(seqs, user_keep) if k]
    dropped = dict(data.dropped)
    dropped["kcore_users"] = dropped.get("kcore_users", 0) + int((~user_keep).sum())
    dropped["kcore_items"] = dropped.get("kcore_items", 0) + int(data.n_items - item_keep.sum())
    dropped["kcore_interactions"] = dropped.get("kcore_interactions", 0) + int(
        data.n_interactions - sum(len(s) for s in new_seqs))
    return Interactions(
        sequences=new_seqs,
        user_ids=[u for u, k in zip(data.user_ids, user_keep) if k],
        item_ids=[data.item_ids[i] for i in kept_items],
        item_text=[data.item_text[i] for i in kept_items] if data.item_text is not None else None,
        item_attributes=[data.item_attributes[i] for i in kept_items] if data.item_attributes is not None else None,
        attribute_ids=data.attribute_ids,
        name=data.name,
        source=data.source,
        dropped=dropped,
    )
