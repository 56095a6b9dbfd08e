"""Multi-process training under torchrun (DistributedDataParallel, gloo on CPU).

Two kinds of checks:
- real ``python -m torch.distributed.run --nproc_per_node=2`` launches of ``pitrec train``,
  compared with single-process training of the same config: exactly equivalent configs must give
  the same losses and weights (SASRec: no dropout, unbucketed batches, B/2 per rank vs B), the
  others (TIGER, PIT: dropout, sampled negatives and batch composition differ) the same metrics
  within a stated tolerance; rank 1 must write nothing into the run directory;
- one 2-process gloo group started with ``torch.multiprocessing.spawn`` for exact properties:
  sharded evaluation == single-process evaluation, one DDP step of 2 x half a batch == one step of
  the batch (gradients and weights), PIT's beam indexes identical on both ranks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pitrec.config import load_config
from pitrec.train.api import build_recipe, prepare_data, train_run

TINY_SASREC = [  # tests/train/conftest.py's tiny SASRec (spawned processes cannot import a conftest)
    "data.synthetic_users=120", "data.synthetic_items=50", "data.synthetic_clusters=4", "data.max_history=8",
    "sasrec.hidden=16", "sasrec.ffn=32", "sasrec.max_len=8", "train.lr=0.005", "train.patience=5",
    "run.progress=false", "run.seed=11", "run.num_threads=1",
]
SASREC_EXACT = TINY_SASREC + ["data.format=synthetic", "sasrec.dropout=0", "sasrec.attn_dropout=0",
                                 "sasrec.bucket_by_length=false", "train.epochs=2"]
GENERATIVE = [  # 1000 users: the 2- vs 1-process metric noise must stay well inside the tolerance
    "data.format=synthetic", "data.synthetic_users=1000", "data.synthetic_items=60", "data.synthetic_clusters=4",
    "data.max_history=6", "embed.encoder=tfidf", "embed.tfidf_dim=16",
    "tokenizer.name=rqkmeans", "tokenizer.levels=2", "tokenizer.codebook_size=4",
    "u2t.d_model=16", "u2t.heads=2", "u2t.encoder_layers=1", "u2t.decoder_layers=1", "u2t.ffn=32", "u2t.max_history=6",
    "csa.dim=16", "csa.mlp_hidden=[16,8,8]", "i2t.d_model=16", "i2t.layers=1", "i2t.ffn=32",
    "train.lr=0.005", "train.warmup_steps=0", "pit.warmup_epochs=2", "pit.beam_width=6", "pit.max_items_per_sid=50",
    "tiger.beam_width=6", "run.progress=false", "run.seed=0", "run.num_threads=1",
]
# TIGER / PIT: |NDCG@10(2 processes) - NDCG@10(1 process)| on the 1000-user synthetic test set.
# Seed-to-seed, single-process runs of these configs spread over about 0.05 (0.45-0.52), and 8
# measured 2- vs 1-process pairs differed by at most 0.041; a broken run (ranks training different
# models, a wrong index) loses far more than that.
NDCG_TOLERANCE = 0.06

# run by torchrun in place of ``pitrec``: every rank records the files it creates, renames or opens
# for writing inside the run directory (Python's audit hooks), then runs the real command line
LAUNCHER = textwrap.dedent('''
    import atexit, json, os, sys
    run_dir, log = os.path.realpath(sys.argv.pop(1)), sys.argv.pop(1)
    writes = []
    def inside(p):
        try:
            return os.path.realpath(os.fsdecode(p)).startswith(run_dir)
        except (TypeError, ValueError):
            return False
    def hook(event, args):
        if event == "open" and inside(args[0]) and (
                any(c in (args[1] or "") for c in "wax+") or (args[2] or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
            writes.append([event, os.fsdecode(args[0])])
        elif event == "os.rename" and (inside(args[0]) or inside(args[1])):
            writes.append([event, os.fsdecode(args[1])])
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree") and inside(args[0]):
            writes.append([event, os.fsdecode(args[0])])
    sys.addaudithook(hook)
    atexit.register(lambda: open(f"{log}.{os.environ['RANK']}", "w").write(json.dumps(writes)))
    sys.argv = ["pitrec", *sys.argv[1:]]
    from pitrec.cli import main
    main()
''')


def torchrun(tmp_path: Path, run: Path, method: str, overrides: list[str], *extra: str) -> list[list]:
    """``pitrec train METHOD --out RUN`` on 2 processes; returns the writes rank 1 made in RUN."""
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    log = tmp_path / f"writes-{run.name}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(launcher),
           str(run), str(log), "train", method, "--out", str(run), *extra, *[f"--{o}" for o in overrides]]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.stdout.count("Test metrics") == 1, proc.stdout  # one process prints the result
    rank0, rank1 = (json.loads(Path(f"{log}.{r}").read_text()) for r in (0, 1))
    assert rank0, "the audit hook saw no write of rank 0: the check below would prove nothing"
    return rank1


def metrics_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# -- real torchrun launches ----------------------------------------------------------------------
def test_sasrec_two_processes_train_the_same_model_as_one_and_resume(tmp_path):
    """2 ranks x batch 16 == 1 process x batch 32 when nothing is random (dropout 0) and the
    batches pair up (unbucketed: chunks 2s and 2s+1 of the 16-split are batch s of the 32-split).
    The 2-process run stops after epoch 1 and is resumed for epoch 2 (per-rank state restored)."""
    two = tmp_path / "two"
    written = torchrun(tmp_path, two, "sasrec", SASREC_EXACT + ["train.batch_size=16", "train.epochs=1"])
    # as if killed after epoch 1 of 2: that checkpoint differs from this one only in "done"
    state = json.loads((two / "checkpoint" / "latest" / "state.json").read_text())
    assert state["done"] and state["world_size"] == 2 and len(state["ranks"]) == 2
    (two / "checkpoint" / "latest" / "state.json").write_text(json.dumps(dict(state, done=False)))
    written += torchrun(tmp_path, two, "sasrec", SASREC_EXACT + ["train.batch_size=16"], "--resume")
    assert written == [], f"rank 1 wrote into the run directory: {written}"
    one = train_run("sasrec", load_config("sasrec", overrides=SASREC_EXACT + ["train.batch_size=32",
                                                                            f"run.out={tmp_path / 'one'}"]))

    lines = metrics_lines(two)
    assert [r["epoch"] for r in lines] == [1, 2] and all(r["processes"] == 2 for r in lines)
    assert all(r["repeated_batches"] == 0 for r in lines)  # else the last steps would differ
    for a, b in zip(lines, metrics_lines(tmp_path / "one")):
        assert a["step"] == b["step"] and a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["valid"]["ndcg@10"] == pytest.approx(b["valid"]["ndcg@10"], abs=0.01)
    result = json.loads((two / "test_metrics.json").read_text())
    assert result["processes"] == 2 and result["steps"] == one["steps"]
    for name, value in one["test"].items():
        if name != "users_per_s":
            assert result["test"][name] == pytest.approx(value, abs=0.01), name  # 0.01: about one user of 120

    w1 = load_file(str(tmp_path / "one" / "checkpoint" / "latest" / "model.safetensors"))
    w2 = load_file(str(two / "checkpoint" / "latest" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    for key in w1:
        a, b = comparable(key, w1[key]), comparable(key, w2[key])
        assert torch.allclose(a, b, atol=1e-5, rtol=0), (key, (a - b).abs().max())


def comparable(name: str, weights: torch.Tensor) -> torch.Tensor:
    """Weights compared to 1e-5, without the key third of the attention input biases: its true
    gradient is zero (softmax ignores a shift), and Adam turns the float noise standing in for it
    into lr-sized steps whose sign differs between any two summation orders."""
    if name.endswith("in_proj_bias"):
        h = len(weights) // 3
        return torch.cat([weights[:h], weights[2 * h:]])
    return weights


def _generative_pair(tmp_path, method: str, overrides: list[str]) -> tuple[dict, dict, Path]:
    cache = [f"embed.cache_dir={tmp_path / 'cache'}"]
    one = train_run(method, load_config(method, overrides=GENERATIVE + overrides + cache + ["train.batch_size=64"]))
    two = tmp_path / "two"
    written = torchrun(tmp_path, two, method, GENERATIVE + overrides + cache + ["train.batch_size=32"])
    assert written == [], f"rank 1 wrote into the run directory: {written}"
    return one, json.loads((two / "test_metrics.json").read_text()), two


def test_tiger_two_processes_match_one_within_tolerance(tmp_path):
    one, two, run = _generative_pair(tmp_path, "tiger", ["train.epochs=4"])
    assert two["processes"] == 2 and two["test"]["users"] == one["test"]["users"] == 1000
    assert abs(two["test"]["ndcg@10"] - one["test"]["ndcg@10"]) <= NDCG_TOLERANCE, (two["test"], one["test"])
    assert (run / "sid_table.json").is_file() and (run / "decoding_stats.json").is_file()
    assert len(metrics_lines(run)) == 4


def test_pit_two_processes_keep_one_index_and_match_one_within_tolerance(tmp_path):
    one, two, run = _generative_pair(tmp_path, "pit", ["train.epochs=3"])
    assert abs(two["test"]["ndcg@10"] - one["test"]["ndcg@10"]) <= NDCG_TOLERANCE, (two["test"], one["test"])
    lines = metrics_lines(run)
    assert [r["phase"] for r in lines] == ["warm-up", "warm-up", "co-evolution"]
    assert lines[-1]["selection_scored_share"] > 0  # selections happened, and were recorded on both ranks
    # the ranks compared index digests before and after each refresh: none differed
    assert all(r["index_resyncs"] == 0 for r in lines), [r["index_resyncs"] for r in lines]
    assert (run / "beam_index" / "index.json").is_file()


# -- one spawned 2-process group, exact properties ---------------------------------------------------
def _worker(rank: int, world: int, root: str) -> None:
    """Runs in each spawned process; writes what it found to ``root/rank{r}.pt``."""
    import torch.distributed as tdist

    from pitrec.eval.evaluator import Evaluator
    from pitrec.train import distributed as dist
    from pitrec.train.trainer import Trainer

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{root}/group", rank=rank, world_size=world)
    out: dict = {}
    try:
        # 1. evaluation: each rank ranks its shard; the sums are added (77 users: an uneven split)
        cfg = load_config("sasrec", overrides=SASREC_EXACT)
        data, split = prepare_data(cfg)
        torch.manual_seed(0)
        recipe = build_recipe("sasrec", cfg, data, split)
        recipe.train(False)
        evaluator = Evaluator(split, ks=(5, 10, 20), max_users=77, seed=1)
        out["eval_sharded"] = evaluator.evaluate(recipe.ranker(), "valid")
        out["eval_local"] = Evaluator(split, ks=(5, 10, 20), max_users=77, seed=1,
                                      distributed=False).evaluate(recipe.ranker(), "valid")

        # 2. one Trainer step through DDP: rank r trains half r of a fixed batch (halves of
        # different sizes and target counts), as the parent trains the whole batch in one process
        out["step"] = _one_trainer_step(cfg, data, split, Trainer, halves=True)

        # 3. PIT: selections recorded on every rank in rank order; a divergent index is repaired
        pit_cfg = load_config("pit", overrides=_pit_overrides(root))
        pit = build_recipe("pit", pit_cfg, *prepare_data(pit_cfg))
        items, codes = _selections(pit, rank)
        pit._record(torch.from_numpy(items), torch.from_numpy(codes))
        out["pit_recorded"] = dist.state_digest(*pit.index.state_dict())
        if rank == 1:  # a divergence only rank 1 has
            pit.index.record_selections(items[:1], codes[:1])
        out["pit_resyncs"] = pit._agree_index()
        out["pit_after"] = dist.state_digest(*pit.index.state_dict())
    finally:
        tdist.destroy_process_group()
    torch.save(out, f"{root}/rank{rank}.pt")


def _pit_overrides(root) -> list[str]:
    tiny = [o.replace("data.synthetic_users=1000", "data.synthetic_users=120") for o in GENERATIVE]
    return tiny + [f"embed.cache_dir={root}/cache", "pit.warmup_epochs=0"]


def _selections(pit, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank-specific (item, SID) selections of different counts, each SID one the index knows."""
    n = 3 if rank == 0 else 5
    items = np.arange(rank * 10, rank * 10 + n, dtype=np.int64)
    _, codes, _ = pit.index.edges()
    return items, np.ascontiguousarray(codes[(items * 7) % len(codes)]).astype(np.int64)


