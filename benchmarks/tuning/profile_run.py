"""Where a real training epoch spends its time: py-spy samples a running bench worker, then the
samples are summed by the step's parts (U2T forward, selection, CSA, I2T, index record, backward,
optimizer).

    python benchmarks/tuning/profile_run.py record RUN_DIR --seconds 180 [--out FILE]
    python benchmarks/tuning/profile_run.py summary FILE [FILE...]   # py-spy raw output, or .gz of it

``step_cost.py`` times interleaved steps built from a run's final state; that measured the
auxiliary losses as the floor of PIT's extra cost, yet real warm-up epochs cost less than it said
(``aux_share_beauty.md``). This profiles the epoch itself, in the run, with its neighbour: py-spy
runs out of process and ``--nonblocking`` never pauses the worker. The worker is found by its
``bench_request.json`` path on the command line. Needs ``py-spy`` (``pip install py-spy``).

Parts are inclusive and matched on Python frames (file:function), in the order listed: a sample
counts for the first part whose frame is on its stack, so the shares add up to 100%. Autograd's
backward pass runs in C++ under ``Tensor.backward`` and cannot be split by module from Python
frames; it is one part.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import subprocess
import sys
from pathlib import Path

# (part, frame substring) in matching order: nested parts before the parts that call them
PARTS = [
    ("backward", "backward (torch/_tensor.py"),
    ("optimizer step", "step (torch/optim/"),
    ("grad clipping", "clip_per_module"),
    ("selection: candidate scoring", "min_loss_sids"),
    ("index: record selections", "_record (pitrec/train/recipes/pit.py"),
    ("CSA loss", "loss (pitrec/models/csa.py"),
    ("I2T loss", "loss (pitrec/models/item_to_token.py"),
    ("aux subset draw", "_aux_subset"),
    ("X_i for I2T (item embedding)", "item_vectors"),
    ("U2T encoder", "encode_windows"),
    ("U2T decoder loss", "_nll (pitrec/models/user_to_token.py"),
    ("windows batch", "batch (pitrec/train/prefix_windows.py"),
    ("training step, other", "training_step"),
    ("index refresh (epoch end)", "refresh_index"),
    ("epoch end, other", "on_epoch_end"),
    ("evaluation", "pitrec/eval/"),
    ("trainer, other", "fit (pitrec/train/trainer.py"),
]


def find_worker(run_dir: Path) -> int:
    request = str(run_dir / "bench_request.json")
    out = subprocess.run(["pgrep", "-f", f"pitrec.bench.worker {request}"], capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split()]
    if len(pids) != 1:
        sys.exit(f"expected one worker for {request}, found {pids or 'none'}")
    return pids[0]


def record(run_dir: Path, seconds: int, out: Path, rate: int) -> None:
    pid = find_worker(run_dir)
    cmd = ["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(rate),
           "--nonblocking", "--format", "raw", "--output", str(out)]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def summarise(path: Path) -> tuple[int, collections.Counter]:
    """Samples per part from py-spy's collapsed stacks (``frame;frame;... COUNT``)."""
    parts: collections.Counter = collections.Counter()
    total = 0
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        part = next((name for name, needle in PARTS if needle in stack), "other")
        parts[part] += n
    return total, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("run_dir", type=Path)
    rec.add_argument("--seconds", type=int, default=180)
    rec.add_argument("--rate", type=int, default=50)
    rec.add_argument("--out", type=Path)
    summ = sub.add_parser("summary")
    summ.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "record":
        out = args.out or args.run_dir / "pyspy.txt"
        record(args.run_dir, args.seconds, out, args.rate)
        args.files = [out]
    names = [name for name, _ in PARTS] + ["other"]
    tables = [(f, *summarise(f)) for f in args.files]
    print("| part | " + " | ".join(f"`{f}`" for f, _, _ in tables) + " |")
    print("|---|" + "---:|" * len(tables))
    for name in names:
        if any(parts[name] for _, _, parts in tables):
            print(f"| {name} | " + " | ".join(f"{100 * parts[name] / max(1, total):.1f}%" for _, total, parts in tables)
                  + " |")
    print("| samples | " + " | ".join(f"{total:,}" for _, total, _ in tables) + " |")


if __name__ == "__main__":
    main()
