"""RQ-KMeans and the balanced variant: determinism, ranges, capacity, and the stable assignment."""

from __future__ import annotations

import numpy as np
import pytest

from pitrec.config import load_config
from pitrec.data.interactions import Interactions
from pitrec.registry import TOKENIZERS
from pitrec.tokenizers.kmeans import balanced_assign, squared_distances


def clustered(n: int = 300, d: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, d)) * 3
    # very uneven cluster sizes, so plain k-means is skewed and balancing has work to do
    which = rng.choice(6, size=n, p=[0.5, 0.2, 0.1, 0.1, 0.05, 0.05])
    return (centres[which] + rng.normal(size=(n, d))).astype(np.float32)


def catalogue(n: int) -> Interactions:
    return Interactions(sequences=[np.arange(n)], user_ids=[0], item_ids=list(range(100, 100 + n)))


def tok_cfg(name: str, *extra: str):
    return load_config(overrides=[f"tokenizer.name={name}", "tokenizer.codebook_size=8", "tokenizer.levels=3",
                                  *extra]).tokenizer


@pytest.mark.parametrize("name", ["rqkmeans", "rqkmeans_balanced"])
def test_deterministic_for_a_seed_and_codes_in_range(name):
    x, data = clustered(), catalogue(300)
    fit = lambda seed: TOKENIZERS.get(name)(tok_cfg(name)).fit(x, data, seed)  # noqa: E731
    a, b, c = fit(1), fit(1), fit(2)
    np.testing.assert_array_equal(a.codes, b.codes)
    assert not np.array_equal(a.codes, c.codes)
    assert a.codes.shape == (300, 3) and a.codes.min() >= 0 and a.codes.max() < 8
    assert a.item_ids == data.item_ids and a.meta["tokenizer"] == name
    errors = a.meta["residual_mse_per_level"]
    assert errors[0] < a.meta["input_mean_sq_norm"] and errors == sorted(errors, reverse=True)


def test_balanced_caps_every_cluster_and_spreads_codes():
    x, data = clustered(), catalogue(300)
    plain = TOKENIZERS.get("rqkmeans")(tok_cfg("rqkmeans")).fit(x, data, 0)
    balanced = TOKENIZERS.get("rqkmeans_balanced")(tok_cfg("rqkmeans_balanced")).fit(x, data, 0)
    capacity = -(-300 // 8)
    for level in range(3):
        assert np.bincount(balanced.codes[:, level]).max() <= capacity
    assert np.bincount(plain.codes[:, 0]).max() > capacity  # the skew balancing removes
    assert balanced.stats()["levels"][0]["entropy_bits"] > plain.stats()["levels"][0]["entropy_bits"]


def test_balanced_assign_respects_capacity_and_is_stable():
    rng = np.random.default_rng(5)
    x, centroids = rng.normal(size=(50, 3)), rng.normal(size=(7, 3))
    dist = squared_distances(x, centroids)
    labels = balanced_assign(dist, capacity=8)
    assert (labels >= 0).all() and np.bincount(labels, minlength=7).max() <= 8
    # stability: no item prefers a cluster that would rather have it than one of its members
    worst_member = np.array([dist[labels == c, c].max() if (labels == c).any() else -np.inf for c in range(7)])
    full = np.bincount(labels, minlength=7) == 8
    for i in range(50):
        better = dist[i] < dist[i, labels[i]]
        assert not (better & (~full | (dist[i] < worst_member))).any()
    with pytest.raises(ValueError, match="cannot hold"):
        balanced_assign(dist, capacity=7)


def test_fewer_items_than_codes_still_works():
    x, data = clustered(n=5), catalogue(5)
    table = TOKENIZERS.get("rqkmeans")(tok_cfg("rqkmeans")).fit(x, data, 0)
    assert table.codebook_sizes == [8, 8, 8] and table.codes.max() < 5
