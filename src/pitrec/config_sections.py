"""The core config sections: run, data, eval, train. Model- and stage-specific sections live
beside the code that reads them (``models/``, ``embed/``, ``tokenizers/`` ...) and register
themselves the same way."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from pitrec.config import Section
from pitrec.registry import SECTIONS


@SECTIONS.register("run")
class RunConfig(Section):
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    num_threads: int = 0  # 0 = torch default
    out: str | None = None  # run directory
    progress: bool = True  # progress bars on long loops
    # glibc keeps freed blocks for reuse (pitrec.utils.runtime.retain_freed_memory): 20-90x fewer
    # page faults in beam search, CPU time within noise (benchmarks/tuning/malloc_decode.md), so
    # off unless asked (`pitrec serve` asks: two threads served 7-16% more users/s with it); speed only, never results
    retain_freed_memory: bool = False
    # torch's deterministic algorithms while a run builds and trains on CPU: with several threads some
    # backward passes (indexing a parameter by a tensor: CSA, Item-to-Token, RQ-VAE) otherwise sum in
    # a scheduling-dependent order, and two processes with the same seed train different weights
    deterministic: bool = True


@SECTIONS.register("data")
class DataConfig(Section):
    path: str | None = None  # a folder or file; None with format=synthetic
    format: Literal["auto", "s3rec", "recbole", "csv", "parquet", "synthetic"] = "auto"
    kcore_users: int = 0  # drop users with fewer interactions (0 = off); drops are counted and reported
    kcore_items: int = 0
    max_history: int = Field(20, ge=1)
    min_user_interactions: int = Field(3, ge=3)  # leave-one-out needs train + valid + test
    # columns of generic tables (csv/parquet) and field names of RecBole atomic files
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"  # "" = no timestamps: rows are already in chronological order
    items_file: str | None = None  # csv/parquet items table (id = item_col, text|title, attributes)
    # synthetic generator (the embedded default)
    synthetic_users: int = 2000
    synthetic_items: int = 600
    synthetic_clusters: int = 12
    synthetic_seed: int = 7


@SECTIONS.register("eval")
class EvalConfig(Section):
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20])
    mask_history: bool = False  # default protocol (TIGER and the generative papers): no masking
    batch_size: int = Field(512, ge=1)
    valid_metric: str = "ndcg@10"
    valid_users: int = Field(0, ge=0)  # validate on a fixed random subset of users (0 = all)
    # Time to accuracy, for runs made only to measure speed (pitrec.train.accuracy_probe): above 0,
    # the test split is also evaluated after each validation, off the run's clock, and the run records
    # the seconds from its raw files to the first model whose test `accuracy_metric` reaches this.
    # It never selects a model: the best-validation checkpoint is still the one tested at the end.
    accuracy_target: float = Field(0.0, ge=0)
    accuracy_metric: str = "ndcg@10"
    stop_at_target: bool = True  # end training once the target is reached: the question is answered

    @field_validator("ks")
    @classmethod
    def _ks_positive_sorted(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 for k in v):
            raise ValueError("ks must be a non-empty list of positive integers")
        return sorted(set(v))

    @model_validator(mode="after")
    def _metrics_are_computed(self) -> "EvalConfig":
        # early stopping and the probe read these after the first epoch: a typo must fail at start-up
        for field in ("valid_metric", "accuracy_metric"):
            name, _, k = getattr(self, field).partition("@")
            if name not in ("recall", "ndcg") or not k.isdigit() or int(k) not in self.ks:
                raise ValueError(f"{field} {getattr(self, field)!r} must be recall@K or ndcg@K with K in ks {self.ks}")
        return self


@SECTIONS.register("train")
class TrainConfig(Section):
    epochs: int = Field(50, ge=0)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    # AdamW's implementation, the same algorithm: inside beauty training steps on one CPU thread,
    # fused step() took 6.3 ms for TIGER's 3.1M parameters, the per-tensor loop 19.1 ms, foreach
    # 17.1: a 6% shorter training step (benchmarks/tuning/optimizer_impl.md)
    optimizer_impl: Literal["fused", "foreach", "loop"] = "fused"
    warmup_steps: int = Field(0, ge=0)
    grad_clip: float = Field(1.0, ge=0)  # 0 = off
    patience: int = Field(5, ge=1)  # early stopping on eval.valid_metric, in evaluations
    eval_every: int = Field(1, ge=1)  # epochs between validations
    max_minutes: float = Field(0, ge=0)  # time budget for training (0 = none), on budget_clock
    # wall: elapsed time. cpu: this process's CPU time, all its threads together, so a run's
    # budget buys the same work when other jobs share the machine (with run.num_threads=1 it is
    # about the wall time of an unloaded machine; with N busy threads about N x the wall time).
    budget_clock: Literal["wall", "cpu"] = "wall"
    save_every_steps: int = Field(0, ge=0)  # extra mid-epoch checkpoints for resume (0 = per epoch)
    # causal generators (TIGER, PIT): k consecutive targets of a long user share one training
    # window, so the earlier ones see k - 1 fewer history items at most; 1 = every history exactly
    # data.max_history items (see pitrec.train.prefix_windows for what it saves)
    long_history_stride: int = Field(1, ge=1)
    # bfloat16: forward passes under torch.autocast (weights, optimiser and backward stay float32).
    # Faster where the hardware has bfloat16 matrix units (GPUs, CPUs with AMX); slower on CPUs
    # without them. See docs/precision.md for what was measured.
    precision: Literal["float32", "bfloat16"] = "float32"
    # After the warm-up: constant, or a cosine decay to min_lr_ratio x lr over the training budget,
    # which is train.epochs or train.max_minutes, whichever ends first (a time budget is read
    # from rank 0's clock, so every rank of a distributed run uses the same rate).
    lr_schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
