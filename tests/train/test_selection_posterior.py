"""The posterior selection rule (``pit.selection_rule=posterior``): a target's SID is drawn with
probability proportional to exp(-cost / temperature). Checked against the closed-form softmax on
hand-set costs, through the recipe on a constructed target, and in the service's feedback."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pitrec.data.batches import PAD
from pitrec.train.api import build_recipe, prepare_data, train_run
from pitrec.train.selection import _choose, selection_cost

from test_pit import tiny_cfg  # tests/train is on sys.path (pytest's prepend import mode)

DRAWS = 20_000


def _frequencies(picks: torch.Tensor, n: int) -> np.ndarray:
    return np.bincount(picks.numpy(), minlength=n) / len(picks)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_draws_follow_the_softmax_of_the_negative_cost(temperature):
    cost = torch.tensor([[0.0, 1.0, float("inf"), 2.5]]).expand(DRAWS, -1)
    rows = torch.ones(DRAWS, dtype=torch.bool)
    picks = _choose(cost, np.zeros(DRAWS), np.zeros((DRAWS, 4, 2)), rows, None, temperature, np.random.default_rng(0))
    p = torch.softmax(-cost[0] / temperature, 0).numpy()
    assert p[2] == 0 and (picks != 2).all()
    # 4 standard errors of a frequency of 20,000 draws: at most 0.0142
    np.testing.assert_allclose(_frequencies(picks, 4), p, atol=0.0142)
    again = _choose(cost, np.zeros(DRAWS), np.zeros((DRAWS, 4, 2)), rows, None, temperature, np.random.default_rng(0))
    assert torch.equal(picks, again)
    # temperature 0 is the paper's minimum, and a draw without a generator is refused
    assert (_choose(cost, None, None, rows, None) == 0).all()
    with pytest.raises(ValueError, match="needs a random generator"):
        _choose(cost, None, None, rows, None, temperature, None)


def test_recipe_draws_each_candidate_at_its_posterior_probability(tmp_path):
    """One constructed target with three candidate SIDs and one history, repeated: the recipe's
    choices follow softmax(-(U2T loss + collision charge)) of the candidates."""
    cfg = tiny_cfg(tmp_path, "pit.warmup_epochs=0", "pit.candidates=3", "pit.selection_rule=posterior")
    data, split = prepare_data(cfg)
    recipe = build_recipe("pit", cfg, data, split)
    recipe.epoch = 0
    target = 5
    recipe.index.refresh(np.array([target]), np.array([[[0, 0, 0], [1, 2, 0], [3, 3, 0]]]), np.zeros((1, 3)))
    cand, mask, _ = recipe.index.candidates(np.array([target]), 3)
    assert mask.sum() == 3
    history = torch.tensor([[1, 2, 3]])
    recipe.u2t.eval()
    memory = recipe.u2t.encode(recipe.history_codes[history], history == PAD)
    cost = selection_cost(recipe.u2t, recipe.index, memory, torch.from_numpy(cand), torch.from_numpy(mask))[0]
    p = torch.softmax(-cost, 0).numpy()
    n = 6_000
    many = type(memory)(memory.states.expand(n, -1, -1), memory.valid.expand(n, -1))
    picks = recipe.select_sids(many, torch.full((n,), target)).pick
    # 4 standard errors of a frequency of 6,000 draws: at most 0.026
    np.testing.assert_allclose(_frequencies(picks, 3), p, atol=0.026)
    with pytest.raises(Exception, match="selection_temperature"):
        tiny_cfg(tmp_path, "pit.selection_temperature=0")


def test_posterior_run_switches_and_the_service_feedback_draws_reproducibly(tmp_path):
    from pitrec.serve import Recommender

    cfg = tiny_cfg(tmp_path, f"run.out={tmp_path / 'run'}", "pit.selection_rule=posterior", "train.epochs=3",
                   "pit.warmup_epochs=1")
    result = train_run("pit", cfg)
    assert result["epochs_run"] == 3
    epochs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert epochs[2]["selection_scored_share"] > 0 and epochs[2]["selection_switched_share"] > 0
    rec = Recommender.load(tmp_path / "run", persist=False)
    index = rec._engine.index
    item = int(np.flatnonzero(index.sids_per_item() > 1)[0])
    cand, mask, _ = index.candidates(np.array([item]), rec._engine.models.pc.candidates)
    history = [rec.catalog.ids[i] for i in (1, 2, 3)]
    chosen = [Recommender.load(tmp_path / "run", persist=False).feedback(history, rec.catalog.ids[item]).chosen_sid
              for _ in range(2)]
    assert chosen[0] == chosen[1] and chosen[0] in cand[0][mask[0]].tolist()
