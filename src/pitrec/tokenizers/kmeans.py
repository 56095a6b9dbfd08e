"""Residual k-means (RQ-KMeans) and its balanced variant.

Level 1 clusters the embeddings, level 2 the residuals left after subtracting each item's level-1
centroid, and so on; the code of an item at level ``l`` is its cluster there. Plain k-means lets a
few dense regions take most items (skewed first-level codes, more collisions deeper down); the
balanced variant caps every cluster at ``ceil(n / K)`` items with a stable capacity-constrained
assignment, which spreads the codes evenly at some cost in quantisation error.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from tqdm.auto import tqdm

from pitrec.data.interactions import Interactions
from pitrec.registry import TOKENIZERS
from pitrec.tokenizers.base import Tokenizer, check_embeddings
from pitrec.tokenizers.sid_table import SidTable


def kmeans_fit(x: np.ndarray, k: int, seed: int, max_iter: int, n_init: int) -> tuple[np.ndarray, np.ndarray]:
    """(centroids (k', d), labels (n,)) with ``k' = min(k, n)`` so tiny catalogues still work."""
    # imported here: scikit-learn costs seconds to import, and every pitrec process (each benchmark
    # worker, every CLI call) registers this tokenizer whether or not it fits one
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    k_eff = min(k, len(x))
    with warnings.catch_warnings():
        # duplicate items (identical texts) make fewer distinct points than clusters: expected
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=k_eff, n_init=n_init, max_iter=max_iter, random_state=seed).fit(x)
    return km.cluster_centers_.astype(np.float32), km.labels_.astype(np.int64)


def squared_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] - 2.0 * x @ centroids.T + (centroids * centroids).sum(1)[None, :]
    return np.maximum(d, 0.0)


def balanced_assign(dist: np.ndarray, capacity: int) -> np.ndarray:
    """Each item to one cluster, at most ``capacity`` items per cluster, by deferred acceptance:
    items propose to clusters nearest first, a cluster keeps its ``capacity`` nearest proposers
    and rejects the rest, who propose to their next choice. The result is stable (no item and
    cluster both prefer each other to what they got) and deterministic (ties by item id)."""
    n, k = dist.shape
    if capacity * k < n:
        raise ValueError(f"capacity {capacity} x {k} clusters cannot hold {n} items")
    preference = np.argsort(dist, axis=1, kind="stable")
    choice = np.zeros(n, dtype=np.int64)  # index into each item's preference list
    held = np.full(n, -1, dtype=np.int64)  # tentative cluster of each item
    free = np.arange(n)
    while len(free):
        held[free] = preference[free, choice[free]]
        pool = np.flatnonzero(held >= 0)
        clusters = held[pool]
        order = np.lexsort((pool, dist[pool, clusters], clusters))
        pool, clusters = pool[order], clusters[order]
        starts = np.r_[0, np.flatnonzero(np.diff(clusters)) + 1]
        rank = np.arange(len(pool)) - np.repeat(starts, np.diff(np.r_[starts, len(pool)]))
        free = pool[rank >= capacity]
        held[free] = -1
        choice[free] += 1
    return held


def balanced_kmeans(x: np.ndarray, k: int, seed: int, max_iter: int, n_init: int,
                    rounds: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means++/Lloyd start, then alternate capacity-constrained assignment and re-centring."""
    centroids, labels = kmeans_fit(x, k, seed, max_iter, n_init)
    capacity = -(-len(x) // len(centroids))
    for _ in range(rounds):
        new = balanced_assign(squared_distances(x, centroids), capacity)
        counts = np.bincount(new, minlength=len(centroids))
        sums = np.zeros_like(centroids)
        np.add.at(sums, new, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
        if np.array_equal(new, labels):
            break
        labels = new
    return centroids, labels


class ResidualKMeans(Tokenizer):
    balanced = False

    def fit(self, embeddings: np.ndarray | None, data: Interactions, seed: int) -> SidTable:
        x = check_embeddings(embeddings, data, self.name)
        sizes = self.cfg.codebook_sizes()
        km = self.cfg.kmeans
        residual = x.copy()
        codes = np.zeros((len(x), len(sizes)), dtype=np.int64)
        errors, start = [], time.perf_counter()
        for level, k in enumerate(tqdm(sizes, desc=self.name, disable=not self.progress)):
            if self.balanced:
                centroids, labels = balanced_kmeans(residual, k, seed + level, km.max_iter, km.n_init, km.balanced_iter)
            else:
                centroids, labels = kmeans_fit(residual, k, seed + level, km.max_iter, km.n_init)
            codes[:, level] = labels
            residual = residual - centroids[labels]
            errors.append(float((residual ** 2).sum(1).mean()))
        meta = {"tokenizer": self.name, "seed": seed, "fit_seconds": time.perf_counter() - start,
                "residual_mse_per_level": errors,
                "input_mean_sq_norm": float((x ** 2).sum(1).mean())}
        return SidTable(codes, sizes, meta, list(data.item_ids))


@TOKENIZERS.register("rqkmeans")
class RQKMeans(ResidualKMeans):
    name = "rqkmeans"


@TOKENIZERS.register("rqkmeans_balanced")
class BalancedRQKMeans(ResidualKMeans):
    name = "rqkmeans_balanced"
    balanced = True
