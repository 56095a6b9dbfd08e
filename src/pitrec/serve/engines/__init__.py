"""One served method per module; ``load_engine`` picks the one a run directory was trained with."""

from __future__ import annotations

import torch

from pitrec.serve.engines.base import Engine, Ranked
from pitrec.serve.loader import ServedRun
from pitrec.utils.runtime import warn_if_slow_bfloat16


# The served recommender's weights and activations. bfloat16 halves the memory traffic of the
# decoder's feed-forward layers, which dominate beam search, and runs its matrix products on AMX /
# AVX512-BF16 where the CPU has them (about 2x users/s on beauty); elsewhere it is emulated and
# slower. Rankings differ slightly from float32 (near-ties flip): opt in, and measure with
# benchmarks/decode_speed.py --dtype bfloat16, which reports the agreement and recall of both.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def load_engine(run: ServedRun, device: str = "cpu", dtype: str = "float32") -> Engine:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    engine = _load(run, device)
    if dtype != "float32":
        generator = {"tiger": lambda e: e.model, "pit": lambda e: e.models.u2t}.get(engine.method)
        if generator is None:
            raise ValueError(f"dtype={dtype} is offered for the generative methods (tiger, pit), "
                             f"not for a {engine.method} run")
        # only the User-to-Token generator: PIT's Item-to-Token and CSA (new items) stay float32
        generator(engine).to(DTYPES[dtype])
        warn_if_slow_bfloat16(torch.device(device).type, "the served generator (dtype)")
    return engine


def _load(run: ServedRun, device: str) -> Engine:
    if run.method == "pit":
        from pitrec.serve.engines.pit import PITEngine

        return PITEngine.load(run, device)
    if run.method == "tiger":
        from pitrec.serve.engines.tiger import TigerEngine

        return TigerEngine.load(run, device)
    from pitrec.serve.engines.scores import load_score_engine

    return load_score_engine(run, device)


__all__ = ["Engine", "Ranked", "load_engine"]
