"""``pitrec serve RUN_DIR``: the HTTP service over a trained run directory."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("recommend", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(recommend)


# what ``pitrec recommend`` lets ``--data.KEY=VALUE`` set: how the input file is read
INPUT_KEYS = ("format", "user_col", "item_col", "time_col")
DECODING_HELP = ("a decoding setting of the run's method, as `pitrec eval` takes it, e.g. pit.one_to_many=false "
                 "or tiger.beam_width=30 (repeatable; default: the run's)")

# why a service retains freed memory: benchmarks/results/decode_speed.md, labels *-malloc-*-s32-*
RETAIN_HELP = ("keep freed memory for reuse in this process (pitrec.utils.runtime.retain_freed_memory): beam "
               "search's blocks of a few MiB are not page-faulted in again at every level; served PIT with "
               "explanations, 2 threads, measured 552-624 users/s with it against 513-548 without")


def recommend(ctx: typer.Context,
              run_dir: Path = typer.Argument(..., help="a run directory written by `pitrec train`"),
              input_path: Path = typer.Option(..., "--input", help="interactions: S3-Rec folder, .inter, CSV/TSV or Parquet"),
              out: Path = typer.Option(..., help="output .csv | .tsv | .parquet | .jsonl (user_id, rank, item_id, score)"),
              k: int = typer.Option(10, help="items per user"),
              exclude_history: bool = typer.Option(False, help="never recommend an item of the history the model reads (the last data.max_history items)"),
              ignore_unknown: bool = typer.Option(False, help="drop items the run does not know instead of stopping"),
              explain: bool = typer.Option(False, help="add the SIDs behind each score (generative methods)"),
              batch_size: int = typer.Option(256, min=1, help="users per model pass"),
              device: str = typer.Option("cpu", help="cpu | cuda | auto"),
              threads: Optional[int] = typer.Option(None, help="torch threads (default: the run's run.num_threads)"),
              dtype: str = typer.Option("float32", help="float32 | bfloat16 (tiger, pit)"),
              last_level: Optional[str] = typer.Option(None, help="tiger, pit: model | renormalized, how the last SID "
                                                                    "level is scored (default: the run's tiger/pit.last_level)"),
              decoding: Optional[List[str]] = typer.Option(None, "--decoding", help=DECODING_HELP),
              retain_memory: Optional[bool] = typer.Option(None, "--retain-memory/--no-retain-memory",
                                                           help=RETAIN_HELP + " (default: the run's run.retain_freed_memory)"),
              state_dir: Optional[Path] = typer.Option(None, help="a service's state (snapshot + update log) to answer "
                                                                  "from; default: the trained run as it is")) -> None:
    """Top-k recommendations for every user of an interaction file, from a trained run. The input is
    read like training data (``--data.user_col``, ``--data.item_col``, ``--data.time_col``,
    ``--data.format`` set how), without k-core filtering; the index is not updated."""
    from pitrec.cli import console, fail
    from pitrec.data.errors import DataError
    from pitrec.data.readers import load_interactions
    from pitrec.serve.loader import RunDirError
    from pitrec.serve.offline import output_format, recommend_file
    from pitrec.serve.recommender import Recommender

    update: dict = {"path": str(input_path), "format": "auto", "kcore_users": 0, "kcore_items": 0, "items_file": None}
    for arg in ctx.args:
        key, sep, value = arg.removeprefix("--").partition("=")
        if not sep or not key.startswith("data.") or key[5:] not in INPUT_KEYS:
            fail(f"unknown option {arg!r}: besides the listed options only --data.KEY=VALUE with KEY in "
                 f"{', '.join(INPUT_KEYS)} is accepted")
        update[key[5:]] = value
    try:
        output_format(out)
        recommender = Recommender.load(run_dir, state_dir=state_dir, persist=state_dir is not None, device=device,
                                       threads=threads, dtype=dtype, last_level=last_level,
                                       decoding=decoding or (), retain_memory=retain_memory)
        run_data = recommender.run.cfg.data  # validated again with the input's settings
        data = load_interactions(type(run_data).model_validate({**run_data.model_dump(), **update}))
        summary = recommend_file(recommender, data, out, k, exclude_history, ignore_unknown, explain, batch_size)
    except (RunDirError, DataError, ValueError) as exc:
        fail(str(exc))
    s = summary.as_dict()
    console.print(f"wrote {out}: top-{k} of {s['answered']:,} users ({s['rows']:,} rows), index version {s['index_version']}")
    if s["unknown_items"]:
        console.print(f"dropped {s['unknown_interactions']:,} interactions with {s['unknown_items']:,} unknown item ids")
    if s["skipped_users"]:
        console.print(f"[yellow]{s['skipped_users']:,} users had no known item and got no recommendations; "
                      f"listed in {out}.skipped.txt[/]")


def serve(run_dir: Path = typer.Argument(..., help="a run directory written by `pitrec train`"),
          host: str = typer.Option("127.0.0.1", help="interface to listen on"),
          port: int = typer.Option(8000, min=0, max=65535),
          state_dir: Optional[Path] = typer.Option(None, help="snapshot + update log (default RUN_DIR/serving)"),
          persist: bool = typer.Option(True, help="keep accepted updates across restarts"),
          device: str = typer.Option("cpu", help="cpu | cuda | auto"),
          threads: Optional[int] = typer.Option(None, help="torch threads (default: the run's run.num_threads)"),
          dtype: str = typer.Option("float32", help="float32 | bfloat16: the generator's precision (tiger, pit); "
                                                    "bfloat16 is faster on CPUs with AMX/AVX512-BF16, rankings may differ slightly"),
          last_level: Optional[str] = typer.Option(None, help="tiger, pit: model | renormalized, how the last SID level "
                                                              "is scored (default: the run's tiger/pit.last_level)"),
          decoding: Optional[List[str]] = typer.Option(None, "--decoding", help=DECODING_HELP),
          max_body_kb: int = typer.Option(1024, min=1, help="largest accepted request body, KiB"),
          compact_every: int = typer.Option(1000, min=1, help="updates between snapshots of the index"),
          max_batch: int = typer.Option(64, min=0, help="concurrent /recommend requests per model pass (0: none)"),
          retain_memory: bool = typer.Option(True, "--retain-memory/--no-retain-memory",
                                             help=RETAIN_HELP + " (default on: the service is a process of its own)"),
          log_level: str = typer.Option("info")) -> None:
    """Serve a trained run: POST /recommend, /recommend/batch, /items, /feedback; GET /items/{id},
    /health, /stats (OpenAPI at /docs)."""
    import uvicorn

    from pitrec.cli import console, fail
    from pitrec.serve.app import create_app
    from pitrec.serve.loader import RunDirError
    from pitrec.serve.recommender import Recommender

    try:
        recommender = Recommender.load(run_dir, state_dir=state_dir, persist=persist, device=device, threads=threads,
                                       compact_every=compact_every, dtype=dtype, last_level=last_level,
                                       decoding=decoding or (), retain_memory=retain_memory)
    except (RunDirError, ValueError) as exc:
        fail(str(exc))
    h = recommender.health()
    console.print(f"serving {h.method} from {run_dir}: {h.items:,} items, index version {h.version}")
    uvicorn.run(create_app(recommender, max_body_kb * 1024, max_batch), host=host, port=port, log_level=log_level)
