"""Evaluate a finished (or interrupted) run directory again, under a protocol or decoding setting
chosen now: history masking, other cut-offs, the validation part, a wider beam, another PIT
aggregation rule. Published numbers differ in such choices (RecBole masks the user's history in
full ranking; TIGER's paper does not), so comparing with them needs the same model measured both
ways, without retraining it.

It goes through the same recipe and ranker as the test evaluation at the end of training, so with no
overrides it reproduces ``test_metrics.json`` exactly (tested)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from pitrec.config import ConfigError, config_from_dict, parse_overrides
from pitrec.decoding.settings import DECODING_KEYS
from pitrec.eval.evaluator import Evaluator
from pitrec.train.api import build_recipe, prepare_data
from pitrec.train.checkpoint import load_checkpoint
from pitrec.train.run_dir import RunDir
from pitrec.utils.runtime import configure_process, resolve_device, seed_everything

# What may change after training: how the model is measured and decoded, where the data now lives,
# and how many threads to use. Anything else (model size, tokenizer, data filtering...) would no
# longer describe the checkpoint, so it is refused rather than silently ignored. The decoding
# settings (``DECODING_KEYS``) are also what ``pitrec bench`` re-decodes a finished run for (``redecode_run``).
RE_EVALUATION_KEYS: dict[str, set[str] | None] = {
    "eval": None,  # every field
    "run": {"num_threads", "device", "progress", "retain_freed_memory"},
    "data": {"path"},
    **{method: set(keys) for method, keys in DECODING_KEYS.items()},
}
PARTS = ("test", "valid")


def check_overrides(overrides: dict) -> None:
    for section, fields in overrides.items():
        if not isinstance(fields, dict):
            raise ConfigError(f"override of {section!r} must name a field, e.g. --{section}.key=value")
        allowed = RE_EVALUATION_KEYS.get(section, set())
        for key in fields:
            if allowed is not None and key not in allowed:
                raise ConfigError(f"--{section}.{key} cannot change after training (the checkpoint was trained "
                                  f"with the run's value); re-evaluation takes: {_offered()}")


def _offered() -> str:
    return ", ".join(f"{section}.*" if keys is None else ", ".join(f"{section}.{k}" for k in sorted(keys))
                     for section, keys in RE_EVALUATION_KEYS.items())


@dataclass
class TrainedRun:
    """A run directory's recipe with its checkpoint loaded (eval mode), and the split it was trained on."""
    cfg: Any
    method: str
    recipe: Any
    split: Any
    checkpoint: Path | None  # None for an untrained method (popularity)
    state: dict[str, Any]


def load_trained_run(run_dir: str | Path, overrides: Iterable[str] | dict = ()) -> TrainedRun:
    """The run's config with ``overrides`` (re-evaluation keys only), its data and recipe rebuilt
    from the stage caches, and its best checkpoint (else its latest) loaded."""
    run = RunDir(run_dir)
    try:
        saved = run.read_config_dict()
    except FileNotFoundError:
        raise FileNotFoundError(f"{run.config_path}: missing; is {run.path} a run directory "
                                f"(written by `pitrec train --out`)?") from None
    changes = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    check_overrides(changes)
    cfg = config_from_dict(saved, source=str(run.config_path)).with_overrides(changes)
    method = _method_of(run)
    configure_process(cfg.run)
    seed_everything(cfg.run.seed)
    data, split = prepare_data(cfg)
    # run=None: nothing in the run is written; the checkpoint's own SID table, not a rebuilt one
    recipe = build_recipe(method, cfg, data, split, run=None, sids_from=run.path)
    checkpoint = next((c for c in (run.best, run.latest) if (c / "state.json").is_file()), None)
    state: dict[str, Any] = {}
    if recipe.trainable:
        if checkpoint is None:
            raise FileNotFoundError(f"{run.path}: no checkpoint (checkpoint/best or checkpoint/latest) to evaluate")
        state, extra = load_checkpoint(checkpoint, recipe.modules())
        recipe.load_extra_state(extra, state.get("recipe_state", {}))
    else:
        checkpoint = None
    recipe.train(False)
    return TrainedRun(cfg, method, recipe, split, checkpoint, state)


