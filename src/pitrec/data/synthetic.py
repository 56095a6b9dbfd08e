"""The embedded default dataset: deterministic synthetic interaction logs with planted structure.

What is planted, and why each piece is there:
- item clusters whose titles share topic words and whose attributes share a category id, so that
  content embeddings (and semantic IDs built from them) carry real signal;
- within a cluster, items form a chain and users often move to the next item of the chain, so a
  sequential model measurably beats popularity (a test asserts this);
- users drift between neighbouring clusters on a ring, so recent history matters more than old;
- Zipf popularity inside clusters and across clusters, so popularity is a real baseline.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from pitrec.data.interactions import Interactions

_ADJECTIVES = [
    "classic", "deluxe", "mini", "pro", "travel", "organic", "matte", "glossy", "ultra", "soft",
    "daily", "rapid", "gentle", "bold", "pure", "vivid", "smooth", "compact", "active", "fresh",
]
_SYLLABLES = ["ka", "lo", "mi", "ra", "ten", "vo", "zu", "pel", "qua", "shi", "dor", "fen", "gri", "nox", "bel"]


def _topic_words(n_clusters: int, per_cluster: int, rng: np.random.Generator) -> list[list[str]]:
    words: set[str] = set()
    out = []
    for _ in range(n_clusters):
        cluster = []
        while len(cluster) < per_cluster:
            w = "".join(rng.choice(_SYLLABLES, size=rng.integers(2, 4)))
            if w not in words:
                words.add(w)
                cluster.append(w)
        out.append(cluster)
    return out


def generate(n_users: int = 2000, n_items: int = 600, n_clusters: int = 12, seed: int = 7,
             mean_length: float = 9.0, p_stay: float = 0.8, p_chain: float = 0.6) -> Interactions:
    if n_items < n_clusters * 2:
        raise ValueError(f"need at least 2 items per cluster (n_items={n_items}, n_clusters={n_clusters})")
    rng = np.random.default_rng(seed)
    # items -> clusters, each cluster's items in a chain order
    cluster_of = rng.permutation(np.arange(n_items) % n_clusters)
    members = [np.flatnonzero(cluster_of == c) for c in range(n_clusters)]
    members = [rng.permutation(m) for m in members]
    pos_in_cluster = np.empty(n_items, dtype=np.int64)
    for m in members:
        pos_in_cluster[m] = np.arange(len(m))
    item_pop = [1.0 / np.arange(1, len(m) + 1) ** 0.9 for m in members]
    item_pop = [p / p.sum() for p in item_pop]
    cluster_pop = 1.0 / np.arange(1, n_clusters + 1) ** 0.7
    cluster_pop = rng.permutation(cluster_pop / cluster_pop.sum())

    # text and attributes
    topics = _topic_words(n_clusters, 6, rng)
    titles, attrs = [], []
    n_brands = 3
    for i in range(n_items):
        c = cluster_of[i]
        words = list(rng.choice(topics[c], size=2, replace=False))
        words.append(str(rng.choice(_ADJECTIVES)))
        if rng.random() < 0.3:  # a little cross-cluster noise
            words.append(str(rng.choice(topics[rng.integers(n_clusters)])))
        words.append(f"no{pos_in_cluster[i] % 50}")
        titles.append(" ".join(words))
        brand = n_clusters + c * n_brands + int(rng.integers(n_brands))
        attrs.append([int(c), int(brand)])

    sequences = []
    for _ in range(n_users):
        length = int(min(60, 5 + rng.geometric(1.0 / max(1.0, mean_length - 4))))
        c = int(rng.choice(n_clusters, p=cluster_pop))
        prev = -1
        seq = []
        for _ in range(length):
            r = rng.random()
            if r > p_stay:
                c = (c + (1 if rng.random() < 0.5 else -1)) % n_clusters if r < 0.97 else int(rng.integers(n_clusters))
                prev = -1
            m = members[c]
            if prev >= 0 and cluster_of[prev] == c and rng.random() < p_chain:
                item = int(m[(pos_in_cluster[prev] + 1) % len(m)])
            else:
                item = int(m[rng.choice(len(m), p=item_pop[c])])
                if item == prev:
                    item = int(m[(pos_in_cluster[prev] + 1) % len(m)])
            seq.append(item)
            prev = item
        sequences.append(np.array(seq, dtype=np.int64))

    # keep only items that occur, re-densified, so the catalog is exactly what users touched
    used = np.zeros(n_items, dtype=bool)
    used[np.concatenate(sequences)] = True
    new_id = np.cumsum(used) - 1
    kept = np.flatnonzero(used)
    return Interactions(
        sequences=[new_id[s] for s in sequences],
        user_ids=list(range(1, n_users + 1)),
        item_ids=list(range(1, len(kept) + 1)),
        item_text=[titles[i] for i in kept],
        item_attributes=[attrs[i] for i in kept],
        attribute_ids=list(range(n_clusters * (1 + n_brands))),
        name="synthetic",
        source=f"synthetic(n_users={n_users}, n_items={n_items}, n_clusters={n_clusters}, seed={seed})",
    )


def write_s3rec(data: Interactions, folder: str | Path) -> Path:
    """Write any ``Interactions`` in the S3-Rec layout (what ``pitrec data synth`` produces)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "sequences.txt.gz", "wt", encoding="utf-8") as fh:
        for user, seq in zip(data.user_ids, data.sequences):
            fh.write(" ".join([str(user)] + [str(data.item_ids[i]) for i in seq]) + "\n")
    if data.item_text is not None:
        with gzip.open(folder / "items.tsv.gz", "wt", encoding="utf-8") as fh:
            fh.write("item_id\tasin\ttitle\n")
            for raw, text in zip(data.item_ids, data.item_text):
                fh.write(f"{raw}\tSYN{raw}\t{text}\n")
    if data.item_attributes is not None:
        attr_raw = data.attribute_ids or []
        payload = {str(raw): [attr_raw[a] for a in attrs] for raw, attrs in zip(data.item_ids, data.item_attributes) if attrs}
        with gzip.open(folder / "item_attributes.json.gz", "wt", encoding="utf-8") as fh:
            json.dump(payload, fh)
    return folder
