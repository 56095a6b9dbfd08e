"""A prefix tree over semantic IDs, compiled to dense tensors for batched constrained decoding.

Beam search asks two questions for thousands of beams at every level: "which codes may follow
this prefix?" and "which node does this code lead to?". Walking a Python dict per beam per step
costs more than the Transformer step itself, so every level is stored as a dense transition table
``children[l][node, code] -> child node (-1 = no such SID)``; both questions are then one gather.

Leaves (complete SIDs) map to items one-to-many in CSR form (``leaf_ptr``/``leaf_items``): several
items may share a SID (imported tables keep collisions) and one item may own several SIDs (PIT's
beam index), and both are the same data structure here. Nodes of level ``l`` are numbered in the
lexicographic order of their prefixes, so building is deterministic and independent of row order.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


class Trie:
    def __init__(self, children: list[torch.Tensor], leaf_codes: torch.Tensor, leaf_ptr: torch.Tensor,
                 leaf_items: torch.Tensor, codebook_sizes: Sequence[int], n_items: int):
        self.children = children  # L tables; children[l]: (nodes at depth l, codebook_sizes[l]) int32
        self.leaf_codes = leaf_codes  # (n_leaves, L) int64: the SID of each leaf
        self.leaf_ptr = leaf_ptr  # (n_leaves + 1,) int64
        self.leaf_items = leaf_items  # (n_edges,) int64, items of leaf j in leaf_items[leaf_ptr[j]:leaf_ptr[j+1]]
        self.codebook_sizes = [int(v) for v in codebook_sizes]
        self.n_items = int(n_items)

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def build(cls, codes: np.ndarray | torch.Tensor, codebook_sizes: Sequence[int],
              items: np.ndarray | torch.Tensor | None = None, n_items: int | None = None) -> "Trie":
        """Trie of the SIDs ``codes`` (n, L); row ``r`` belongs to item ``items[r]`` (default: ``r``).

        Duplicate (SID, item) rows collapse to one edge; a leaf's items are sorted by id, which is
        the order in which tied items are ranked.
        """
        codes = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
            raise ValueError(f"SIDs must be a non-empty (n, L) array with L >= 1, got shape {codes.shape}")
        n, L = codes.shape
        sizes = np.asarray(list(codebook_sizes), dtype=np.int64)
        if len(sizes) != L:
            raise ValueError(f"{len(sizes)} codebook sizes for SIDs of {L} levels")
        if ((codes < 0) | (codes >= sizes)).any():
            r, l = np.argwhere((codes < 0) | (codes >= sizes))[0]
            raise ValueError(f"SID row {r}, level {l}: code {codes[r, l]} outside [0, {sizes[l]})")
        items = np.arange(n, dtype=np.int64) if items is None else np.asarray(
            items.cpu() if isinstance(items, torch.Tensor) else items, dtype=np.int64)
        if items.shape != (n,):
            raise ValueError(f"items must have one entry per SID row ({n}), got shape {items.shape}")
        n_items = int(items.max()) + 1 if n_items is None else int(n_items)
        if items.min() < 0 or items.max() >= n_items:
            raise ValueError(f"item ids must lie in [0, {n_items}), got [{items.min()}, {items.max()}]")

        children: list[torch.Tensor] = []
        parent = np.zeros(n, dtype=np.int64)  # node of each row at the current depth (root = 0)
        n_nodes = 1
        for level in range(L):
            # a child is identified by (parent node, code); number children in lexicographic order
            key = parent * sizes[level] + codes[:, level]
            uniq, child = np.unique(key, return_inverse=True)
            table = np.full((n_nodes, sizes[level]), -1, dtype=np.int32)
            table.reshape(-1)[uniq] = np.arange(len(uniq), dtype=np.int32)
            children.append(torch.from_numpy(table))
            parent, n_nodes = child.reshape(-1).astype(np.int64), len(uniq)
        leaf = parent
        edges = np.unique(np.stack([leaf, items], axis=1), axis=0)
        counts = np.bincount(edges[:, 0], minlength=n_nodes)
        leaf_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        leaf_codes = np.zeros((n_nodes, L), dtype=np.int64)
        leaf_codes[leaf] = codes
        return cls(children, torch.from_numpy(leaf_codes), torch.from_numpy(leaf_ptr),
                   torch.from_numpy(edges[:, 1].copy()), sizes.tolist(), n_items)

    @classmethod
    def from_sid_table(cls, table) -> "Trie":
        """One SID per item, from a ``pitrec.tokenizers.SidTable``."""
        return cls.build(table.codes, table.codebook_sizes, n_items=table.n_items)

    def to(self, device: torch.device | str) -> "Trie":
        return Trie([c.to(device) for c in self.children], self.leaf_codes.to(device), self.leaf_ptr.to(device),
                    self.leaf_items.to(device), self.codebook_sizes, self.n_items)

    # -- batched queries (one gather each) ------------------------------------------------------
    @property
    def n_levels(self) -> int:
        return len(self.children)

    @property
    def n_leaves(self) -> int:
        return int(self.leaf_codes.shape[0])

    def root(self, *shape: int, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.long, device=device or self.leaf_ptr.device)

    def valid_mask(self, nodes: torch.Tensor, level: int) -> torch.Tensor:
        """nodes (...,) at depth ``level`` -> bool (..., codebook_sizes[level]): codes that extend
        the prefix to an existing SID. A dead node (-1) allows nothing."""
        table = self.children[level]
        mask = table[nodes.clamp(min=0)] >= 0
        return mask & (nodes >= 0).unsqueeze(-1)

    def advance(self, nodes: torch.Tensor, level: int, codes: torch.Tensor) -> torch.Tensor:
        """Child of each node along ``codes`` (same shape); -1 where the prefix leaves the trie."""
        child = self.children[level][nodes.clamp(min=0), codes.clamp(min=0)].long()
        return torch.where((nodes >= 0) & (codes >= 0), child, torch.full_like(child, -1))

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Leaf of each full SID (..., L) -> (...,), -1 for SIDs not in the trie."""
        if codes.shape[-1] != self.n_levels:
            raise ValueError(f"SIDs have {codes.shape[-1]} levels, the trie {self.n_levels}")
        sizes = torch.tensor(self.codebook_sizes, device=codes.device)
        in_range = ((codes >= 0) & (codes < sizes)).all(-1)
        nodes = self.root(*codes.shape[:-1], device=codes.device)
        for level in range(self.n_levels):
            nodes = self.advance(nodes, level, torch.where(in_range, codes[..., level], 0))
        return torch.where(in_range, nodes, torch.full_like(nodes, -1))

    def last_level_mask(self, codes: torch.Tensor) -> torch.Tensor:
        """SIDs (..., L) -> bool (..., codebook_sizes[-1]): the last codes the trie holds after each
        SID's prefix (all False where the prefix is not in the trie)."""
        return self.valid_mask(self.prefix_nodes(codes), self.n_levels - 1)

    def prefix_nodes(self, codes: torch.Tensor, depth: int | None = None) -> torch.Tensor:
        """SIDs (..., L) -> the node of each SID's prefix of ``depth`` codes (default L - 1: the node
        a beam search's last level extends) (...,), -1 where that prefix is not in the trie."""
        if codes.shape[-1] != self.n_levels:
            raise ValueError(f"SIDs have {codes.shape[-1]} levels, the trie {self.n_levels}")
        nodes = self.root(*codes.shape[:-1], device=codes.device)
        for level in range(self.n_levels - 1 if depth is None else depth):
            nodes = self.advance(nodes, level, codes[..., level])
        return nodes

    def contains(self, codes: torch.Tensor) -> torch.Tensor:
        return self.lookup(codes) >= 0

    def leaf_sizes(self, leaves: torch.Tensor) -> torch.Tensor:
        """Number of items of each leaf (0 for -1)."""
        safe = leaves.clamp(min=0)
        size = self.leaf_ptr[safe + 1] - self.leaf_ptr[safe]
        return torch.where(leaves >= 0, size, torch.zeros_like(size))

    def items_of(self, leaves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened items of ``leaves`` (N,) in CSR form: (items, source position in ``leaves``)."""
        sizes = self.leaf_sizes(leaves)
        source = torch.repeat_interleave(torch.arange(len(leaves), device=leaves.device), sizes)
        start = torch.cumsum(sizes, 0) - sizes
        within = torch.arange(len(source), device=leaves.device) - start[source]
        return self.leaf_items[self.leaf_ptr[leaves[source]] + within], source
