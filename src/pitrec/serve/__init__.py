"""Serving a trained run: ``Recommender`` (Python API) and the FastAPI app (``pitrec serve``).

``Recommender`` is imported lazily: the main CLI imports ``pitrec.serve.cli`` at start-up, and
every other command should not pay for torch and the models."""

from __future__ import annotations

from typing import Any

__all__ = ["Recommender"]


def __getattr__(name: str) -> Any:
    if name == "Recommender":
        from pitrec.serve.recommender import Recommender

        return Recommender
    raise AttributeError(f"module 'pitrec.serve' has no attribute {name!r}")
