"""Co-evolution overhead: the cost of a PIT training step against a TIGER step, same batches.

    python benchmarks/step_cost.py [--data ../shared/data/amazon2014/beauty] [--steps 40] [--threads 2]
        [--candidates 4] [--from-run RUN_DIR] [-- extra --section.key=value overrides for both recipes]

Full-run epoch times on a shared machine mostly measure the neighbours' load, so this compares the
three kinds of step in one process, on the same batches, interleaved step by step: TIGER, PIT warm-up (static
SIDs + CSA + Item-to-Token) and PIT co-evolution (candidate SIDs from the index scored by U2T, the
argmin trained). Each step is what the Trainer does: forward, backward, per-model clipping,
AdamW. The index refresh PIT runs once per epoch (Item-to-Token beam search over every item) is
timed separately and spread over an epoch's steps. By default the index is filled with random
SIDs (every item holding ``candidates``: the worst case); ``--from-run`` takes instead the config,
weights and beam index of a PIT run's latest checkpoint, so the steps are those of that run where
it stopped (its index, its learned Item-to-Token), beside TIGER's steps under the same config.
A profiler table of one co-evolution step shows
where the extra time goes. Writes benchmarks/results/step_cost.{json,md} (git sha, machine,
command line).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from pitrec.config import load_config
from pitrec.train.api import build_recipe, prepare_data, recipe_at_checkpoint
from pitrec.train.trainer import build_adamw, clip_per_module, training_autocast
from pitrec.bench.results import provenance, save_labelled_record
from pitrec.utils.runtime import seed_everything, set_threads

RESULTS = Path(__file__).parent / "results"


class StepTimer:
    """One recipe's optimiser steps exactly as the Trainer does them, timed (wall and CPU)."""

    def __init__(self, recipe, opt: torch.optim.Optimizer, clip: float, before=None):
        self.recipe, self.opt, self.clip, self.before = recipe, opt, clip, before
        self.walls: list[float] = []
        self.cpus: list[float] = []
        self.samples = 0

    def step(self, batch, i: int, timed: bool) -> None:
        if self.before is not None:
            self.before()
        self.recipe.train(True)
        w0, c0 = time.perf_counter(), time.process_time()
        with training_autocast(self.recipe.cfg.train.precision, self.recipe.device):
            loss = self.recipe.training_step(batch, i)["loss"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_per_module(self.recipe.modules().values(), self.clip)
        self.opt.step()
        if self.recipe.device.type == "cuda":  # the clock must wait for the queued kernels
            torch.cuda.synchronize(self.recipe.device)
        if timed:
            self.walls.append(time.perf_counter() - w0)
            self.cpus.append(time.process_time() - c0)
            self.samples += self.recipe.batch_size_of(batch)

    def summary(self) -> dict[str, float]:
        w = np.asarray(self.walls)
        return {"steps": len(w), "median_wall_s": float(np.median(w)), "p90_wall_s": float(np.percentile(w, 90)),
                "max_wall_s": float(w.max()), "total_wall_s": float(w.sum()), "total_cpu_s": float(np.sum(self.cpus)),
                "samples": self.samples, "samples_per_s": self.samples / max(float(w.sum()), 1e-9)}


def interleaved(timers: dict[str, StepTimer], batches, steps: int, warmup: int = 10) -> dict[str, dict]:
    """Round-robin over the kinds of step, batch by batch, so a neighbour's load on a shared
    machine hits every kind alike. The first ``warmup`` rounds are not timed: a process's first
    steps are several times slower while oneDNN builds kernels for new shapes and the allocator
    grows, which is not what an epoch costs."""
    for i, batch in enumerate(batches[: steps + warmup]):
        for timer in timers.values():
            timer.step(batch, i, timed=i >= warmup)
    return {name: t.summary() for name, t in timers.items()}


def _fill_index_at_random(pit, n_sids: int, max_sids_per_item: int) -> None:
    """An untrained Item-to-Token proposes the same few SIDs for every item, which the refresh
    drops, leaving one SID per item and nothing to select from. A trained one proposes up to
    ``n_sids`` distinct SIDs per item: give every item that many random extra SIDs, so each
    co-evolution step scores as many candidates as it would in a real run."""
    n, gen = pit.split.n_items, np.random.default_rng(0)
    random_codes = np.stack([gen.integers(0, s, size=(n, n_sids)) for s in pit.sizes], axis=-1)
    pit.index.refresh(np.arange(n), random_codes, max_sids_per_item=max(n_sids, max_sids_per_item))


def profile_step(recipe, batch) -> str:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with training_autocast(recipe.cfg.train.precision, recipe.device):
            loss = recipe.training_step(batch, 0)["loss"]
        loss.backward()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/amazon2014/beauty")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=None, help="PIT candidate SIDs per target (default: pit.yaml)")
    ap.add_argument("--label", default=None)
    ap.add_argument("--from-run", default=None, help="a PIT run directory: its config, weights and index")
    ap.add_argument("overrides", nargs="*", help="--section.key=value for both recipes (after --)")
    args = ap.parse_args()
    set_threads(args.threads)
    common = [f"data.path={args.data}", "run.progress=false", *[o.lstrip("-") for o in args.overrides]]

    pit_over = common + ([f"pit.candidates={args.candidates}"] if args.candidates else [])
    out: dict = {}
    if args.from_run:  # one config for both: the run's (same backbone, SIDs and training settings)
        pit, state = recipe_at_checkpoint("pit", args.from_run, overrides=pit_over)
        out["from_run"] = {"path": args.from_run, "epoch": state["epoch"], "step": state["step"],
                           "index_edges": int(len(pit.index.edges()[0]))}
        tiger_cfg, pit_cfg, data = pit.cfg, pit.cfg, (pit.data, pit.split)
    else:
        tiger_cfg = load_config("tiger", overrides=common)
        pit_cfg = load_config("pit", overrides=pit_over)
        data = prepare_data(tiger_cfg)

    seed_everything(0)
    tiger = build_recipe("tiger", tiger_cfg, *data)
    batches = tiger.train_batches(0, np.random.default_rng(0))
    steps_per_epoch = len(batches)
    if not args.from_run:
        seed_everything(0)
        pit = build_recipe("pit", pit_cfg, *data)
    if len(pit.train_batches(0, np.random.default_rng(0))) != steps_per_epoch:
        raise SystemExit("PIT and TIGER batch the epoch differently: their steps are not comparable")
    # the index refresh that starts co-evolution (repeated every refresh_every epochs)
    w0, c0 = time.perf_counter(), time.process_time()
    refresh = pit.refresh_index()
    out["refresh"] = {"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0,
                      "stats": {k: float(v) for k, v in refresh.items()}}
    if not args.from_run:
        _fill_index_at_random(pit, pit_cfg.pit.candidates, pit_cfg.pit.max_sids_per_item)
    out["sids_per_item"] = float(pit.index.sids_per_item().mean())
    warm_epoch = pit_cfg.pit.warmup_epochs

    def as_epoch(epoch: int):
        return lambda: setattr(pit, "epoch", epoch)  # the recipe's phase is its current epoch

    def adamw(recipe, lr: float):
        return build_adamw(recipe.param_groups(), lr, recipe.cfg.train.optimizer_impl)

    pit_opt, clip = adamw(pit, pit_cfg.train.lr), pit_cfg.train.grad_clip
    timers = {"tiger": StepTimer(tiger, adamw(tiger, tiger_cfg.train.lr), tiger_cfg.train.grad_clip),
              "pit_warmup": StepTimer(pit, pit_opt, clip, before=as_epoch(0)),
              "pit_coevolution": StepTimer(pit, pit_opt, clip, before=as_epoch(warm_epoch))}
    out.update(interleaved(timers, batches, args.steps))
    pit.epoch = warm_epoch
    hot = profile_step(pit, batches[0])

    t = out["tiger"]["samples"] / out["tiger"]["total_wall_s"]
    for name in ("pit_warmup", "pit_coevolution"):
        r = out[name]
        r["step_ratio_vs_tiger"] = t / (r["samples"] / r["total_wall_s"])
    tiger_epoch = steps_per_epoch * out["tiger"]["total_wall_s"] / out["tiger"]["steps"]
    coevo_epoch = (steps_per_epoch * out["pit_coevolution"]["total_wall_s"] / out["pit_coevolution"]["steps"]
                   + out["refresh"]["wall_s"] / pit_cfg.pit.refresh_every)
    record = {
        "label": args.label or f"{Path(args.data).name}-B{pit_cfg.pit.candidates}",
        "data": args.data, "steps_per_epoch": steps_per_epoch, "threads": args.threads,
        "batch_size": tiger_cfg.train.batch_size, "precision": tiger_cfg.train.precision,
        "selection_precision": pit_cfg.pit.selection_precision,
        "selection_share": pit_cfg.pit.selection_share, "optimizer_impl": pit_cfg.train.optimizer_impl,
        "candidates": pit_cfg.pit.candidates, **out,
        "tiger_epoch_s_est": tiger_epoch, "coevolution_epoch_s_est": coevo_epoch,
        "epoch_ratio": coevo_epoch / tiger_epoch, "hot_spots": hot,
        **provenance(),
    }
    save_labelled_record(RESULTS / "step_cost.json", record, report)
    print(f"{record['label']}: warm-up step x{out['pit_warmup']['step_ratio_vs_tiger']:.2f}, co-evolution step "
          f"x{out['pit_coevolution']['step_ratio_vs_tiger']:.2f}, refresh {out['refresh']['wall_s']:.1f} s, "
          f"co-evolution epoch x{record['epoch_ratio']:.2f} of a TIGER epoch (target <= 1.5)")


def report(doc: dict) -> str:
    lines = ["# Co-evolution overhead: PIT step vs TIGER step", "",
             "Generated by `benchmarks/step_cost.py`: the same batches, one process, the three kinds "
             "of step interleaved round-robin (a neighbour's load hits all alike), after 10 untimed rounds; "
             "forward + backward + clipping + AdamW per step (median of the timed steps beside the "
             "throughput). Epoch ratio = co-evolution steps of one epoch plus one index refresh, over "
             "TIGER's steps of one epoch. Target (issues 4, 6): <= 1.5.", "",
             "Selection share: the share of targets with a choice whose candidates are scored "
             "(`pit.selection_share`). AdamW: `train.optimizer_impl` (runs before it existed used the loop).", "",
             "| run | B | SIDs/item | selection share | AdamW | threads | precision | TIGER samples/s | warm-up x | co-evolution x | refresh s | epoch ratio |",
             "|---|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in doc["runs"]:
        precision = r.get("precision", "float32")
        if r.get("selection_precision", precision) != precision:
            precision += f" (selection {r['selection_precision']})"
        lines.append(f"| {r['label']} | {r['candidates']} | {r['sids_per_item']:.1f} | {r.get('selection_share', 1.0):g} | "
                     f"{r.get('optimizer_impl', 'loop')} | {r['threads']} | {precision} | {r['tiger']['samples_per_s']:.0f} | "
                     f"{r['pit_warmup']['step_ratio_vs_tiger']:.2f} | {r['pit_coevolution']['step_ratio_vs_tiger']:.2f} | "
                     f"{r['refresh']['wall_s']:.1f} | {r['epoch_ratio']:.2f} |")
    lines.append("")
    for r in doc["runs"]:
        lines += [f"## {r['label']}", "", f"`{r['command']}` at {r['git_sha']} on {r['machine']}, {r['created']}; "
                  f"{r['steps_per_epoch']} steps per epoch of batch {r['batch_size']}.", "",
                  *([f"State of `{r['from_run']['path']}` after epoch {r['from_run']['epoch']} (step "
                     f"{r['from_run']['step']}, {r['from_run']['index_edges']:,} index edges), refreshed once.", ""]
                    if "from_run" in r else []),
                  "Hot spots of one co-evolution step, forward + backward (torch profiler, self CPU time):", "",
                  "```", r["hot_spots"].rstrip(), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
