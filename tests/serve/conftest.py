"""Fixtures of the service tests. The tiny trained runs they serve (``trained_runs``) live in the
root ``conftest.py``, shared with the re-evaluation tests.

Tests never write into these run directories: every ``Recommender`` gets its own state folder
(``serve_state``) or ``persist=False``."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def pit_run(trained_runs) -> Path:
    return trained_runs("pit")


@pytest.fixture
def serve_state(tmp_path) -> Path:
    return tmp_path / "serving"
