"""Shared fixtures. Tests use tiny synthetic data so the whole suite stays fast on 2 cores; the
real Amazon files are only read by tests marked ``@pytest.mark.requires_shared`` or using the
``shared_data`` fixture (CI keeps ``../shared`` beside the clone; elsewhere those tests skip and
say why).

The marker is handled by a hook rather than imported from here: several test folders have their
own ``conftest.py``, so ``from conftest import ...`` would pick up whichever was imported last.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pitrec.data.interactions import Interactions
from pitrec.data.split import Split, leave_one_out
from pitrec.data.synthetic import generate

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "amazon2014"
SHARED_MISSING = (None if (SHARED_DATA / "beauty").is_dir() else
                  f"shared Amazon 2014 data not found at {SHARED_DATA} (expected ../shared beside the repository)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires_shared: reads ../shared/data/amazon2014; skipped when it is absent")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if SHARED_MISSING and item.get_closest_marker("requires_shared") is not None:
        pytest.skip(SHARED_MISSING)


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