def _one_trainer_step(cfg, data, split, trainer_cls, halves: bool) -> dict:
    """One Trainer step on a fixed 21-window batch (whole, or this rank's part); returns the
    gradients the optimiser saw and the weights after its step."""
    from pitrec.eval.evaluator import Evaluator
    from pitrec.train import distributed as dist

    cfg = cfg.with_overrides({"train": {"epochs": 1, "grad_clip": 1.0, "lr": 0.01}})
    torch.manual_seed(5)
    recipe = build_recipe("sasrec", cfg, data, split)
    batch = np.random.default_rng(2).choice(len(recipe.inputs), 21, replace=False)
    parts = [batch[:8], batch[8:]] if halves else [batch]
    recipe.train_batches = lambda epoch, rng: parts
    trainer = trainer_cls(cfg, recipe, Evaluator(split, ks=(5, 10, 20), max_users=10))
    trainer._build_optimizer()
    seen: dict = {}
    trainer.optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: seen.update({n: p.grad.clone() for n, p in recipe.model.named_parameters()}))
    trainer.fit()
    targets = [int(recipe.lengths[p].sum()) for p in parts]
    return {"grads": seen, "weights": {n: p.detach().clone() for n, p in recipe.model.named_parameters()},
            "targets": targets, "rank": dist.rank()}


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    root = tmp_path_factory.mktemp("spawn")
    pit_cfg = load_config("pit", overrides=_pit_overrides(root))
    data, split = prepare_data(pit_cfg)
    reference_pit = build_recipe("pit", pit_cfg, data, split)  # also fills the stage caches for the ranks
    threads = torch.get_num_threads()
    try:
        torch.multiprocessing.spawn(_worker, args=(2, str(root)), nprocs=2, join=True)
        cfg = load_config("sasrec", overrides=SASREC_EXACT)
        single_step = _one_trainer_step(cfg, *prepare_data(cfg), _trainer_cls(), halves=False)
    finally:
        torch.set_num_threads(threads)
    ranks = [torch.load(root / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    return ranks, single_step, reference_pit


def _trainer_cls():
    from pitrec.train.trainer import Trainer

    return Trainer


def test_sharded_evaluation_equals_single_process_evaluation(spawned):
    ranks, _, _ = spawned
    for r in ranks:
        local, sharded = r["eval_local"], r["eval_sharded"]
        assert sharded["users"] == local["users"] == 77
        for name in local:
            if name != "users_per_s":
                assert sharded[name] == pytest.approx(local[name], abs=1e-6), name
    assert {k: v for k, v in ranks[0]["eval_sharded"].items() if k != "users_per_s"} == \
        {k: v for k, v in ranks[1]["eval_sharded"].items() if k != "users_per_s"}


def test_one_ddp_step_of_two_halves_equals_one_step_of_the_batch(spawned):
    """Halves of 8 and 13 windows with different target counts: without the sample weighting of
    each rank's loss (or without DDP's gradient averaging) the gradients would differ."""
    ranks, single, _ = spawned
    assert ranks[0]["step"]["targets"][0] != ranks[0]["step"]["targets"][1]
    for r in ranks:
        for name, g in single["grads"].items():
            assert torch.allclose(r["step"]["grads"][name], g, atol=1e-6, rtol=1e-5), (name, (r["step"]["grads"][name] - g).abs().max())
        for name, w in single["weights"].items():
            assert torch.allclose(comparable(name, r["step"]["weights"][name]), comparable(name, w), atol=1e-5, rtol=0), name


def test_pit_indexes_stay_identical_across_ranks(spawned):
    ranks, _, reference = spawned
    from pitrec.train import distributed as dist

    # every rank recorded both ranks' selections, rank 0's first: the single-process index does the same
    items0, codes0 = _selections(reference, 0)
    items1, codes1 = _selections(reference, 1)
    reference.index.record_selections(np.concatenate([items0, items1]), np.concatenate([codes0, codes1]))
    assert ranks[0]["pit_recorded"] == ranks[1]["pit_recorded"] == dist.state_digest(*reference.index.state_dict())
    # rank 1's private divergence was noticed on both ranks and replaced by rank 0's index
    assert ranks[0]["pit_resyncs"] == ranks[1]["pit_resyncs"] == 1
    assert ranks[0]["pit_after"] == ranks[1]["pit_after"] == ranks[0]["pit_recorded"]
