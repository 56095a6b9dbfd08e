"""Reproducibility and the facts every result records (git sha, machine, peak memory)."""

from __future__ import annotations

import functools
import os
import platform
import random
import resource
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_threads(num_threads: int | None) -> None:
    """Pin intra-op threads: on 2 cores, oversubscription costs more than it gives."""
    import torch

    if num_threads and num_threads > 0:
        torch.set_num_threads(num_threads)


_SLOW_BFLOAT16_WARNED: set[str] = set()


@functools.lru_cache(maxsize=None)
def native_bfloat16(device_type: str) -> bool:
    """Whether bfloat16 matrix products run on units made for them here, so that reduced precision
    buys speed: on a CPU, oneDNN's bfloat16 kernels (AVX512 with or without BF16, AMX); on CUDA, a
    GPU that supports bfloat16. A CPU with AVX2 only has neither, and PyTorch converts instead: on
    the 2-core AMD EPYC of stop 46 a (2048x128) x (128x256) product took 12x float32's time in
    bfloat16 (benchmarks/tuning/bfloat16_probe.py), and PIT's selection scoring in bfloat16 made a
    co-evolution step 1.84x a TIGER step against 1.27x in float32 (benchmarks/results/step_cost.md)."""
    import torch

    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device_type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a build without oneDNN: no fast path either
            return False
    return False


def warn_if_slow_bfloat16(device_type: str, what: str) -> bool:
    """Warn (once per device type and purpose) that ``what`` was asked to run in bfloat16 on a
    device without native bfloat16, where it is slower than float32, not faster. Returns whether
    it warned."""
    key = f"{device_type}:{what}"
    if native_bfloat16(device_type) or key in _SLOW_BFLOAT16_WARNED:
        return False
    _SLOW_BFLOAT16_WARNED.add(key)
    import torch

    which = f"a CPU with {torch.backends.cpu.get_cpu_capability()}" if device_type == "cpu" else f"this {device_type} device"
    warnings.warn(f"{what} runs in bfloat16 on {which}, which has no native bfloat16 units: several times "
                  f"slower than float32 there ('auto', where offered, picks float32 on such a machine)",
                  RuntimeWarning, stacklevel=3)
    return True


@contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` for a block, the previous setting restored after.

    Some CPU ops accumulate in an order that depends on how threads are scheduled when run with
    more than one: the backward of indexing a parameter by a tensor (``index_put_`` with
    accumulate) among them. The RQ-VAE fit indexes its codebooks that way, and with two threads
    two processes fitting the same seed on beauty gave 98-99% different codes. With this mode on
    they gave the same codes, at the same speed. CUDA needs more than this flag (cuBLAS raises
    without ``CUBLAS_WORKSPACE_CONFIG``), so callers enable it for CPU work only."""
    import torch

    before, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def retain_freed_memory(enabled: bool = True, mmap_threshold: int = 32 << 20,
                        trim_threshold: int = 1 << 30) -> bool:
    """Let glibc keep freed memory for reuse instead of handing it back to the kernel.

    Beam search allocates and frees blocks of a few MiB at every level (the KV cache reordered,
    the scores of every beam); under glibc's defaults those come from fresh mmaps that the
    kernel must zero, so a batch of 256 users faults in 20,000-45,000 pages. With blocks up to
    ``mmap_threshold`` served from the heap and the heap trimmed only past ``trim_threshold``
    free bytes, the faults fall 20-90x and the kernel time with them, but the user time rose
    about as much in our probes: decoding and training CPU time stayed within noise
    (benchmarks/tuning/malloc_decode.md, epoch_profile_beauty.md). It is a process-wide
    switch, so it stays off unless a run asks for it. Returns whether the setting took effect:
    False when ``enabled`` is off or the C library is not glibc (nothing to set there)."""
    if not enabled or not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def configure_process(run_cfg, threads: int | None = None, retain_memory: bool | None = None) -> None:
    """What every entry point that trains, evaluates or decodes sets first, from the run section:
    torch's thread count and the allocator's setting (``run.retain_freed_memory``); ``threads``
    and ``retain_memory`` override the run's values where given (a service's own choice)."""
    set_threads(run_cfg.num_threads if threads is None else threads)
    retain_freed_memory(run_cfg.retain_freed_memory if retain_memory is None else retain_memory)


def resolve_device(name: str) -> "torch.device":  # noqa: F821
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} was asked for but CUDA is not available on this machine")
    return dev


_RESULTS_DIR = "benchmarks/results"


def git_sha(cwd: str | os.PathLike | None = None) -> str:
    """The checkout's commit (``-dirty`` with uncommitted changes). ``PITREC_GIT_SHA`` names it
    instead, for a copy of the tree without ``.git`` (a container, a lent GPU machine), whose
    results would otherwise say ``unknown``.

    Changes under ``benchmarks/results/`` do not count as dirty: runs finishing beside a starting
    one rewrite those files, and they are outputs, not what produced the run."""
    if os.environ.get("PITREC_GIT_SHA"):
        return os.environ["PITREC_GIT_SHA"]
    cwd = Path(cwd or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)" + _RESULTS_DIR],
            cwd=cwd, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info() -> dict:
    import torch

    info = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processor": _cpu_model(),
        # two VMs both named "AMD EPYC" differ in what matters: on one, bfloat16 decoding ran 1.7x
        # faster than float32 (decode_speed.md's -epyc rows); the other has AVX2 only, and bfloat16
        # products ran 5-12x slower there (docs/precision.md)
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bfloat16": native_bfloat16("cpu"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_summary() -> str:
    m = machine_info()
    units = m["cpu_capability"] + (", bfloat16 units" if m["native_bfloat16"] else "")
    s = f"{m['processor']} ({units}), {m['cpu_count']} cores ({m['torch_threads']} torch threads), torch {m['torch']}"
    if "gpu" in m:
        s += f", GPU {m['gpu']}"
    return s


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@contextmanager
def timed() -> Iterator[dict]:
    """``with timed() as t: ...`` then ``t['seconds']``."""
    out: dict = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - start
