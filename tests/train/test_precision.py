"""train.precision=bfloat16: the forward pass runs under autocast (matrix products in bfloat16),
the weights and optimiser stay float32, and training still learns."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from pitrec.config import load_config
from pitrec.train.api import build_recipe, prepare_data, train_run
from pitrec.train.trainer import training_autocast

from test_pit import TINY as PIT_TINY  # tests/train is on sys.path (pytest's prepend import mode)


def _linear_output_dtypes(recipe, batch, precision: str) -> tuple[set[torch.dtype], torch.dtype]:
    """The dtypes of every nn.Linear output during one training step, and the loss's dtype."""
    seen: set[torch.dtype] = set()
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
             for mod in recipe.modules().values() for m in mod.modules() if isinstance(m, torch.nn.Linear)]
    try:
        recipe.train(True)
        with training_autocast(precision, recipe.device):
            loss = recipe.training_step(batch, 0)["loss"]
    finally:
        for h in hooks:
            h.remove()
    return seen, loss.dtype


@pytest.mark.parametrize("precision, expected", [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_autocast_covers_every_model_of_a_pit_step(tmp_path, precision, expected):
    """PIT's step runs all three models (U2T, Item-to-Token, CSA): each one's products follow the
    precision, and the loss the optimiser sees is float32 either way."""
    cfg = load_config("pit", overrides=PIT_TINY + [f"embed.cache_dir={tmp_path / 'cache'}", "pit.warmup_epochs=0"])
    data, split = prepare_data(cfg)
    torch.manual_seed(0)
    recipe = build_recipe("pit", cfg, data, split)
    # three extra random SIDs per item, so the step also scores candidates (the selection's
    # decoder pass runs under the same autocast)
    n, sizes = split.n_items, recipe.sizes
    extra = np.stack([np.random.default_rng(0).integers(0, s, size=(n, 3)) for s in sizes], axis=-1)
    recipe.index.refresh(np.arange(n), extra, max_sids_per_item=4)
    batch = recipe.train_batches(0, np.random.default_rng(0))[0]
    dtypes, loss_dtype = _linear_output_dtypes(recipe, batch, precision)
    assert recipe._counters.scored > 0  # the candidate scoring ran inside the step
    assert dtypes == {expected}
    assert loss_dtype == torch.float32
    assert all(p.dtype == torch.float32 for mod in recipe.modules().values() for p in mod.parameters())


def test_bfloat16_training_learns_like_float32(tiny_cfg, tmp_path):
    """Same seed, same data: the bfloat16 run's epoch losses fall, and stay within a few percent
    of the float32 run's (bfloat16 keeps 8 bits of mantissa: the losses are close, not equal)."""
    runs = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / precision
        result = train_run("sasrec", tiny_cfg(out, f"train.precision={precision}", "train.epochs=4"))
        losses = [json.loads(line)["train_loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
        runs[precision] = (result, losses)
    (res16, loss16), (_, loss32) = runs["bfloat16"], runs["float32"]
    assert loss16 != loss32  # the Trainer did autocast: a float32 rerun of the same seed is bit-identical
    assert loss16[-1] < loss16[0] * 0.95
    for a, b in zip(loss16, loss32):
        assert abs(a - b) / b < 0.05
    assert yaml.safe_load((tmp_path / "bfloat16" / "config.yaml").read_text())["train"]["precision"] == "bfloat16"
    assert 0.0 <= res16["test"]["ndcg@10"] <= res16["test"]["recall@10"] <= 1.0
