"""``train_run``: config -> data -> split -> recipe -> Trainer -> results. The CLI, the benchmark
harness and the tests all go through here, so they cannot drift apart."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

from pitrec.config import config_from_dict
from pitrec.data.interactions import Interactions
from pitrec.data.readers import load_interactions
from pitrec.data.split import Split, leave_one_out
from pitrec.eval.evaluator import Evaluator
from pitrec.registry import RECIPES
from pitrec.train import distributed as dist
from pitrec.train.checkpoint import load_checkpoint
from pitrec.train.run_dir import RunDir
from pitrec.train.trainer import Trainer
from pitrec.utils.io import atomic_path
from pitrec.utils.runtime import configure_process, deterministic_algorithms, resolve_device, seed_everything


def prepare_data(cfg) -> tuple[Interactions, Split]:
    data = load_interactions(cfg.data)
    return data, split_of(cfg, data)


def split_of(cfg, data: Interactions) -> Split:
    """The leave-one-out split every command uses for ``data`` under ``cfg.data``."""
    return leave_one_out(data, max_history=cfg.data.max_history, min_interactions=cfg.data.min_user_interactions)


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


def build_recipe(name: str, cfg, data: Interactions, split: Split, run: RunDir | None = None,
                 sids_from: str | Path | None = None):
    """``sids_from``: the run directory whose checkpoint will be loaded into the recipe; its SID
    table is used instead of building the stage again."""
    device = resolve_device(cfg.run.device)
    recipe = RECIPES.get(name)(cfg, data, split, device, run)
    recipe.sids_from = Path(sids_from) if sids_from is not None else None
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
    """Train (or resume) one method and return its result record (also in test_metrics.json).
    Under ``torchrun`` every process runs this; they train one model together (see
    ``pitrec.train.distributed``) and all return the same record."""
    clock_start = time.perf_counter()  # before the data files are read: time to accuracy counts from here
    with dist.process_group(cfg.run.device):
        return _train_run(name, cfg, resume, data, clock_start)


def build_recipe_once(name: str, cfg, data: Interactions, split: Split, run: RunDir | None,
                      sids_from: Path | None = None):
    """``build_recipe`` on every rank, rank 0 first: it builds the cached stage artifacts
    (embeddings, SID table) and copies them into the run directory while the others wait, then
    they load the caches instead of building them again (or racing to write them). Without the
    caches every rank rebuilds, so the artifacts are compared and a mismatch is an error."""
    if not dist.is_distributed():
        return build_recipe(name, cfg, data, split, run, sids_from)
    recipe = build_recipe(name, cfg, data, split, run, sids_from) if dist.is_main() else None
    dist.barrier()
    if recipe is None:
        recipe = build_recipe(name, cfg, data, split, None, sids_from)  # run=None: only rank 0 writes there
    if not dist.all_agree(dist.state_digest(*recipe.extra_state())):
        raise ValueError("the processes built different stage artifacts (SID tables or index); "
                         "enable the stage caches (embed.use_cache, tokenizer.use_cache) so all load rank 0's")
    # the same seed gave the same initial weights unless building a stage drew random numbers on
    # rank 0 only (a cache miss there, a hit elsewhere): rank 0's weights are the ones
    dist.broadcast_modules(recipe.modules())
    return recipe


def _train_run(name: str, cfg, resume: bool, data: tuple[Interactions, Split] | None,
               clock_start: float) -> dict[str, Any]:
    configure_process(cfg.run)  # per process under torchrun
    with deterministic_algorithms(cfg.run.deterministic and resolve_device(cfg.run.device).type == "cpu"):
        return _train_seeded(name, cfg, resume, data, clock_start)


def _train_seeded(name: str, cfg, resume: bool, data: tuple[Interactions, Split] | None,
                  clock_start: float) -> dict[str, Any]:
    seed_everything(cfg.run.seed)  # every rank: the same initial weights
    if not dist.is_main():
        cfg = cfg.with_overrides({"run": {"progress": False}})  # progress bars on rank 0 only
    data_obj, split = data if data is not None else prepare_data(cfg)
    run = None
    if cfg.run.out:
        run = RunDir(cfg.run.out)
        if not resume and run.latest.exists():
            raise FileExistsError(f"{run.path} already holds a run; pass --resume to continue it or choose another --out")
        dist.barrier()  # every rank has looked before rank 0 writes anything
        if dist.is_main():
            run.create()
            run.write_config(cfg)
            write_catalog(run, data_obj)
    # a resumed checkpoint was trained on the run's own SID table, whichever machine built it
    recipe = build_recipe_once(name, cfg, data_obj, split, run, run.path if resume and run is not None else None)
    dist.seed_rank_stream(cfg.run.seed)  # different dropout / negatives on each rank from here on
    test_eval, valid_eval = make_evaluators(cfg, split)
    trainer = Trainer(cfg, recipe, test_eval, run=run, valid_evaluator=valid_eval, clock_start=clock_start)
    if resume:
        if run is None:
            raise ValueError("--resume needs a run directory (run.out)")
        trainer.resume()
    return trainer.fit()


def recipe_at_checkpoint(name: str, run_dir: str | Path, which: str = "latest", overrides: list[str] | tuple = ()):
    """A trained run's recipe rebuilt from its directory, with the weights and recipe state (PIT's
    beam index) of its ``latest`` or ``best`` checkpoint: analyses of a run where it stopped
    (``benchmarks/step_cost.py --from-run``, ``benchmarks/tuning/selection_margin.py``) start from
    exactly what it trained, not from a re-created index. Returns (recipe, checkpoint state)."""
    if which not in ("latest", "best"):
        raise ValueError(f"checkpoint must be 'latest' or 'best', got {which!r}")
    run = RunDir(run_dir)
    cfg = config_from_dict(run.read_config_dict(), source=str(run.config_path))
    cfg = cfg.with_overrides(["run.progress=false", *overrides])
    data, split = prepare_data(cfg)
    seed_everything(cfg.run.seed)
    recipe = build_recipe(name, cfg, data, split)
    state, extra = load_checkpoint(run.latest if which == "latest" else run.best, recipe.modules())
    recipe.load_extra_state(extra, state.get("recipe_state", {}))
    return recipe, state
