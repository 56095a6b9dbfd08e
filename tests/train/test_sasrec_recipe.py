"""The SASRec recipe's configuration checks."""

from __future__ import annotations

import pytest

from pitrec.train.api import build_recipe, prepare_data


def test_sasrec_refuses_a_long_history_stride(tiny_cfg):
    """The stride shapes TIGER's and PIT's prefix windows; SASRec would ignore it silently."""
    cfg = tiny_cfg(None, "train.long_history_stride=2")
    data, split = prepare_data(cfg)
    with pytest.raises(ValueError, match="long_history_stride applies to TIGER"):
        build_recipe("sasrec", cfg, data, split)
