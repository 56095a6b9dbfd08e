"""PIT's co-evolution options on tiny synthetic data: sibling proposals (``pit.proposal_prefix``),
a tokenizer frozen after some co-evolution epochs (``pit.coevolution_epochs``), and the shares of
targets that the selection (``pit.selection_share``) and the auxiliary losses (``pit.aux_share``) see."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pitrec.train.api import build_recipe, prepare_data, train_run
from pitrec.utils.runtime import seed_everything

from test_pit import _window_case, tiny_cfg  # tests/train is on sys.path (pytest's prepend import mode)


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


def test_selection_share_scores_a_drawn_subset_and_leaves_the_rest_on_their_strongest_sid(tmp_path):
    """share < 1: the scored targets are a subset of those with a choice, each chosen exactly as
    with share 1; the others are skipped and train on their strongest SID (column 0); the same
    generator seed draws the same subset."""
    from pitrec.train.selection import min_loss_sids_prefix

    recipe, w, memory, mask = _window_case(tmp_path, sids_per_item=3)
    targets = w.items[:, -w.n_last:]
    full = min_loss_sids_prefix(recipe.u2t, recipe.index, memory, mask, targets, w.targets, 3)
    assert full.scored.sum() >= 40 and not full.skipped.any()
    half = min_loss_sids_prefix(recipe.u2t, recipe.index, memory, mask, targets, w.targets, 3,
                                share=0.5, rng=np.random.default_rng(5))
    choice = full.scored
    assert torch.equal(half.scored | half.skipped, choice) and not (half.scored & half.skipped).any()
    assert 0.2 < half.scored.sum().item() / choice.sum().item() < 0.8
    assert torch.equal(half.chosen[half.scored], full.chosen[half.scored])
    assert (half.pick[~half.scored] == 0).all()
    again = min_loss_sids_prefix(recipe.u2t, recipe.index, memory, mask, targets, w.targets, 3,
                                 share=0.5, rng=np.random.default_rng(5))
    assert torch.equal(again.scored, half.scored)
    with pytest.raises(ValueError, match="random generator"):
        min_loss_sids_prefix(recipe.u2t, recipe.index, memory, mask, targets, w.targets, 3, share=0.5)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        min_loss_sids_prefix(recipe.u2t, recipe.index, memory, mask, targets, w.targets, 3, share=0.0,
                             rng=np.random.default_rng(5))


def test_selection_share_in_training_records_only_the_scored_and_unchosen_targets(tmp_path):
    """A co-evolution step with pit.selection_share=0.5 adds to the index one unit of weight per
    target it did not skip (skipped targets were chosen by no loss), and reports the skipped share;
    the step's draw depends on (seed, step) only."""
    cfg = tiny_cfg(tmp_path, "pit.warmup_epochs=0", "pit.candidates=3", "u2t.encoder_attention=causal",
                   "pit.selection_share=0.5")
    recipe = build_recipe("pit", cfg, *prepare_data(cfg))
    rng = np.random.default_rng(0)
    recipe.index.refresh(np.arange(50), rng.integers(0, 4, size=(50, 3, 3)), np.zeros((50, 3)))
    batch = recipe.train_batches(0, np.random.default_rng(1))[0]
    n_targets = recipe.batch_size_of(batch)
    draws = []
    for _ in range(2):
        before = recipe.index.edges()[2].sum()
        recipe.training_step(batch, 3)
        counters = recipe._counters
        added = recipe.index.edges()[2].sum() - before
        assert counters.skipped > 0 and counters.scored > 0
        assert added == pytest.approx(n_targets - counters.skipped)
        draws.append((counters.scored, counters.skipped))
        recipe._counters = type(counters)()
    assert draws[0] == draws[1]
    report = recipe.on_epoch_end(0)
    assert "selection_skipped_share" in report
    with pytest.raises(Exception, match="selection_share"):
        tiny_cfg(tmp_path, "pit.selection_share=0")


@pytest.mark.parametrize("encoder", ["causal", "bidirectional"])
def test_aux_share_gives_csa_and_i2t_a_drawn_subset_of_the_targets_and_leaves_u2t_alone(tmp_path, encoder):
    """pit.aux_share=0.5: CSA and I2T see half of the step's targets (CSA with each target's own
    history rows), drawn from (seed, step); U2T's loss and the index's record are those of share 1."""
    seen = {}

    def run(share: float, step: int):
        cfg = tiny_cfg(tmp_path, "pit.warmup_epochs=0", f"u2t.encoder_attention={encoder}", f"pit.aux_share={share}")
        seed_everything(0)
        recipe = build_recipe("pit", cfg, *prepare_data(cfg))
        csa_loss, i2t_loss = recipe.csa.loss, recipe.i2t.loss

        def csa_spy(states, valid, positives, generator=None, rows=None):
            seen["csa"] = (positives.clone(), None if rows is None else rows.clone(), states.shape[0], valid.shape[0])
            return csa_loss(states, valid, positives, generator, rows=rows)

        def i2t_spy(x, codes):
            seen["i2t"] = codes.shape[0]
            return i2t_loss(x, codes)

        recipe.csa.loss, recipe.i2t.loss = csa_spy, i2t_spy
        batch = recipe.train_batches(0, np.random.default_rng(1))[0]
        before = recipe.index.edges()[2].sum()
        torch.manual_seed(7)
        out = recipe.training_step(batch, step)
        return out, recipe.batch_size_of(batch), recipe.index.edges()[2].sum() - before, dict(seen)

    full, n, added_full, seen_full = run(1.0, 3)
    half, n_half, added_half, seen_half = run(0.5, 3)
    again = run(0.5, 3)[3]
    other = run(0.5, 4)[3]
    assert n == n_half and n >= 20
    assert torch.equal(full["u2t"], half["u2t"]) and added_full == added_half
    positives, rows, n_states, n_valid = seen_half["csa"]
    assert len(positives) == round(0.5 * n) == seen_half["i2t"] and seen_full["i2t"] == n == len(seen_full["csa"][0])
    assert n_valid == len(positives)
    if rows is not None:  # prefix windows: the states stay per window, rows pick each target's
        assert n_states < n and rows.max() < n_states and len(rows) == len(positives)
        full_pos, full_rows = seen_full["csa"][0], seen_full["csa"][1]
        pairs = set(zip(full_pos.tolist(), full_rows.tolist()))
        assert set(zip(positives.tolist(), rows.tolist())) <= pairs
    else:
        assert n_states == len(positives)
    assert torch.equal(again["csa"][0], positives)
    assert not torch.equal(other["csa"][0], positives)
    with pytest.raises(Exception, match="aux_share"):
        tiny_cfg(tmp_path, "pit.aux_share=0")
