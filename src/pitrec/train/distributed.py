"""Data-parallel training across processes started by ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node=N -m pitrec.cli train ...`` starts N copies of the same command and
tells each, through ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``, who it is. ``process_group`` joins
them (gloo on CPU, NCCL on GPU, one GPU per process); everything else here is a small helper the
trainer, the evaluator and the recipes call. Outside torchrun (or with one process) no process
group exists and every helper is the identity, so single-process runs do exactly what they did
before: no wrapper, no collective, no extra synchronisation.

What is shared and how (see ``docs/distributed.md``): every rank builds the same epoch batch list
and trains its ``rank::world`` share; DDP averages gradients; evaluation metric sums are summed
over disjoint user shards; rank 0 alone writes the run directory.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist

# stage artifacts (embeddings, RQ-VAE) are built by rank 0 while the others wait in a barrier:
# minutes on a CPU, longer than torch's default 10-minute collective timeout
TIMEOUT = timedelta(minutes=float(os.environ.get("PITREC_DIST_TIMEOUT_MIN", "120")))


def launched_world_size() -> int:
    """Processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    """This process's rank as torchrun announced it; usable before and after the group exists."""
    return int(os.environ.get("RANK", "0"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """The one process that writes files, logs and draws progress bars."""
    return rank() == 0


@contextmanager
def process_group(device: str = "cpu") -> Iterator[None]:
    """Join the torchrun job for the duration of a run, then leave it.

    A no-op outside torchrun, and when a group already exists (a test that spawned its own group
    owns it). On CUDA each process takes GPU ``LOCAL_RANK``, so ``run.device=cuda`` (or ``auto``)
    means "my GPU"; an explicit ``cuda:N`` would put every process on the same GPU and is refused.
    """
    if launched_world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        yield
        return
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if ":" in device:
            raise ValueError(f"run.device={device!r} under torchrun: use 'cuda' (each process takes cuda:LOCAL_RANK)")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """NCCL only moves CUDA tensors; gloo moves CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, returned as a new tensor on ``tensor``'s device (the input itself when
    single-process)."""
    if not is_distributed():
        return tensor
    buf = tensor.detach().to(_comm_device(), copy=True)
    dist.all_reduce(buf)
    return buf.to(tensor.device)


def broadcast(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Rank ``src``'s tensor on every rank (a copy; the input when single-process)."""
    if not is_distributed():
        return tensor
    buf = tensor.detach().to(_comm_device(), copy=True)
    dist.broadcast(buf, src)
    return buf.to(tensor.device)


def broadcast_float(value: float) -> float:
    """Rank 0's number on every rank (its clock, for a time budget and the schedule read from it)."""
    if not is_distributed():
        return value
    return float(broadcast(torch.tensor([value], dtype=torch.float64)).item())


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order (``[obj]`` single-process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)  # NCCL: through the current CUDA device
    return box[0]


def all_gather_rows(rows: np.ndarray) -> np.ndarray:
    """Concatenate every rank's int64 rows ``(n_r, d)`` in rank order; ranks may hold different
    ``n_r`` (sizes go first, then rows padded to the largest)."""
    if not is_distributed():
        return rows
    dev = _comm_device()
    local = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64)).to(dev)
    sizes = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([len(local)], dtype=torch.int64, device=dev))
    n = [int(s.item()) for s in sizes]
    padded = torch.zeros((max(n), rows.shape[1]), dtype=torch.int64, device=dev)
    padded[:len(local)] = local
    parts = [torch.empty_like(padded) for _ in n]
    dist.all_gather(parts, padded)
    return torch.cat([p[:k] for p, k in zip(parts, n)]).cpu().numpy()


def broadcast_modules(modules: dict[str, torch.nn.Module]) -> None:
    """Overwrite every rank's parameters and buffers with rank 0's, in place."""
    if not is_distributed():
        return
    with torch.no_grad():
        for name in sorted(modules):
            for t in modules[name].state_dict().values():
                if t.device == _comm_device():
                    dist.broadcast(t, 0)
                else:
                    t.copy_(broadcast(t))


def state_digest(tensors: dict[str, torch.Tensor], meta: Any = None) -> str:
    """A hash of named tensors (+ JSON metadata): ranks compare digests, not whole states."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.numel() else b"")
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return h.hexdigest()


def all_agree(value: Any) -> bool:
    """Whether every rank holds the same (picklable, comparable) ``value``."""
    values = gather_objects(value)
    return all(v == values[0] for v in values)


def seed_rank_stream(seed: int) -> None:
    """Give each rank its own torch random stream once the models are built.

    The models are initialised identically everywhere (same seed; DDP also broadcasts rank 0's
    weights), but dropout masks and sampled negatives must differ between ranks, or N processes
    would draw the same noise for N different batches. Rank 0 keeps the stream of a
    single-process run; rank r > 0 is reseeded from (seed, r), not seed + r, which would collide
    with the seed + 1 streams recipes fork for their own initialisation.
    """
    if is_distributed() and rank() > 0:
        torch.manual_seed(int(np.random.SeedSequence([seed, rank()]).generate_state(1)[0]))


class StepModule(torch.nn.Module):
    """A recipe's models as one module whose ``forward`` is the recipe's training step.

    DDP synchronises gradients of the module it wraps, hooking into its ``forward``; recipes call
    model methods other than ``forward`` (``encode_windows``, ``prefix_nll``, CSA's loss ...), so
    the wrapped forward is the whole training step and every model is a submodule.
    """

    def __init__(self, recipe) -> None:
        super().__init__()
        self.models = torch.nn.ModuleDict(recipe.modules())
        self._recipe = [recipe]  # a list: not registered as a submodule or pickled with the module

    def forward(self, batch: Any, step: int) -> dict[str, torch.Tensor]:
        return self._recipe[0].training_step(batch, step)


def wrap_recipe(recipe) -> torch.nn.Module:
    """DDP around the recipe's training step. Construction broadcasts rank 0's parameters, so
    call it after ``prepare()`` (and a resume) on every rank. Buffers are not re-broadcast each
    step (``broadcast_buffers=False``): they are built from the same data on every rank and
    never change during training."""
    from torch.nn.parallel import DistributedDataParallel

    module = StepModule(recipe)
    device = next(module.parameters()).device
    no_sync = {"forward_sync_buffers": False}  # torch >= 2.13 names it so, and deprecates the old name
    if "forward_sync_buffers" not in inspect.signature(DistributedDataParallel.__init__).parameters:
        no_sync = {"broadcast_buffers": False}
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=recipe.ddp_find_unused_parameters, **no_sync)


def shard_batches(batches: list, sizes: list[int]) -> tuple[list, list[int], int]:
    """This rank's batches ``batches[rank::world]`` after padding the list by wrap-around to a
    multiple of ``world`` (DistributedSampler's rule), so every rank runs the same number of
    steps; also the global number of samples of each step and how many batches were repeated.
    """
    world, r = world_size(), rank()
    if not batches:
        return [], [], 0
    steps = -(-len(batches) // world)
    repeat = steps * world - len(batches)
    order = list(range(len(batches))) + [i % len(batches) for i in range(repeat)]
    global_sizes = [sum(sizes[j] for j in order[s * world:(s + 1) * world]) for s in range(steps)]
    return [batches[j] for j in order[r::world]], global_sizes, repeat
