"""The one training loop: AdamW, warm-up, gradient clipping, early stopping on a validation
metric, atomic checkpoints every epoch (and optionally every N steps), exact resume, progress bars
and a JSONL log. Identical for every recipe, so methods differ only in what they model.

Under torchrun the same loop runs in every process (see ``pitrec.train.distributed``): each rank
trains its share of the epoch's batches through DDP, logs and budgets are agreed on, and only
rank 0 writes."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from pitrec.eval.evaluator import Evaluator
from pitrec.train import distributed as dist
from pitrec.train.accuracy_probe import PROBE_STATE, AccuracyProbe
from pitrec.train.checkpoint import load_checkpoint, save_checkpoint
from pitrec.train.recipe import Recipe
from pitrec.utils.runtime import peak_rss_mb, warn_if_slow_bfloat16


class Trainer:
    def __init__(self, cfg, recipe: Recipe, evaluator: Evaluator, run=None, valid_evaluator: Evaluator | None = None,
                 clock_start: float | None = None):
        """``clock_start``: ``time.perf_counter()`` when the run began, before its data was read
        (time to accuracy counts from there; by default from now)."""
        self.cfg = cfg
        self.recipe = recipe
        self.evaluator = evaluator
        self.valid_evaluator = valid_evaluator or evaluator
        self.run = run
        self.optimizer: torch.optim.Optimizer | None = None
        self.state: dict[str, Any] = {"epoch": 0, "batch": 0, "step": 0, "best": None, "best_epoch": None,
                                      "bad_evals": 0, "train_seconds": 0.0, "train_samples": 0, "done": False,
                                      # the running epoch's loss sums, samples and seconds, saved with a
                                      # mid-epoch checkpoint so a resumed epoch logs the same figures
                                      "epoch_sums": {}, "epoch_samples": 0, "epoch_seconds": 0.0,
                                      # CPU seconds of this process: on a shared machine wall time
                                      # depends on the neighbours' load, CPU time much less
                                      "train_cpu_seconds": 0.0}
        self.probe = AccuracyProbe(cfg, evaluator, clock_start)
        if self.probe.enabled:  # only runs that measure time to accuracy carry its figures
            self.state.update(PROBE_STATE)
        self._segment_start = (time.perf_counter(), time.process_time())
        self._ddp: torch.nn.Module | None = None  # the DDP-wrapped training step, when distributed
        self._global_sizes: list[int] = []  # samples of each step over all ranks (this epoch)

    # ------------------------------------------------------------------------------------
    def _build_optimizer(self) -> None:
        groups = self.recipe.param_groups()
        if groups:
            self.optimizer = build_adamw(groups, self.cfg.train.lr, self.cfg.train.optimizer_impl)

    def _lr_at(self, step: int, progress: float = 0.0) -> float:
        """The rate for ``step``: linear warm-up, then constant or a cosine decay over
        ``progress``, the share of the training budget already used (steps or seconds)."""
        t = self.cfg.train
        if t.warmup_steps and step < t.warmup_steps:
            return t.lr * (step + 1) / t.warmup_steps
        if t.lr_schedule == "constant":
            return t.lr
        p = min(max(progress, 0.0), 1.0)
        return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))

    def _budget_used(self, steps_per_epoch: int, elapsed_s: float, budget_s: float) -> float:
        """Share of the budget used: of train.epochs' steps, or of train.max_minutes' seconds
        when that is the tighter one (then the schedule follows the clock, as the budget does)."""
        total_steps = max(self.cfg.train.epochs * steps_per_epoch, 1)
        used = self.state["step"] / total_steps
        if budget_s < math.inf:
            used = max(used, elapsed_s / budget_s)
        return used

    def _save(self, which: str) -> None:
        """Rank 0 writes. Every rank calls it at the same points: a ``latest`` checkpoint also
        gathers each rank's own random state and running log sums, so a resume with the same
        number of processes continues every rank exactly (and the top-level figures are global)."""
        if self.run is None:
            return
        if self.probe.enabled:
            self.state["pipeline_seconds"] = self.probe.pipeline_seconds()
        tensors, meta = self.recipe.extra_state()
        state = dict(self.state, recipe_state=meta, torch_rng=torch.get_rng_state().tolist())
        if which == "latest" and dist.is_distributed():
            ranks = dist.gather_objects({k: state[k] for k in _PER_RANK})
            state.update(ranks=ranks, world_size=len(ranks), epoch_samples=sum(r["epoch_samples"] for r in ranks),
                         train_samples=sum(r["train_samples"] for r in ranks),
                         epoch_sums=_add_dicts(r["epoch_sums"] for r in ranks))
        if not dist.is_main():
            return
        path = self.run.latest if which == "latest" else self.run.best
        save_checkpoint(path, self.recipe.modules(), state,
                        optimizer=self.optimizer if which == "latest" else None, extra_tensors=tensors)

    def resume(self) -> bool:
        """Load ``checkpoint/latest`` if there is one; returns whether it did."""
        if self.run is None or not (self.run.latest / "state.json").is_file():
            return False
        if self.optimizer is None:
            self._build_optimizer()
        state, extra = load_checkpoint(self.run.latest, self.recipe.modules(), self.optimizer)
        self.recipe.load_extra_state(extra, state.pop("recipe_state", {}))
        ranks, saved_world = state.pop("ranks", None), state.pop("world_size", 1)
        own = ranks is not None and saved_world == dist.world_size()  # each rank gets its own state back
        if own:
            state.update(ranks[dist.rank()])
        elif saved_world != dist.world_size():
            if state["batch"] and not state["done"]:
                raise ValueError(f"the run stopped mid-epoch with {saved_world} process(es); resume it with as many "
                                 f"(a different number would split the epoch's batches differently)")
            if not dist.is_main():  # the global running figures are rank 0's to carry
                state.update(epoch_sums={}, epoch_samples=0, train_samples=0)
        rng = state.pop("torch_rng", None)
        if rng is not None:
            torch.set_rng_state(torch.tensor(rng, dtype=torch.uint8))
            if not own:  # rank 0's stream everywhere: give the other ranks their own again
                dist.seed_rank_stream(self.cfg.run.seed + state["step"])
        state.pop("optimizer", None)
        self.state.update(state)
        self.probe.resumed(self.state)
        if dist.is_main():
            self.run.drop_metrics_after(self.state["step"])
        return True

    def _step_losses(self, batch: Any) -> dict[str, torch.Tensor]:
        """The forward pass (under autocast when ``train.precision`` asks); backward runs outside
        it, as autocast wants."""
        with training_autocast(self.cfg.train.precision, self.recipe.device):
            if self._ddp is not None:
                return self._ddp(batch, self.state["step"])
            return self.recipe.training_step(batch, self.state["step"])

    def _shard(self, batches: list) -> tuple[list, int]:
        """This rank's share of the epoch (all batches single-process) and how many batches the
        wrap-around padding repeated."""
        if not dist.is_distributed():
            return batches, 0
        sizes = [self.recipe.batch_size_of(b) for b in batches]
        mine, self._global_sizes, repeated = dist.shard_batches(list(batches), sizes)
        return mine, repeated

    # ------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        cfg, recipe = self.cfg, self.recipe
        if self.optimizer is None:
            self._build_optimizer()
        metric = cfg.eval.valid_metric
        budget_s = cfg.train.max_minutes * 60 if cfg.train.max_minutes else math.inf
        epochs = cfg.train.epochs if recipe.trainable else 0
        stop = self.state["done"]
        progress = cfg.run.progress and dist.is_main()
        if dist.is_distributed() and epochs > self.state["epoch"] and self._ddp is None:
            self._ddp = dist.wrap_recipe(recipe)  # after prepare() and resume: rank 0's weights everywhere
        while not stop and self.state["epoch"] < epochs:
            epoch = self.state["epoch"]
            rng = np.random.default_rng([cfg.run.seed, epoch])  # the same on every rank
            batches, repeated = self._shard(recipe.train_batches(epoch, rng))
            recipe.train(True)
            sums: dict[str, float] = self.state["epoch_sums"]
            self._segment_start = (time.perf_counter(), time.process_time())
            bar = tqdm(batches[self.state["batch"]:], desc=f"{recipe.name} epoch {epoch + 1}/{epochs}",
                       disable=not progress, leave=False, dynamic_ncols=True)
            elapsed = self._budget_clock()  # rank 0's clock when a budget is set (below)
            for batch in bar:
                lr = self._lr_at(self.state["step"], self._budget_used(len(batches), elapsed, budget_s))
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                losses = self._step_losses(batch)
                loss = losses["loss"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss {loss.item()} at epoch {epoch + 1}, step {self.state['step']}")
                bs = recipe.batch_size_of(batch)
                if self._ddp is not None:
                    # DDP averages the ranks' gradients; weighting each rank's mean loss by its
                    # share of the step's samples makes that the gradient of the mean over the
                    # whole step (ranks' batches differ in size: the last one, windows...)
                    loss = loss * (bs * dist.world_size() / self._global_sizes[self.state["batch"]])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.train.grad_clip:
                    clip_per_module(recipe.modules().values(), cfg.train.grad_clip)
                self.optimizer.step()
                self.state["epoch_samples"] += bs
                self.state["train_samples"] += bs
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) * bs
                self.state["step"] += 1
                self.state["batch"] += 1
                bar.set_postfix(loss=f"{sums['loss'] / self.state['epoch_samples']:.4f}", refresh=False)
                if cfg.train.save_every_steps and self.state["step"] % cfg.train.save_every_steps == 0:
                    self._fold_time()
                    self._save("latest")
                if budget_s < math.inf:  # one clock decides (rank 0's)
                    elapsed = dist.broadcast_float(self._budget_clock())
                    if elapsed > budget_s:
                        stop = True
                        break
            bar.close()
            self._fold_time()
            finished_epoch = self.state["batch"] >= len(batches)
            epoch_seconds = self.state["epoch_seconds"]
            n_seen, loss_sums = self._global_sums(self.state["epoch_samples"], sums)
            record: dict[str, Any] = {"epoch": epoch + 1, "step": self.state["step"],
                                      **{f"train_{k}": v / max(n_seen, 1) for k, v in loss_sums.items()},
                                      "epoch_seconds": epoch_seconds,
                                      "samples_per_s": n_seen / max(epoch_seconds, 1e-9),
                                      "train_seconds": self.state["train_seconds"],
                                      "train_cpu_seconds": self.state["train_cpu_seconds"],
                                      "lr": self.optimizer.param_groups[0]["lr"]}
            if dist.is_distributed():
                record.update(processes=dist.world_size(), repeated_batches=repeated)
            if finished_epoch:
                record.update(recipe.on_epoch_end(epoch))
                self.state.update(epoch=epoch + 1, batch=0, epoch_sums={}, epoch_samples=0, epoch_seconds=0.0)
            if finished_epoch and ((epoch + 1) % cfg.train.eval_every == 0 or self.state["epoch"] >= epochs) or stop:
                recipe.train(False)
                valid = self.valid_evaluator.evaluate(recipe.ranker(), "valid", progress=progress)
                record["valid"] = valid
                if self.state["best"] is None or valid[metric] > self.state["best"]:
                    self.state.update(best=valid[metric], best_epoch=epoch + 1, bad_evals=0)
                    self._save("best")
                else:
                    self.state["bad_evals"] += 1
                    if self.state["bad_evals"] >= cfg.train.patience:
                        stop = True
                record["best_" + metric] = self.state["best"]
                if self.probe.enabled:
                    record["test_probe"], reached = self.probe.probe(recipe.ranker(), self.state, epoch + 1, progress)
                    stop = stop or reached
            record["peak_rss_mb"] = peak_rss_mb()
            if self.run is not None and dist.is_main():
                self.run.log_metrics(record)
            if stop or self.state["epoch"] >= epochs:
                self.state["done"] = True
            self._save("latest")
            if progress:
                _print_epoch(record, metric)
        return self.finish()

    @staticmethod
    def _global_sums(samples: int, sums: dict[str, float]) -> tuple[int, dict[str, float]]:
        """Samples and loss sums over all ranks (this rank's single-process): rank 0 logs the
        epoch's global figures, once per epoch rather than a collective per step."""
        if not dist.is_distributed():
            return samples, sums
        keys = sorted(sums)
        total = dist.all_reduce_sum(torch.tensor([samples, *(sums[k] for k in keys)], dtype=torch.float64))
        return int(total[0]), dict(zip(keys, total[1:].tolist()))

    def _budget_clock(self) -> float:
        """Training seconds so far on the clock ``train.budget_clock`` names: wall time, or this
        process's CPU time, which a neighbour's load on a shared machine hardly moves (with one
        thread it is close to the wall time of an unloaded machine)."""
        if self.cfg.train.budget_clock == "cpu":
            return self.state["train_cpu_seconds"] + time.process_time() - self._segment_start[1]
        return self.state["train_seconds"] + time.perf_counter() - self._segment_start[0]

    def _fold_time(self) -> None:
        """Add the wall and CPU seconds of the training segment just ended to the run's and the
        epoch's totals (before a checkpoint, so a resumed run reports the same totals)."""
        wall, cpu = time.perf_counter(), time.process_time()
        self.state["train_seconds"] += wall - self._segment_start[0]
        self.state["epoch_seconds"] += wall - self._segment_start[0]
        self.state["train_cpu_seconds"] += cpu - self._segment_start[1]
        self._segment_start = (wall, cpu)

    def finish(self) -> dict[str, Any]:
        recipe = self.recipe
        dist.barrier()  # rank 0's last checkpoint is on disk before anyone reads it
        if self.run is not None and (self.run.best / "state.json").is_file() and recipe.trainable:
            state, extra = load_checkpoint(self.run.best, recipe.modules())
            recipe.load_extra_state(extra, state.get("recipe_state", {}))
        recipe.train(False)
        timed_by_test = self.probe.enabled and not recipe.trainable
        started = self.probe.pipeline_seconds() if timed_by_test else None
        test = self.evaluator.evaluate(recipe.ranker(), "test", progress=self.cfg.run.progress and dist.is_main())
        if timed_by_test:
            self.probe.untrained(test, started, self.state)
        train_samples, _ = self._global_sums(self.state["train_samples"], {})
        result = {
            "method": recipe.name,
            "dataset": recipe.data.name if recipe.data is not None else None,
            "seed": self.cfg.run.seed,
            "test": test,
            "best_valid": self.state["best"],
            "best_epoch": self.state["best_epoch"],
            "epochs_run": self.state["epoch"],
            "steps": self.state["step"],
            "train_seconds": self.state["train_seconds"],
            "train_cpu_seconds": self.state["train_cpu_seconds"],
            "train_samples_per_s": train_samples / max(self.state["train_seconds"], 1e-9),
            "eval_users_per_s": test["users_per_s"],
            "peak_rss_mb": peak_rss_mb(),
        }
        if dist.is_distributed():
            result["processes"] = dist.world_size()
        if self.probe.enabled:
            result.update(self.probe.result(self.state))
        if self.run is not None and dist.is_main():
            recipe.save_artifacts(self.run)
            self.run.write_json("test_metrics.json", result)
        return result


# what each rank keeps for itself in a checkpoint (the rest of the state is the same everywhere)
_PER_RANK = ("torch_rng", "epoch_sums", "epoch_samples", "train_samples")


def _add_dicts(dicts) -> dict[str, float]:
    out: dict[str, float] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0.0) + v
    return out


