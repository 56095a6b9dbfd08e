"""PIT's co-evolution options on tiny synthetic data: sibling proposals (``pit.proposal_prefix``)
and a tokenizer frozen after some co-evolution epochs (``pit.coevolution_epochs``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pitrec.train.api import build_recipe, prepare_data, train_run

from test_pit import tiny_cfg  # tests/train is on sys.path (pytest's prepend import mode)


@pytest.mark.parametrize("prefix", [0, 1])
def test_proposal_prefix_keeps_i2t_s_new_sids_below_the_primary_s_first_codes(tmp_path, prefix):
    """Free proposals land anywhere in the codebooks (on this catalogue some differ from the
    primary at the first code); with a prefix every new edge is a sibling of its item's primary."""
    cfg = tiny_cfg(tmp_path, f"pit.proposal_prefix={prefix}", "pit.candidates=4")
    data, split = prepare_data(cfg)
    recipe = build_recipe("pit", cfg, data, split)
    primary = recipe.index.primary_codes().copy()
    items, codes, _ = recipe.index.edges()
    old = {(i, tuple(c)) for i, c in zip(items.tolist(), codes.tolist())}
    recipe.refresh_index()
    items, codes, _ = recipe.index.edges()
    new = np.array([(i, tuple(c)) not in old for i, c in zip(items.tolist(), codes.tolist())])
    assert new.sum() > 0
    first_differs = (codes[new, 0] != primary[items[new], 0])
    assert (not first_differs.any()) if prefix else first_differs.any()
    with pytest.raises(ValueError, match="proposal_prefix=3 leaves no level to propose"):
        build_recipe("pit", tiny_cfg(tmp_path, "pit.proposal_prefix=3"), data, split)


def test_coevolution_epochs_freezes_the_tokenizer_and_trains_u2t_on_the_primary_sids(tmp_path):
    """Warm-up 1, co-evolution 1, then frozen: no selection, no refresh, no CSA or I2T loss, and
    U2T's targets are the index's strongest SIDs (not the warm-up ones)."""
    cfg = tiny_cfg(tmp_path, f"run.out={tmp_path / 'run'}", "pit.warmup_epochs=1", "pit.coevolution_epochs=1",
                   "pit.proposal_prefix=1")
    train_run("pit", cfg)
    epochs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [e for e in epochs if "phase" in e]
    assert [e["phase"] for e in epochs] == ["warm-up", "co-evolution", "frozen", "frozen"]
    assert epochs[1]["selection_scored_share"] > 0 and "refresh_edges_added" in epochs[0]
    for e in epochs[2:]:
        assert e["selection_scored_share"] == 0 and not any(k.startswith("refresh_") for k in e)
        assert "train_i2t" not in e and "train_csa" not in e and e["index"] == epochs[1]["index"]

    data, split = prepare_data(cfg)
    recipe = build_recipe("pit", cfg, data, split)
    target = torch.tensor([7])
    other = recipe.initial_codes[8:9].cpu().numpy()  # a SID of another item: strongest for 7 once selected
    recipe.index.refresh(np.array([7]), other[None], np.zeros((1, 1)), max_sids_per_item=2)
    recipe.index.record_selections(np.array([7, 7, 7]), np.repeat(other, 3, 0))
    recipe._sync_history_codes()
    assert recipe.primary_codes[7].tolist() == other[0].tolist() != recipe.initial_codes[7].tolist()
    recipe.epoch = 2
    assert recipe.tokenizer_frozen and not recipe.selecting
    assert recipe.select_sids(None, target).chosen[0].tolist() == other[0].tolist()
    recipe.epoch = 1
    assert not recipe.tokenizer_frozen and recipe.coevolving
