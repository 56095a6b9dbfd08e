"""Shared fixtures. Tests use tiny synthetic data so the whole suite stays fast on 2 cores; the
real Amazon files are only read by tests marked ``@pytest.mark.requires_shared`` or using the
``shared_data`` fixture (CI keeps ``../shared`` beside the clone; elsewhere those tests skip and
say why).

The marker is handled by a hook rather than imported from here: several test folders have their
own ``conftest.py``, so ``from conftest import ...`` would pick up whichever was imported last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch

from pitrec.config import load_config
from pitrec.data.interactions import Interactions
from pitrec.data.split import Split, leave_one_out
from pitrec.data.synthetic import generate
from pitrec.registry import RECIPES
from pitrec.train.api import train_run

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "amazon2014"
SHARED_MISSING = (None if (SHARED_DATA / "beauty").is_dir() else
                  f"shared Amazon 2014 data not found at {SHARED_DATA} (expected ../shared beside the repository)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires_shared: reads ../shared/data/amazon2014; skipped when it is absent")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if SHARED_MISSING and item.get_closest_marker("requires_shared") is not None:
        pytest.skip(SHARED_MISSING)


@pytest.fixture
def one_thread():
    """One torch thread for tests of tiny tensors: on a loaded 2-core machine a second thread only
    adds synchronisation, which made these tests 10-100x slower. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_data() -> Interactions:
    """60 users, ~40 items, 4 clusters: big enough to have structure, small enough to train in seconds."""
    return generate(n_users=60, n_items=40, n_clusters=4, seed=3)


@pytest.fixture(scope="session")
def tiny_split(tiny_data: Interactions) -> Split:
    return leave_one_out(tiny_data, max_history=5)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding ``beauty/`` and ``sports/``; skips the test when it is absent."""
    if SHARED_MISSING:
        pytest.skip(SHARED_MISSING)
    return SHARED_DATA


# Tiny trained runs, each built once per session (seconds on one thread): PIT (the full service; also
# without CSA, and on the tokenizer's input), TIGER (static SIDs), SASRec and popularity (score rankers).
# Tests never write into these run directories.
DATA = ["data.format=synthetic", "data.synthetic_users=100", "data.synthetic_items=40", "data.synthetic_clusters=4",
        "data.max_history=6", "run.progress=false", "run.seed=5", "run.num_threads=1",
        "train.batch_size=64", "train.lr=0.005", "train.warmup_steps=0"]
GENERATIVE = ["embed.encoder=tfidf", "embed.tfidf_dim=16", "tokenizer.name=rqkmeans", "tokenizer.levels=2",
              "tokenizer.codebook_size=4", "u2t.d_model=16", "u2t.heads=2", "u2t.encoder_layers=1",
              "u2t.decoder_layers=1", "u2t.ffn=32", "u2t.max_history=6"]
OVERRIDES = {
    "pit": GENERATIVE + ["csa.dim=16", "csa.mlp_hidden=[16,8,8]", "i2t.d_model=16", "i2t.layers=1", "i2t.ffn=32",
                         "train.epochs=3", "pit.warmup_epochs=1", "pit.beam_width=6", "pit.max_items_per_sid=50"],
    # X_i and I2T read the tokenizer's input: [unit text vector ; collaborative vector]
    "pit-cf": GENERATIVE + ["csa.dim=16", "csa.mlp_hidden=[16,8,8]", "i2t.d_model=16", "i2t.layers=1", "i2t.ffn=32",
                            "train.epochs=2", "pit.warmup_epochs=1", "pit.beam_width=6", "pit.max_items_per_sid=50",
                            "tokenizer.collaborative_dim=4", "pit.item_content=tokenizer_input",
                            "pit.i2t_content=true"],
    "pit-no-csa": GENERATIVE + ["pit.csa=false", "i2t.d_model=16", "i2t.layers=1", "i2t.ffn=32", "train.epochs=2",
                                "pit.warmup_epochs=1", "pit.beam_width=6", "pit.max_items_per_sid=50"],
    "tiger": GENERATIVE + ["train.epochs=2", "tiger.beam_width=6"],
    # history items also carry a learned id embedding (u2t.history_item_ids)
    "tiger-ids": GENERATIVE + ["train.epochs=2", "tiger.beam_width=6", "u2t.history_item_ids=true"],
    "pit-ids": GENERATIVE + ["csa.dim=16", "csa.mlp_hidden=[16,8,8]", "i2t.d_model=16", "i2t.layers=1", "i2t.ffn=32",
                             "train.epochs=2", "pit.warmup_epochs=1", "pit.beam_width=6", "pit.max_items_per_sid=50",
                             "u2t.history_item_ids=true"],
    "sasrec": ["sasrec.hidden=16", "sasrec.ffn=32", "sasrec.max_len=6", "train.epochs=2"],
    "popularity": [],
    "content-knn": ["embed.encoder=tfidf", "embed.tfidf_dim=16", "knn.last_items=2"],
}


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> Callable[[str], Path]:
    """method -> its run directory, trained on first use."""
    root = tmp_path_factory.mktemp("serve_runs")
    built: dict[str, Path] = {}

    def get(method: str) -> Path:
        if method not in built:
            out = root / method
            paths = [f"embed.cache_dir={root / 'cache'}", f"run.out={out}"]
            recipe = method if method in RECIPES else method.split("-")[0]  # pit-cf: the pit recipe
            cfg = load_config(recipe, overrides=DATA + OVERRIDES[method] + paths)
            train_run(recipe, cfg)
            built[method] = out
        return built[method]

    return get
