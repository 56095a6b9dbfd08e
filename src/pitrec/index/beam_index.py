"""``BeamIndex``: PIT's one-to-many map between items and weighted semantic IDs.

Why one-to-many: during co-evolution the Item-to-Token model proposes several SIDs per item and
the user-guided minimum-loss selection picks, per training sample, the one U2T finds cheapest.
Keeping every plausible SID of an item (with a weight = how often it was chosen, decayed) makes
the tokenisation stable (one noisy batch cannot flip an item's identity), lets a SID be shared
by several similar items, and lets a new item get its SIDs without retraining anything.

Storage is one flat edge list ``(item, SID, weight)`` ordered by item, then weight descending,
with ties kept in seniority order (an incumbent SID stays ahead of a newcomer of equal weight, so
a tie never flips an item's primary SID), plus a CSR pointer per item, so every query is a handful of numpy
operations instead of a Python loop over a dict per item. A SID is stored as one int64
mixed-radix key (``sum(codes[l] * stride[l])``), whose order is the lexicographic order of the
codes, so "same SID" and "sort by SID" are scalar operations.

Invariant kept by every mutation: every item ``0..n_items-1`` has at least one SID (no
operation can orphan an item), weights are finite and non-negative, and no (item, SID) pair
appears twice. ``version`` grows by one per mutation batch so caches (the trie, a served
index) can tell they are stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pitrec.index.index_state import (BeamIndexError, SidKeys, Snapshot, add_to_known_edges, as_numpy, checked_edges, churn_between,
                                      collision_share, group_rows, item_windows, rank_within, read_index_dir, write_index_dir)
from pitrec.index.trie import Trie

__all__ = ["BeamIndex", "BeamIndexError"]

class BeamIndex:
    def __init__(self, codebook_sizes: list[int], n_items: int, edge_items: np.ndarray, edge_codes: np.ndarray,
                 edge_weights: np.ndarray, *, max_sids_per_item: int = 4, new_edge_weight: float = 1.0,
                 version: int = 0, where: str = "BeamIndex") -> None:
        self._sid = SidKeys(codebook_sizes, where)
        self.codebook_sizes = self._sid.codebook_sizes
        if max_sids_per_item < 1:
            raise BeamIndexError(f"{where}: max_sids_per_item must be >= 1, got {max_sids_per_item}")
        if not (np.isfinite(new_edge_weight) and new_edge_weight >= 0):
            raise BeamIndexError(f"{where}: new_edge_weight must be finite and >= 0, got {new_edge_weight}")
        self.n_items = int(n_items)
        self.max_sids_per_item = int(max_sids_per_item)
        self.new_edge_weight = float(new_edge_weight)
        self.version = int(version)
        self.last_churn: dict[str, float] = {}
        items, keys, weights = checked_edges(self._sid, self.n_items, edge_items, edge_codes, edge_weights, where)
        self._set_edges(items, keys, weights, where)
        self._reference = self._snapshot()

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_sid_table(cls, table, *, max_sids_per_item: int = 4, new_edge_weight: float = 1.0,
                       initial_weight: float = 1.0) -> "BeamIndex":
        """One edge per item: the static tokenizer's SID, the warm-up starting point of PIT."""
        n = table.n_items
        return cls(table.codebook_sizes, n, np.arange(n), table.codes, np.full(n, float(initial_weight)),
                   max_sids_per_item=max_sids_per_item, new_edge_weight=new_edge_weight)

    @property
    def n_levels(self) -> int:
        return len(self.codebook_sizes)

    @property
    def n_edges(self) -> int:
        return int(self._items.shape[0])

    # -- views -------------------------------------------------------------------------------
    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(items (E,), codes (E, L), weights (E,)) in index order; copies."""
        return self._items.copy(), self._sid.decode(self._keys), self._weights.copy()

    def sids_per_item(self) -> np.ndarray:
        return np.diff(self._ptr)

    def primary_codes(self) -> np.ndarray:
        """(n_items, L): each item's top-weight SID, the one that encodes it in user histories."""
        return self._sid.decode(self._keys[self._ptr[:-1]])

    def candidates(self, items: np.ndarray | torch.Tensor, max_c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """An item's strongest SIDs, the set co-evolution's minimum-loss selection chooses from.

        Returns codes (B, C, L), mask (B, C) and weights (B, C) with ``C = min(max_c, most SIDs
        of any item asked for)`` so a batch of one-SID items costs one column, not ``max_c``.
        Padding rows have code 0, mask False and weight 0.
        """
        items = self._check_items(items, "candidates: items")
        if max_c < 1:
            raise BeamIndexError(f"candidates: max_c must be >= 1, got {max_c}")
        rows, mask = item_windows(self._ptr, items, max_c)
        codes = np.where(mask[..., None], self._sid.decode(self._keys[rows]), 0)
        weights = np.where(mask, self._weights[rows], 0.0)
        return codes, mask, weights

    def items_for_sids(self, codes: np.ndarray | torch.Tensor, max_items: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """SIDs (B, L) -> items (B, M) (best weight first, -1 padded) and their edge weights.

        A SID no item holds gives an all -1 row; ``M`` is ``max_items`` or the largest count.
        """
        keys = self._sid.encode(codes, "items_for_sids: codes")
        uniq, ptr, items, weights = self._sid_view()
        pos = np.searchsorted(uniq, keys)
        found = (pos < len(uniq)) & (uniq[np.minimum(pos, len(uniq) - 1)] == keys)
        start = np.where(found, ptr[np.minimum(pos, len(uniq) - 1)], 0)
        count = np.where(found, ptr[np.minimum(pos + 1, len(uniq))] - start, 0)
        if max_items is not None:
            count = np.minimum(count, max_items)
        width = max_items if max_items is not None else max(1, int(count.max()) if len(keys) else 1)
        col = np.arange(width)
        mask = col[None, :] < count[:, None]
        rows = np.where(mask, start[:, None] + col[None, :], 0)
        return np.where(mask, items[rows], -1), np.where(mask, weights[rows], 0.0)

    def sid_item_counts(self, codes: np.ndarray | torch.Tensor) -> np.ndarray:
        """How many items hold each SID, (..., L) -> (...,), 0 for a SID nobody holds: a SID
        shared by n items names a given one of them only with probability 1/n, which is what
        co-evolution's selection is charged for collisions."""
        c = as_numpy(codes)
        keys = self._sid.encode(c.reshape(-1, c.shape[-1]), "sid_item_counts: codes")
        uniq, ptr = self._sid_counts()
        pos = np.minimum(np.searchsorted(uniq, keys), max(len(uniq) - 1, 0))
        found = (len(uniq) > 0) & (uniq[pos] == keys) if len(uniq) else np.zeros(len(keys), dtype=bool)
        return np.where(found, ptr[pos + 1] - ptr[pos], 0).reshape(c.shape[:-1])

    def sid_groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every distinct SID (S, L) with CSR ``ptr`` (S+1,) into items (E,) and weights (E,).

        The SID -> items side of the index, e.g. to build the decoding trie whose leaves name
        several items. Items of one SID are ordered by weight descending.
        """
        uniq, ptr, items, weights = self._sid_view()
        return self._sid.decode(uniq), ptr.copy(), items.copy(), weights.copy()

    def to_trie(self) -> Trie:
        """The decoding trie over every SID of every item: a leaf names all items holding that
        SID, and an item is reachable through each of its SIDs (one-to-many both ways)."""
        return Trie.build(self._sid.decode(self._keys), self.codebook_sizes, items=self._items, n_items=self.n_items)

    # -- mutations ---------------------------------------------------------------------------
    def record_selections(self, items: np.ndarray | torch.Tensor, codes: np.ndarray | torch.Tensor) -> int:
        """Add 1 to the weight of each chosen (item, SID); unknown pairs become edges of weight 1.

        Never prunes: a SID chosen a moment ago must not vanish before the next refresh/prune,
        which is where ``max_sids_per_item`` is enforced. Returns the number of new edges.
        """
        items = self._check_items(items, "record_selections: items")
        keys = self._sid.encode(codes, "record_selections: codes")
        if len(items) != len(keys):
            raise BeamIndexError(f"record_selections: {len(items)} items but {len(keys)} SIDs")
        known = add_to_known_edges(self._ptr, self._keys, self._weights, items, keys)
        if known is not None:  # no new edge: the SID -> item counts stand, the weight order does not
            self._keys, self._weights = known
            self._sid_cache = None
            self.version += 1
            return 0
        before = self.n_edges
        all_i = np.concatenate([self._items, items])
        all_k = np.concatenate([self._keys, keys])
        all_w = np.concatenate([self._weights, np.ones(len(items))])
        order, first = group_rows(all_i, all_k)
        w = np.add.reduceat(all_w[order], first) if len(order) else all_w
        seniority = np.argsort(order[first], kind="stable")  # existing edges, then new in given order
        rows = order[first][seniority]
        self._set_edges(all_i[rows], all_k[rows], w[seniority], "record_selections", grouped=True)
        self.version += 1
        return self.n_edges - before

    def decay(self, factor: float) -> None:
        """Multiply every weight by ``factor`` in (0, 1], so old choices fade as the model moves."""
        if not (0 < factor <= 1):
            raise BeamIndexError(f"decay: factor must be in (0, 1], got {factor}")
        self._weights = self._weights * float(factor)  # a common factor keeps the order
        self._sid_cache = None
        self.version += 1

    def refresh(self, items: np.ndarray | torch.Tensor, cand_codes: np.ndarray | torch.Tensor,
                cand_scores: np.ndarray | torch.Tensor | None = None, cand_mask: np.ndarray | torch.Tensor | None = None,
                *, new_edge_weight: float | None = None, max_sids_per_item: int | None = None,
                below_primary: bool = False) -> dict[str, float]:
        """Merge I2T beam-search candidates (B, C, L) for ``items`` (B,) into the index.

        A candidate SID the item lacks becomes an edge of weight ``new_edge_weight`` (with
        ``below_primary``: at most the item's strongest weight, so that an untested proposal never
        becomes the primary SID and only selections can change it); then each
        refreshed item keeps its ``max_sids_per_item`` strongest edges, ordered by weight, then
        existing before new (an incumbent is not displaced by an untested proposal of equal
        weight), then candidate score, then SID. At least one edge always survives. Returns
        (and keeps in ``last_churn``) the churn since the previous refresh.
        """
        items = self._check_items(items, "refresh: items")
        cand = as_numpy(cand_codes)
        if cand.ndim != 3 or cand.shape[0] != len(items) or cand.shape[2] != self.n_levels:
            raise BeamIndexError(f"refresh: cand_codes must be ({len(items)}, C, {self.n_levels}), got {cand.shape}")
        B, C = cand.shape[:2]
        scores = np.zeros((B, C)) if cand_scores is None else as_numpy(cand_scores).astype(np.float64)
        mask = np.ones((B, C), dtype=bool) if cand_mask is None else as_numpy(cand_mask).astype(bool)
        if scores.shape != (B, C) or mask.shape != (B, C):
            raise BeamIndexError(f"refresh: cand_scores {scores.shape} and cand_mask {mask.shape} must be ({B}, {C})")
        if not np.isfinite(scores[mask]).all():
            raise BeamIndexError("refresh: a candidate has a non-finite score; mark unusable beams in cand_mask")
        w_new = self.new_edge_weight if new_edge_weight is None else float(new_edge_weight)
        cap = self.max_sids_per_item if max_sids_per_item is None else int(max_sids_per_item)
        if cap < 1 or not (np.isfinite(w_new) and w_new >= 0):
            raise BeamIndexError(f"refresh: need max_sids_per_item >= 1 and a finite new_edge_weight >= 0, got {cap}, {w_new}")
        c_items = np.repeat(items, C)[mask.reshape(-1)]
        c_keys = self._sid.encode(cand.reshape(B * C, -1)[mask.reshape(-1)], "refresh: cand_codes")
        c_scores = scores.reshape(-1)[mask.reshape(-1)]

        n_old = self.n_edges
        all_i = np.concatenate([self._items, c_items])
        all_k = np.concatenate([self._keys, c_keys])
        is_old = np.arange(len(all_i)) < n_old
        all_s = np.concatenate([np.full(n_old, -np.inf), c_scores])
        order, first = group_rows(all_i, all_k)
        g_old = np.logical_or.reduceat(is_old[order], first)
        # an existing edge is first in its group (stable sort, existing rows come first)
        g_w = np.where(g_old, np.concatenate([self._weights, np.zeros(len(c_items))])[order][first], w_new)
        g_s = np.maximum.reduceat(all_s[order], first)
        g_i, g_k = all_i[order][first], all_k[order][first]
        if below_primary:  # ties rank the incumbent first (below)
            primary = rank_within(self._items) == 0  # edges are sorted by item, then weight
            strongest = np.full(self.n_items, w_new)  # every item has an edge: the fill is never read
            strongest[self._items[primary]] = self._weights[primary]
            g_w = np.where(g_old, g_w, np.minimum(w_new, strongest[g_i]))
        seniority = np.where(g_old, order[first], 0)  # position among existing edges; 0 for new ones
        touched = np.zeros(self.n_items, dtype=bool)
        touched[items] = True
        ranked = np.lexsort((g_k, -g_s, seniority, ~g_old, -g_w, g_i))
        keep = ~touched[g_i[ranked]] | (rank_within(g_i[ranked]) < cap)
        ranked = ranked[keep]
        self._set_edges(g_i[ranked], g_k[ranked], g_w[ranked], "refresh", grouped=True)
        self.version += 1
        self.last_churn = churn_between(self._reference, self._snapshot())
        self.last_churn["items_refreshed"] = float(len(np.unique(items)))
        self._reference = self._snapshot()
        return dict(self.last_churn)

    def prune(self, min_weight: float = 0.0, max_per_item: int | None = None) -> int:
        """Drop edges lighter than ``min_weight`` and beyond ``max_per_item`` per item.

        An item's strongest edge always survives, whatever its weight. Returns edges removed.
        """
        if max_per_item is not None and max_per_item < 1:
            raise BeamIndexError(f"prune: max_per_item must be >= 1, got {max_per_item}")
        rank = rank_within(self._items)
        keep = (rank == 0) | (self._weights >= min_weight)
        if max_per_item is not None:
            keep &= rank < max_per_item
        removed = int((~keep).sum())
        self._set_edges(self._items[keep], self._keys[keep], self._weights[keep], "prune", grouped=True)
        self.version += 1
        return removed

    def add_item(self, item: int, codes: np.ndarray | torch.Tensor, weights: np.ndarray | torch.Tensor | None = None) -> int:
        """Cold start: give the next dense item id its SIDs (e.g. from I2T beam search)."""
        if int(item) != self.n_items:
            raise BeamIndexError(f"add_item: new items take the next dense id {self.n_items}, got {item}")
        c = as_numpy(codes)
        c = c[None, :] if c.ndim == 1 else c
        w = np.full(len(c), self.new_edge_weight) if weights is None else as_numpy(weights).astype(np.float64)
        if len(c) == 0 or w.shape != (len(c),):
            raise BeamIndexError(f"add_item: need >= 1 SID and one weight per SID, got codes {c.shape}, weights {w.shape}")
        self.n_items += 1
        try:
            items, keys, weights_ = checked_edges(self._sid, self.n_items, np.full(len(c), item), c, w, "add_item")
            self._set_edges(np.concatenate([self._items, items]), np.concatenate([self._keys, keys]),
                            np.concatenate([self._weights, weights_]), "add_item")
        except BeamIndexError:
            self.n_items -= 1
            raise
        self.version += 1
        return int(item)

    # -- statistics --------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        per_item = self.sids_per_item()
        _, ptr, _, _ = self._sid_view()
        per_sid = np.diff(ptr)
        return {
            "version": self.version, "items": self.n_items, "edges": self.n_edges, "sids": int(len(per_sid)),
            "sids_per_item_mean": float(per_item.mean()) if self.n_items else 0.0,
            "sids_per_item_max": int(per_item.max()) if self.n_items else 0,
            "items_per_sid_mean": float(per_sid.mean()) if len(per_sid) else 0.0,
            "items_per_sid_max": int(per_sid.max()) if len(per_sid) else 0,
            "colliding_sid_share": float((per_sid > 1).mean()) if len(per_sid) else 0.0,
            "primary_collision_share": collision_share(self._keys[self._ptr[:-1]]),
            "weight_total": float(self._weights.sum()),
            **{f"churn_{k}": v for k, v in self.last_churn.items()},
        }

    # -- persistence -------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors + JSON metadata: what ``save`` writes and a recipe's ``extra_state`` carries."""
        ref = self._reference
        tensors = {"edge_items": self._items, "edge_codes": self._sid.decode(self._keys), "edge_weights": self._weights,
                   "ref_edge_items": ref.edge_items, "ref_edge_codes": self._sid.decode(ref.edge_keys),
                   "ref_primary_codes": self._sid.decode(ref.primary_keys)}
        meta = {"version": self.version, "n_items": self.n_items, "codebook_sizes": self.codebook_sizes,
                "max_sids_per_item": self.max_sids_per_item, "new_edge_weight": self.new_edge_weight,
                "last_churn": self.last_churn}
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}, meta

    @classmethod
    def from_state_dict(cls, tensors: dict[str, Any], meta: dict[str, Any], where: str = "beam index state") -> "BeamIndex":
        t = {k: as_numpy(v) for k, v in tensors.items()}
        for name in ("edge_items", "edge_codes", "edge_weights", "ref_edge_items", "ref_edge_codes", "ref_primary_codes"):
            if name not in t:
                raise BeamIndexError(f"{where}: tensor {name!r} missing")
        try:
            index = cls(meta["codebook_sizes"], meta["n_items"], t["edge_items"], t["edge_codes"], t["edge_weights"],
                        max_sids_per_item=meta["max_sids_per_item"], new_edge_weight=meta["new_edge_weight"],
                        version=meta["version"], where=where)
        except KeyError as exc:
            raise BeamIndexError(f"{where}: field {exc.args[0]!r} missing") from None
        if t["ref_primary_codes"].ndim != 2 or t["ref_primary_codes"].shape[0] > index.n_items:
            raise BeamIndexError(f"{where}: ref_primary_codes has shape {t['ref_primary_codes'].shape}")
        ref_keys = index._sid.encode(t["ref_edge_codes"], f"{where}: ref_edge_codes")
        if t["ref_edge_items"].shape != ref_keys.shape:
            raise BeamIndexError(f"{where}: ref_edge_items {t['ref_edge_items'].shape} vs ref_edge_codes {ref_keys.shape}")
        index._reference = Snapshot(t["ref_edge_items"].astype(np.int64), ref_keys,
                                    index._sid.encode(t["ref_primary_codes"], f"{where}: ref_primary_codes"))
        index.last_churn = {str(k): float(v) for k, v in dict(meta.get("last_churn") or {}).items()}
        return index

    def save(self, directory: str | Path) -> None:
        """Atomically write ``edges.safetensors`` + ``index.json`` (format, version, checksum)."""
        tensors, meta = self.state_dict()
        write_index_dir(directory, tensors, meta, self.stats())

    @classmethod
    def load(cls, directory: str | Path) -> "BeamIndex":
        """Read and validate a saved index; a corrupt or inconsistent one raises naming file and field."""
        tensors, meta, where = read_index_dir(directory)
        return cls.from_state_dict(tensors, meta, where=where)

    # -- internals ---------------------------------------------------------------------------
    def _set_edges(self, items: np.ndarray, keys: np.ndarray, weights: np.ndarray, where: str,
                   grouped: bool = False) -> None:
        """Install edges given in seniority order (the stable sort keeps it among equal weights).

        ``grouped``: the caller's rows are already distinct (item, SID) pairs, so the duplicate
        check (a second sort) is skipped on the per-step paths.
        """
        order = np.argsort(-weights, kind="stable")
        order = order[np.argsort(items[order], kind="stable")]
        items, keys, weights = items[order], keys[order], weights[order]
        if not grouped:
            group_order, first = group_rows(items, keys)
            if len(first) != len(items):
                dup = group_order[np.setdiff1d(np.arange(len(items)), first)[0]]
                raise BeamIndexError(f"{where}: item {items[dup]} lists SID {self._sid.decode(keys[dup]).tolist()} twice")
        ptr = np.searchsorted(items, np.arange(self.n_items + 1))
        orphan = np.flatnonzero(np.diff(ptr) == 0)
        if len(orphan):
            raise BeamIndexError(f"{where}: item {orphan[0]} has no SID ({len(orphan)} items without one)")
        self._items, self._keys, self._weights, self._ptr = items, keys, weights, ptr
        self._sid_cache: tuple[np.ndarray, ...] | None = None
        self._sid_count_cache: tuple[np.ndarray, np.ndarray] | None = None  # stands until the edge set changes

    def _sid_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Every distinct SID key and a CSR pointer whose differences count its items; kept across
        weight changes (decay, selections of known edges), which every training step makes."""
        if self._sid_count_cache is None:
            uniq, counts = np.unique(self._keys, return_counts=True)
            self._sid_count_cache = (uniq, np.r_[0, np.cumsum(counts)].astype(np.int64))
        return self._sid_count_cache

    def _sid_view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._sid_cache is None:
            order = np.lexsort((self._items, -self._weights, self._keys))
            keys = self._keys[order]
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, dtype=np.int64)
            ptr = np.append(starts, len(keys)).astype(np.int64)
            self._sid_cache = (keys[starts], ptr, self._items[order], self._weights[order])
        return self._sid_cache  # type: ignore[return-value]

    def _snapshot(self) -> Snapshot:
        return Snapshot(self._items.copy(), self._keys.copy(), self._keys[self._ptr[:-1]].copy())

    def _check_items(self, items: Any, where: str) -> np.ndarray:
        it = as_numpy(items).reshape(-1)
        if len(it) and not np.issubdtype(it.dtype, np.integer):
            raise BeamIndexError(f"{where}: must be integer item ids, got {it.dtype}")
        it = it.astype(np.int64)
        bad = np.flatnonzero((it < 0) | (it >= self.n_items))
        if len(bad):
            raise BeamIndexError(f"{where}: item {it[bad[0]]} outside [0, {self.n_items})")
        return it
