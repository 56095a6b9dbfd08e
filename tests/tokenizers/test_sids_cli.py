"""``pitrec embed`` / ``pitrec sids build|import|stats`` on a tiny dataset written to disk."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from pitrec.cli import app
from pitrec.data.synthetic import write_s3rec
from pitrec.tokenizers.sid_table import SidTable


@pytest.fixture()
def folder(tmp_path, tiny_data):
    return write_s3rec(tiny_data, tmp_path / "tiny")


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_embed_build_and_stats(tmp_path, folder, tiny_data):
    cache = f"--embed.cache_dir={tmp_path / 'cache'}"
    out = invoke("embed", "--data", str(folder), "--encoder", "tfidf", "--out", str(tmp_path / "e.npy"),
                 "--embed.tfidf_dim=8", "--run.progress=false", cache)
    assert f"{tiny_data.n_items} items -> 8-d vectors (tfidf" in out
    assert np.load(tmp_path / "e.npy").shape == (tiny_data.n_items, 8)
    out = invoke("sids", "build", "--data", str(folder), "--tokenizer", "rqkmeans", "--embeddings",
                 str(tmp_path / "e.npy"), "--out", str(tmp_path / "s.parquet"), "--tokenizer.codebook_size=4",
                 "--run.progress=false", cache)
    assert "before the policy" in out
    assert SidTable.load(tmp_path / "s.parquet").is_unique()
    stats = json.loads(invoke("sids", "stats", str(tmp_path / "s.parquet"), "--json"))
    assert stats["n_items"] == tiny_data.n_items and stats["codebook_sizes"][:3] == [4, 4, 4]


def test_import_and_its_errors(tmp_path, folder, tiny_data):
    ext = tmp_path / "ext.json.gz"
    with gzip.open(ext, "wt") as fh:
        json.dump({str(raw - 1): [f"<a_{i % 5}>"] for i, raw in enumerate(tiny_data.item_ids)}, fh)
    cache = f"--embed.cache_dir={tmp_path / 'cache'}"
    out = invoke("sids", "import", str(ext), "--data", str(folder), "--out", str(tmp_path / "i.json"),
                 "--collision", "keep", cache)
    assert "5 distinct SIDs" in out and "keep" in out
    bad = CliRunner().invoke(app, ["sids", "import", str(ext), "--data", str(folder), "--out", str(tmp_path / "x.json"),
                                   "--key-offset", "5", cache])
    assert bad.exit_code == 2 and "match no item of the catalogue" in bad.output