def evaluate_run(run_dir: str | Path, part: str = "test", overrides: Iterable[str] | dict = ()) -> dict[str, Any]:
    """Metrics of the run's best checkpoint (else its latest) on ``part``, under the run's
    config with ``overrides`` applied. Returns a record naming the run, checkpoint and settings."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    changes = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    t = load_trained_run(run_dir, changes)
    cfg = t.cfg
    metrics = _evaluate(t, part)
    return {"run": str(run_dir), "method": t.method, "part": part,
            "checkpoint": t.checkpoint.name if t.checkpoint is not None else None,
            "best_epoch": t.state.get("best_epoch"), "overrides": changes,
            "mask_history": cfg.eval.mask_history, "metrics": metrics}


def redecode_run(run_dir: str | Path, changes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Measure a finished run's test again with decoding ``changes`` (e.g. ``{"tiger": {"last_level":
    "renormalized"}}``) and make the run directory say so: test_metrics.json gets the new test
    metrics and evaluation speed, with the change and the metrics it replaced under ``redecoded``;
    decoding_stats.json and config.yaml follow. config.yaml is written last, so an interruption
    leaves a run that is measured again next time rather than one whose config claims metrics it
    did not produce. A run of another method only has its config.yaml updated: its ranking does
    not read these settings. Returns the new test_metrics record."""
    from pitrec.bench.results import now_iso
    from pitrec.utils.runtime import git_sha

    run = RunDir(run_dir)
    if not run.test_metrics_path.is_file():
        raise FileNotFoundError(f"{run.test_metrics_path}: missing; only a finished run can be decoded again")
    previous = json.loads(run.test_metrics_path.read_text(encoding="utf-8"))
    if _method_of(run) not in changes:  # another method's decoding section (every config holds them all)
        check_overrides(changes)
        run.write_config(config_from_dict(run.read_config_dict(), source=str(run.config_path)).with_overrides(changes))
        return previous
    t = load_trained_run(run_dir, changes)
    test = _evaluate(t, "test")
    history = [*previous.get("redecoded", []),
               {"overrides": changes, "previous_test": previous["test"], "at": now_iso(), "git_sha": git_sha()}]
    record = {**previous, "test": test, "eval_users_per_s": test["users_per_s"], "redecoded": history}
    t.recipe.save_artifacts(run)
    run.write_json("test_metrics.json", record)
    run.write_config(t.cfg)
    return record


def _evaluate(t: TrainedRun, part: str) -> dict[str, Any]:
    """The run's metrics on ``part`` under its (overridden) config, through the recipe's ranker;
    validation on the fixed subset of users training early-stopped on."""
    return _evaluator(t, part).evaluate(t.recipe.ranker(), part, progress=t.cfg.run.progress)


def _evaluator(t: TrainedRun, part: str) -> Evaluator:
    cfg = t.cfg
    return Evaluator(t.split, ks=cfg.eval.ks, batch_size=cfg.eval.batch_size, mask_history=cfg.eval.mask_history,
                     device=resolve_device(cfg.run.device),
                     max_users=(cfg.eval.valid_users or None) if part == "valid" else None, seed=cfg.run.seed)


def _method_of(run: RunDir) -> str:
    from pitrec.serve.loader import RunDirError, open_run  # the method detection serving already does

    try:
        return open_run(run.path).method
    except RunDirError as exc:
        raise ValueError(str(exc)) from None


def paired_runs(run_a: str | Path, run_b: str | Path, part: str = "test", overrides: Iterable[str] | dict = (),
                confidence: float = 0.95, resamples: int = 2000) -> dict[str, Any]:
    """Rank ``part`` with both runs' best checkpoints (one at a time) and compare them user by user
    (``pitrec.eval.paired``). The two must have been trained on the same split: the same users,
    histories and held-out items, checked here, else the pairing would be meaningless."""
    from pitrec.eval.paired import paired_differences

    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    changes = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    ranked = []
    for run_dir in (run_a, run_b):
        t = load_trained_run(run_dir, changes)
        evaluator = _evaluator(t, part)
        samples = evaluator.samples(part)
        _, metrics = evaluator.per_user(t.recipe.ranker(), part, progress=t.cfg.run.progress)
        ranked.append((t.method, samples.history.copy(), samples.target.copy(), metrics))
        del t, evaluator  # one model in memory at a time
    (method_a, hist_a, target_a, metrics_a), (method_b, hist_b, target_b, metrics_b) = ranked
    if not (np.array_equal(hist_a, hist_b) and np.array_equal(target_a, target_b)):
        hint = ("; the validation subset follows each run's seed, --eval.valid_users=0 takes every user"
                if part == "valid" else "")
        raise ValueError(f"{run_a} and {run_b} were not evaluated on the same {part} users (histories or held-out "
                         f"items differ: {len(target_a)} against {len(target_b)} users); a paired comparison needs "
                         f"one split{hint}")
    return {"runs": [str(run_a), str(run_b)], "methods": [method_a, method_b], "part": part, "overrides": changes,
            "users": int(len(target_a)), "confidence": confidence, "resamples": resamples,
            "differences": [asdict(d) for d in paired_differences(metrics_a, metrics_b, confidence, resamples)]}
