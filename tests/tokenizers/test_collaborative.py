"""Collaborative tokenizer input: co-occurrence counts and PPMI against hand-computed fixtures, no
leakage from validation/test targets, and SIDs that follow planted co-consumption groups that the
content embedding does not show."""

from __future__ import annotations

import numpy as np
import pytest

from pitrec.config import load_config
from pitrec.data.interactions import Interactions
from pitrec.data.split import Split
from pitrec.registry import TOKENIZERS
from pitrec.tokenizers.collaborative import collaborative_embeddings, cooccurrence, ppmi, tokenizer_input


def _split(train: list[list[int]], n_items: int, targets: tuple[int, int] = (0, 0)) -> Split:
    seqs = [np.asarray(s, dtype=np.int64) for s in train]
    return Split(n_items=n_items, train=seqs, valid_history=seqs, valid_target=np.full(len(seqs), targets[0]),
                 test_history=seqs, test_target=np.full(len(seqs), targets[1]))


def test_cooccurrence_counts_pairs_within_the_window_both_ways():
    counts = cooccurrence([np.array([0, 1, 2]), np.array([2, 0]), np.array([3, 3])], 4, window=1).toarray()
    expected = np.zeros((4, 4))
    for a, b in [(0, 1), (1, 2), (2, 0)]:  # distance-1 pairs; (3, 3) is a self pair: not counted
        expected[a, b] += 1
        expected[b, a] += 1
    np.testing.assert_array_equal(counts, expected)
    wide = cooccurrence([np.array([0, 1, 2])], 3, window=2).toarray()
    assert wide[0, 2] == wide[2, 0] == 1  # distance 2 counts once the window reaches it


def test_ppmi_matches_hand_computed_values_and_drops_negative_associations():
    import scipy.sparse as sp

    counts = np.array([[0, 6, 1], [6, 0, 3], [1, 3, 0]], dtype=float)  # total 20, marginals 7, 9, 4
    got = ppmi(sp.csr_matrix(counts)).toarray()
    assert got[0, 1] == pytest.approx(np.log(6 * 20 / (7 * 9)))  # 1.905x chance
    assert got[1, 2] == pytest.approx(np.log(3 * 20 / (9 * 4)))  # 1.667x chance
    assert got[0, 2] == got[2, 0] == 0  # 1 * 20 / (7 * 4) = 0.71x chance: negative PMI, dropped
    np.testing.assert_allclose(got, got.T)


def test_only_the_training_sequences_shape_the_embedding():
    train = [[0, 1, 2, 3], [3, 2, 1], [4, 5, 4, 5], [1, 0]]
    a = collaborative_embeddings(_split(train, 7, targets=(6, 6)), dim=3, window=2, seed=0)
    b = collaborative_embeddings(_split(train, 7, targets=(0, 5)), dim=3, window=2, seed=0)
    np.testing.assert_array_equal(a, b)
    assert np.all(a[6] == 0)  # item 6 never occurs in training: zero collaborative part
    np.testing.assert_allclose(np.linalg.norm(a[:6], axis=1), 1.0, rtol=1e-5)


def _cfg(*extra: str):
    return load_config(overrides=["tokenizer.name=rqkmeans", "tokenizer.levels=1", "tokenizer.codebook_size=2",
                                  *extra])


def test_content_passes_through_unchanged_when_off():
    content = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    assert tokenizer_input(_cfg(), content, _split([[0, 1]], 5)) is content
    with pytest.raises(ValueError, match="4 rows, the dataset 5 items"):
        tokenizer_input(_cfg("tokenizer.collaborative_dim=2"), content[:4], _split([[0, 1]], 5))


def test_sids_follow_co_consumption_the_content_cannot_see():
    """Two groups of 20 items consumed apart; content vectors are noise. One level of 2 codes
    fitted on content alone splits the items at chance; with the collaborative part it recovers
    the groups."""
    rng = np.random.default_rng(0)
    n = 40
    content = rng.normal(size=(n, 16)).astype(np.float32)
    train = [rng.choice(np.arange(20) + 20 * (u % 2), size=8, replace=False).tolist() for u in range(200)]
    split = _split(train, n)
    group = np.arange(n) >= 20
    catalogue = Interactions(sequences=[np.arange(n)], user_ids=[0], item_ids=list(range(n)))

    def purity(cfg) -> float:
        x = tokenizer_input(cfg, content, split)
        codes = TOKENIZERS.get("rqkmeans")(cfg.tokenizer).fit(x, catalogue, 0).codes[:, 0]
        agree = float(np.mean(codes == group))
        return max(agree, 1 - agree)

    assert purity(_cfg()) < 0.8
    with_collab = _cfg("tokenizer.collaborative_dim=4", "tokenizer.collaborative_weight=3")
    assert purity(with_collab) == 1.0
    assert tokenizer_input(with_collab, content, split).shape == (n, 16 + 4)


def test_tiger_recipe_fits_its_sids_on_the_collaborative_input(tmp_path):
    """The recipe passes the training split through: the table differs from the content-only one
    and its saved config says how it was made."""
    from pitrec.train.api import build_recipe, prepare_data

    tiny = ["data.format=synthetic", "data.synthetic_users=120", "data.synthetic_items=50",
            "data.synthetic_clusters=4", "embed.encoder=tfidf", "embed.tfidf_dim=16", f"embed.cache_dir={tmp_path}",
            "tokenizer.name=rqkmeans", "tokenizer.levels=2", "tokenizer.codebook_size=4",
            "u2t.d_model=16", "u2t.heads=2", "u2t.encoder_layers=1", "u2t.decoder_layers=1", "u2t.ffn=32",
            "run.progress=false"]
    codes = {}
    for dim in (0, 8):
        cfg = load_config("tiger", overrides=tiny + [f"tokenizer.collaborative_dim={dim}", "tokenizer.collaborative_weight=2"])
        data, split = prepare_data(cfg)
        codes[dim] = build_recipe("tiger", cfg, data, split).item_codes.clone()
    assert codes[0].shape == codes[8].shape and not bool((codes[0] == codes[8]).all())
    cached = list((tmp_path / "sids").glob("*/config.yaml"))
    assert len(cached) == 2 and any("collaborative_dim: 8" in p.read_text() for p in cached)
