"""``train_run``: config -> data -> split -> recipe -> Trainer -> results. The CLI, the benchmark
harness and the tests all go through here, so they cannot drift apart."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from pitrec.data.interactions import Interactions
from pitrec.data.readers import load_interactions
from pitrec.data.split import Split, leave_one_out
from pitrec.eval.evaluator import Evaluator
from pitrec.registry import RECIPES
from pitrec.train.run_dir import RunDir
from pitrec.train.trainer import Trainer
from pitrec.utils.io import atomic_path
from pitrec.utils.runtime import resolve_device, seed_everything, set_threads


def prepare_data(cfg) -> tuple[Interactions, Split]:
    data = load_interactions(cfg.data)
    split = leave_one_out(data, max_history=cfg.data.max_history, min_interactions=cfg.data.min_user_interactions)
    return data, split


def write_catalog(run: RunDir, data: Interactions) -> Path:
    """The item catalogue (raw ids, text, attributes) and user ids, so a run directory can be
    served or evaluated without the original data files."""
    path = run.path / "catalog.json.gz"
    payload = {"name": data.name, "source": data.source, "item_ids": data.item_ids, "user_ids": data.user_ids,
               "item_text": data.item_text, "item_attributes": data.item_attributes, "attribute_ids": data.attribute_ids}
    with atomic_path(path) as tmp:
        with gzip.open(tmp, "wt", encoding="utf-8") as fh:
            json.dump(payload, fh)
    return path


def read_catalog(run_dir: str | Path) -> dict:
    with gzip.open(Path(run_dir) / "catalog.json.gz", "rt", encoding="utf-8") as fh:
        return json.load(fh)


def build_recipe(name: str, cfg, data: Interactions, split: Split, run: RunDir | None = None):
    device = resolve_device(cfg.run.device)
    recipe = RECIPES.get(name)(cfg, data, split, device, run)
    recipe.prepare()
    return recipe


def make_evaluators(cfg, split: Split) -> tuple[Evaluator, Evaluator]:
    device = resolve_device(cfg.run.device)
    test_eval = Evaluator(split, ks=cfg.eval.ks, batch_size=cfg.eval.batch_size,
                          mask_history=cfg.eval.mask_history, device=device)
    valid_eval = Evaluator(split, ks=cfg.eval.ks, batch_size=cfg.eval.batch_size,
                           mask_history=cfg.eval.mask_history, device=device,
                           max_users=cfg.eval.valid_users or None, seed=cfg.run.seed)
    return test_eval, valid_eval


def train_run(name: str, cfg, resume: bool = False, data: tuple[Interactions, Split] | None = None) -> dict[str, Any]:
    """Train (or resume) one method and return its result record (also in test_metrics.json)."""
    set_threads(cfg.run.num_threads)
    seed_everything(cfg.run.seed)
    data_obj, split = data if data is not None else prepare_data(cfg)
    run = None
    if cfg.run.out:
        run = RunDir(cfg.run.out).create()
        if not resume and run.latest.exists():
            raise FileExistsError(f"{run.path} already holds a run; pass --resume to continue it or choose another --out")
        run.write_config(cfg)
        write_catalog(run, data_obj)
    recipe = build_recipe(name, cfg, data_obj, split, run)
    test_eval, valid_eval = make_evaluators(cfg, split)
    trainer = Trainer(cfg, recipe, test_eval, run=run, valid_evaluator=valid_eval)
    if resume:
        if run is None:
            raise ValueError("--resume needs a run directory (run.out)")
        trainer.resume()
    return trainer.fit()
