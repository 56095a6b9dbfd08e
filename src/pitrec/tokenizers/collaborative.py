"""Collaborative signal in the tokenizer's input: item vectors from the training sequences'
co-occurrences, concatenated to the content embedding before RQ-KMeans / RQ-VAE.

Why: content-only SIDs (TIGER's) put items with similar text under one prefix whether or not users
consume them together; LETTER's released table, which regularises its codes with collaborative
embeddings, trains a visibly better generator on Beauty (benchmarks/tuning/tiger_beauty.md).
This is the cheap version of that idea: a truncated SVD of the positive PMI of items that occur
within ``collaborative_window`` positions of each other in a training sequence. Only the training
part of the leave-one-out split is read, so validation and test targets never shape the SIDs.
Items that never occur in training get a zero collaborative part (their SIDs come from content).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD

from pitrec.data.split import Split
from pitrec.tokenizers.stage import tokenizer_seed

log = logging.getLogger(__name__)


def cooccurrence(sequences: list[np.ndarray], n_items: int, window: int) -> sp.csr_matrix:
    """Symmetric counts of item pairs at distance 1..window in the same sequence (no self pairs)."""
    rows, cols = [], []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        for d in range(1, min(window, len(seq) - 1) + 1):
            a, b = seq[:-d], seq[d:]
            keep = a != b
            rows += [a[keep], b[keep]]
            cols += [b[keep], a[keep]]
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float64)
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n_items, n_items))


def ppmi(counts: sp.csr_matrix) -> sp.csr_matrix:
    """Positive pointwise mutual information of a symmetric count matrix: popular items stop
    dominating every item's neighbourhood."""
    counts = counts.tocoo()
    total = counts.sum()
    if total == 0:
        return counts.tocsr()
    marginal = np.asarray(counts.sum(axis=1)).ravel()
    pmi = np.log(counts.data * total / (marginal[counts.row] * marginal[counts.col]))
    keep = pmi > 0
    return sp.csr_matrix((pmi[keep], (counts.row[keep], counts.col[keep])), shape=counts.shape)


def collaborative_embeddings(split: Split, dim: int, window: int, seed: int) -> np.ndarray:
    """(n_items, dim) L2-normalised rows from the training sequences (zero rows for items unseen
    in training)."""
    matrix = ppmi(cooccurrence(split.train, split.n_items, window))
    k = min(dim, split.n_items - 1)
    if matrix.nnz == 0 or k < 1:
        return np.zeros((split.n_items, dim), dtype=np.float32)
    svd = TruncatedSVD(n_components=k, random_state=seed)
    vectors = svd.fit_transform(matrix)  # U * S
    out = np.zeros((split.n_items, dim), dtype=np.float32)
    out[:, :k] = vectors
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    unseen = int((norms.ravel() == 0).sum())
    log.info("collaborative embeddings: %d dims from %d co-occurring pairs (window %d); %d items unseen in training",
             k, matrix.nnz, window, unseen)
    return out


def tokenizer_input(cfg, content: np.ndarray | None, split: Split) -> np.ndarray | None:
    """What the tokenizer fits on: the content embedding, or with ``tokenizer.collaborative_dim``
    > 0 the L2-normalised content embedding beside ``collaborative_weight`` x the collaborative
    one (both unit rows, so the weight is the collaborative part's share of the distances)."""
    tc = cfg.tokenizer
    if content is None or tc.collaborative_dim == 0:
        return content
    if len(content) != split.n_items:
        raise ValueError(f"content embeddings have {len(content)} rows, the dataset {split.n_items} items")
    collab = collaborative_embeddings(split, tc.collaborative_dim, tc.collaborative_window, tokenizer_seed(cfg))
    return np.concatenate([unit_rows(content), tc.collaborative_weight * collab], axis=1)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (all-zero rows stay zero), float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors, dtype=np.float32), where=norms > 0)
