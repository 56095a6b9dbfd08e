"""Shared fixtures. Tests use tiny synthetic data so the whole suite stays fast on 2 cores; the
real Amazon files are only read by tests marked ``requires_shared`` (CI keeps ``../shared``
beside the clone; elsewhere those tests skip and say why)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pitrec.data.interactions import Interactions
from pitrec.data.split import Split, leave_one_out
from pitrec.data.synthetic import generate

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "amazon2014"

requires_shared = pytest.mark.skipif(
    not (SHARED_DATA / "beauty").is_dir(),
    reason=f"shared Amazon 2014 data not found at {SHARED_DATA} (expected ../shared beside the repository)",
)


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
    if not (SHARED_DATA / "beauty").is_dir():
        pytest.skip(f"shared Amazon 2014 data not found at {SHARED_DATA}")
    return SHARED_DATA
