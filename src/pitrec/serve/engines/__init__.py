"""One served method per module; ``load_engine`` picks the one a run directory was trained with."""

from __future__ import annotations

from pitrec.serve.engines.base import Engine, Ranked
from pitrec.serve.loader import ServedRun


def load_engine(run: ServedRun, device: str = "cpu") -> Engine:
    if run.method == "pit":
        from pitrec.serve.engines.pit import PITEngine

        return PITEngine.load(run, device)
    if run.method == "tiger":
        from pitrec.serve.engines.tiger import TigerEngine

        return TigerEngine.load(run, device)
    from pitrec.serve.engines.scores import load_score_engine

    return load_score_engine(run, device)


__all__ = ["Engine", "Ranked", "load_engine"]
