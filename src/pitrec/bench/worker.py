"""The child process of one benchmark run: ``python -m pitrec.bench.worker REQUEST.json``.

Each run lives in its own process so that its peak memory is its own (``ru_maxrss`` never goes
down inside a process) and a crash or an out-of-memory kill ends that run only, not the sweep.
The request holds the fully resolved config, so the child decides nothing by itself. A request
with ``redecode`` (overrides of decoding settings) measures the finished run's test again instead
of training (``pitrec.train.evaluate_run.redecode_run``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pitrec.config import config_from_dict
from pitrec.train.api import train_run
from pitrec.train.evaluate_run import redecode_run


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pitrec.bench.worker REQUEST.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    request = json.loads(path.read_text(encoding="utf-8"))
    cfg = config_from_dict(request["config"], source=str(path))
    if request.get("redecode"):
        result = redecode_run(cfg.run.out, request["redecode"])
        print(f"decoded {request['method']} again with {json.dumps(request['redecode'])}: test "
              f"{json.dumps(result['test'])}", flush=True)
        return 0
    result = train_run(request["method"], cfg, resume=bool(request["resume"]))
    print(f"finished {request['method']}: test {json.dumps(result['test'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
