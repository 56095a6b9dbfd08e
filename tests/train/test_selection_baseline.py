"""The relative selection rule (``pit.selection_rule=relative``): hand-computed choices and means,
the rule against a plain reference (hypothesis), its checkpoint state, and a PIT run that uses it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pitrec.train import distributed as dist
from pitrec.train.api import build_recipe, prepare_data, train_run
from pitrec.train.selection_baseline import SelectionBaseline

from test_pit import tiny_cfg  # tests/train is on sys.path (pytest's prepend import mode)

SIZES = [4, 4]
# item 7's three candidate SIDs; column 0 is its strongest
CAND = np.array([[[0, 1], [2, 3], [3, 0]]])


def _baseline(margin=0.0, rate=0.25):
    return SelectionBaseline(SIZES, rate=rate, margin=margin)


def test_an_alternative_the_user_prefers_more_than_the_items_other_users_wins():
    b = _baseline(margin=2.0)
    items = np.array([7])
    b.update(items, CAND, torch.tensor([[1.0, 12.0, 9.0]]))  # the item's population so far
    # this user: primary 1 nat worse than the population, alternative 1 4 nats better, alternative 2 level
    cost = torch.tensor([[2.0, 8.0, 9.0]])
    assert int(cost.argmin()) == 0  # the paper's rule keeps the primary
    # relative costs: 1, -4 + 2 (margin), 0 + 2
    assert b.choose(items, CAND, cost).tolist() == [1]
    assert _baseline(margin=6.0).choose(items, CAND, cost).tolist() == [0]  # no means yet
    b.margin = 6.0  # -4 + 6 = 2 > 1: the alternative's lead is smaller than the margin
    assert b.choose(items, CAND, cost).tolist() == [0]


def test_unheard_candidates_and_padding_cannot_win():
    items = np.array([7])
    b = _baseline()
    b.update(items, CAND[:, :2], torch.tensor([[5.0, 5.0]]))  # column 2 never scored
    assert b.choose(items, CAND, torch.tensor([[9.0, 9.0, 0.0]])).tolist() == [0]  # relative 4, 4, unheard
    assert b.choose(items, CAND, torch.tensor([[9.0, 1.0, float("inf")]])).tolist() == [1]  # padding column 2
    fresh = _baseline()
    fresh.update(items, CAND[:, 1:], torch.tensor([[5.0, 5.0]]))  # only the alternatives heard
    assert fresh.choose(items, CAND, torch.tensor([[9.0, 0.0, 0.0]])).tolist() == [0]  # primary unheard keeps it


def test_means_are_running_means_then_an_exponential_average():
    b = _baseline(rate=0.25)
    items, cand = np.array([3]), CAND[:, :1]
    for value in (4.0, 8.0, 0.0, 4.0, 12.0):
        b.update(items, cand, torch.tensor([[value]]))
    # weights max(1/n, 0.25): 1, 1/2, 1/3, 1/4, then 1/4 -> 4, 6, 4, 4, 6
    assert b.means(items, cand)[0, 0] == pytest.approx(6.0)
    assert np.isnan(b.means(np.array([4]), cand)[0, 0])  # another item, same SID: its own mean


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 4), st.floats(0, 3), st.data())
def test_equal_means_reduce_the_rule_to_min_loss_with_a_margin(rows, cols, margin, data):
    """Reference: when every candidate's mean is the same, the relative rule is the paper's
    minimum loss with the alternatives charged ``margin``."""
    costs = np.array(data.draw(st.lists(st.lists(st.floats(0, 20), min_size=cols, max_size=cols),
                                        min_size=rows, max_size=rows)))
    items = np.arange(rows)
    cand = np.stack([np.stack([[c % 4, c // 4] for c in range(cols)])] * rows)
    b = _baseline(margin=margin)
    b.update(items, cand, torch.full((rows, cols), 5.0))
    got = b.choose(items, cand, torch.from_numpy(costs)).numpy()
    charged = costs + margin * (np.arange(cols) > 0)
    expected = charged.argmin(1)
    # float32 scoring may turn a near tie either way; the choice must be a minimiser within rounding
    assert np.all(charged[np.arange(rows), got] <= charged[np.arange(rows), expected] + 1e-4)


def test_state_dict_round_trip_and_bad_state():
    b = _baseline()
    b.update(np.array([7, 2]), np.concatenate([CAND, CAND[:, ::-1]]), torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    other = _baseline()
    other.load_state_dict(b.state_dict())
    assert len(other) == len(b) == 6
    for item in (7, 2):
        np.testing.assert_array_equal(other.means(np.array([item]), CAND), b.means(np.array([item]), CAND))
    with pytest.raises(ValueError, match="'counts' missing"):
        other.load_state_dict({k: v for k, v in b.state_dict().items() if k != "counts"})
    with pytest.raises(ValueError, match="rate"):
        SelectionBaseline(SIZES, rate=0.0, margin=1.0)


@pytest.fixture(scope="module")
def relative_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("relative")
    cfg = tiny_cfg(root, f"run.out={root / 'run'}", "pit.selection_rule=relative", "pit.selection_margin=0.5")
    return cfg, root / "run", train_run("pit", cfg)


def _checkpoint_extra(run):
    from safetensors.torch import load_file
    return load_file(str(run / "checkpoint" / "latest" / "extra.safetensors"))


def test_pit_trains_with_the_relative_rule_and_checkpoints_its_means(relative_run):
    cfg, run, result = relative_run
    assert result["epochs_run"] == 4 and result["test"]["recall@5"] > 0.1  # chance is 5/50
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs[2]["selection_scored_share"] > 0
    assert epochs[1]["selection_baseline_edges"] == 0 < epochs[3]["selection_baseline_edges"]  # heard in co-evolution
    # the means travel with the checkpoint, and a recipe restored from it has them all
    extra = _checkpoint_extra(run)
    assert len(extra["selection_baseline.items"]) > 0
    data, split = prepare_data(cfg)
    fresh = build_recipe("pit", cfg, data, split)
    assert len(fresh.baseline) == 0
    fresh.load_extra_state(extra, json.loads((run / "checkpoint" / "latest" / "state.json").read_text())
                           .get("recipe_state", {}))
    assert len(fresh.baseline) == len(extra["selection_baseline.items"])


def test_served_feedback_applies_the_relative_rule_with_the_checkpoints_means(relative_run):
    from pitrec.data.batches import PAD
    from pitrec.serve import Recommender
    from pitrec.train.selection import selection_cost

    _, run, _ = relative_run
    rec = Recommender.load(run, persist=False)
    models, index = rec._engine.models, rec._engine.index
    assert len(models.baseline) == len(_checkpoint_extra(run)["selection_baseline.items"])
    several = np.flatnonzero(index.sids_per_item() > 1)
    assert len(several)
    item, history = int(several[0]), [1, 2, 3]
    cand, mask, _ = index.candidates(np.array([item]), models.pc.candidates)
    hist = torch.tensor([history])
    memory = models.u2t.encode(rec._engine.history_codes[hist], hist == PAD)
    cost = selection_cost(models.u2t, index, memory, torch.from_numpy(cand), torch.from_numpy(mask)).numpy()[0]
    # means under which this user stands out on the costliest SID (the paper's rule never takes it):
    # 5 nats better than the item's users there, level with them elsewhere
    costliest = int(np.where(mask[0], cost, -np.inf).argmax())
    assert costliest != int(cost.argmin())
    models.baseline = SelectionBaseline(index.codebook_sizes, rate=0.25, margin=0.5)
    means = np.where(np.arange(len(cost)) == costliest, cost + 5.0, cost)
    models.baseline.update(np.array([item]), cand, torch.from_numpy(np.where(mask[0], means, np.inf)[None]))
    result = rec.feedback([rec.catalog.ids[i] for i in history], rec.catalog.ids[item])
    assert result.chosen_sid == cand[0, costliest].tolist()


def test_relative_rule_refuses_torchrun(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, "pit.selection_rule=relative")
    data, split = prepare_data(cfg)
    monkeypatch.setattr(dist, "is_distributed", lambda: True)
    with pytest.raises(ValueError, match="one process only"):
        build_recipe("pit", cfg, data, split)
