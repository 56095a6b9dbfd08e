"""A run rebuilt from its directory is the run that was trained: analyses start from its state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pitrec.index.beam_index import BeamIndex
from pitrec.train.api import make_evaluators, recipe_at_checkpoint


def test_the_best_checkpoint_reproduces_the_runs_test_metrics_and_index(trained_runs):
    run_dir = trained_runs("pit")
    recipe, state = recipe_at_checkpoint("pit", run_dir, which="best")
    saved = json.loads((run_dir / "test_metrics.json").read_text())
    assert state["epoch"] >= 1
    test_eval, _ = make_evaluators(recipe.cfg, recipe.split)
    recipe.train(False)
    again = test_eval.evaluate(recipe.ranker(), "test")
    for key in ("recall@5", "recall@10", "ndcg@10"):
        assert again[key] == pytest.approx(saved["test"][key], abs=1e-12), key
    edges, saved_edges = recipe.index.edges(), BeamIndex.load(run_dir / "beam_index").edges()
    for mine, theirs in zip(edges, saved_edges):
        np.testing.assert_array_equal(mine, theirs)


def test_latest_is_the_default_and_other_names_are_refused(trained_runs):
    run_dir = trained_runs("pit")
    recipe, state = recipe_at_checkpoint("pit", run_dir)
    assert state["done"] and state["epoch"] == recipe.cfg.train.epochs
    with pytest.raises(ValueError, match="latest' or 'best"):
        recipe_at_checkpoint("pit", run_dir, which="final")
