"""``pitrec serve RUN_DIR``: the HTTP service over a trained run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(run_dir: Path = typer.Argument(..., help="a run directory written by `pitrec train`"),
          host: str = typer.Option("127.0.0.1", help="interface to listen on"),
          port: int = typer.Option(8000, min=0, max=65535),
          state_dir: Optional[Path] = typer.Option(None, help="snapshot + update log (default RUN_DIR/serving)"),
          persist: bool = typer.Option(True, help="keep accepted updates across restarts"),
          device: str = typer.Option("cpu", help="cpu | cuda | auto"),
          threads: Optional[int] = typer.Option(None, help="torch threads (default: the run's run.num_threads)"),
          dtype: str = typer.Option("float32", help="float32 | bfloat16: the generator's precision (tiger, pit); "
                                                    "bfloat16 is faster on CPUs with AMX/AVX512-BF16, rankings may differ slightly"),
          max_body_kb: int = typer.Option(1024, min=1, help="largest accepted request body, KiB"),
          compact_every: int = typer.Option(1000, min=1, help="updates between snapshots of the index"),
          max_batch: int = typer.Option(64, min=0, help="concurrent /recommend requests per model pass (0: none)"),
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
                                       compact_every=compact_every, dtype=dtype)
    except (RunDirError, ValueError) as exc:
        fail(str(exc))
    h = recommender.health()
    console.print(f"serving {h.method} from {run_dir}: {h.items:,} items, index version {h.version}")
    uvicorn.run(create_app(recommender, max_body_kb * 1024, max_batch), host=host, port=port, log_level=log_level)
