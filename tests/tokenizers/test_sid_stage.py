"""The SID stage: cached artifacts keyed by their inputs, run-directory copies, import via config."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import yaml

from pitrec.config import load_config
from pitrec.data.errors import DataError
from pitrec.tokenizers.kmeans import RQKMeans
from pitrec.tokenizers.sid_table import SidTable
from pitrec.tokenizers.stage import sid_table
from pitrec.train.run_dir import RunDir


def make_cfg(tmp_path, *overrides: str):
    return load_config(overrides=[f"embed.cache_dir={tmp_path / 'cache'}", "run.progress=false",
                                  "tokenizer.codebook_size=4", "tokenizer.levels=2", *overrides])


@pytest.fixture()
def embeddings(tiny_data) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(tiny_data.n_items, 6)).astype(np.float32)


def test_builds_once_then_loads_the_artifact(tmp_path, tiny_data, embeddings, monkeypatch):
    cfg = make_cfg(tmp_path)
    first = sid_table(cfg, tiny_data, embeddings)
    assert first.is_unique() and first.n_levels == 3 and first.item_ids == tiny_data.item_ids
    folder = next((tmp_path / "cache" / "sids").iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "sid_table.json", "stats.json"]
    assert yaml.safe_load((folder / "config.yaml").read_text())["tokenizer"]["codebook_size"] == 4
    assert json.loads((folder / "stats.json").read_text())["distinct_sids"] == tiny_data.n_items

    def must_not_fit(self, *args):
        raise AssertionError("refit although nothing changed")

    monkeypatch.setattr(RQKMeans, "fit", must_not_fit)
    again = sid_table(cfg, tiny_data, embeddings)
    np.testing.assert_array_equal(again.codes, first.codes)
    for changed in ([cfg.with_overrides(["tokenizer.seed=9"]), embeddings],
                    [cfg.with_overrides(["tokenizer.collision=keep"]), embeddings],
                    [cfg, embeddings + 1]):
        with pytest.raises(AssertionError, match="refit"):
            sid_table(changed[0], tiny_data, changed[1])


def test_run_directory_gets_a_copy(tmp_path, tiny_data, embeddings):
    run = RunDir(tmp_path / "run").create()
    table = sid_table(make_cfg(tmp_path, "tokenizer.name=rqkmeans_balanced"), tiny_data, embeddings, run=run)
    copy = SidTable.load(run.path / "sid_table.json")
    np.testing.assert_array_equal(copy.codes, table.codes)
    assert (run.path / "sid_stats.json").is_file() and (run.path / "sid_config.yaml").is_file()
    assert copy.meta["tokenizer"] == "rqkmeans_balanced"


def test_import_through_the_config(tmp_path, tiny_data):
    path = tmp_path / "ext.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump({str(raw - 1): [f"<a_{i % 3}>", "<b_0>"] for i, raw in enumerate(tiny_data.item_ids)}, fh)
    cfg = make_cfg(tmp_path, "tokenizer.name=import", f"tokenizer.import_path={path}")
    table = sid_table(cfg, tiny_data, None)
    assert table.is_unique() and table.codebook_sizes[:2] == [3, 1]
    kept = sid_table(cfg.with_overrides(["tokenizer.collision=keep"]), tiny_data, None)
    assert kept.stats()["distinct_sids"] == 3
    with pytest.raises(DataError, match="no such SID table file"):
        sid_table(make_cfg(tmp_path, "tokenizer.name=import", "tokenizer.import_path=/nope.json"), tiny_data, None)


def test_wrong_embeddings_and_names_fail_clearly(tmp_path, tiny_data, embeddings):
    with pytest.raises(ValueError, match=r"embeddings of shape \(3, 6\)"):
        sid_table(make_cfg(tmp_path), tiny_data, embeddings[:3])
    with pytest.raises(KeyError, match="unknown tokenizer 'kmeans'.*rqvae"):
        sid_table(make_cfg(tmp_path, "tokenizer.name=kmeans"), tiny_data, embeddings)