def _print_epoch(record: dict, metric: str) -> None:
    parts = [f"epoch {record['epoch']}", f"loss {record.get('train_loss', float('nan')):.4f}",
             f"{record['samples_per_s']:.0f} samples/s"]
    if "valid" in record:
        parts.append(f"valid {metric} {record['valid'][metric]:.4f} (best {record['best_' + metric]:.4f})")
    tqdm.write(" | ".join(parts))


def training_autocast(precision: str, device: torch.device | None):
    """float32: a no-op context. bfloat16: ``torch.autocast`` on the recipe's device type, so
    matrix products run in bfloat16 while weights, gradients and AdamW stay float32 (and losses,
    softmaxes and norms stay float32 by autocast's own op lists)."""
    device_type = device.type if device is not None else "cpu"
    if precision == "bfloat16":
        warn_if_slow_bfloat16(device_type, "training (train.precision)")
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def clip_per_module(modules, max_norm: float) -> None:
    """Clip each model's gradient norm on its own. PIT trains three models with one optimiser; one
    global norm would let the auxiliary CSA and Item-to-Token gradients shrink the recommender's
    step, so the recommender would not train as TIGER's does on the same batch."""
    for mod in modules:
        params = [p for p in mod.parameters() if p.grad is not None]
        if params:
            torch.nn.utils.clip_grad_norm_(params, max_norm)


def build_adamw(groups: list[dict], lr: float, impl: str = "fused") -> torch.optim.AdamW:
    """AdamW as every recipe trains with it; ``impl`` picks the implementation (train.optimizer_impl)."""
    kind = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}
    if impl not in kind:
        raise ValueError(f"train.optimizer_impl must be one of {sorted(kind)}, got {impl!r}")
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), **kind[impl])
