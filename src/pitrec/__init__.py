"""pitrec: generative recommendation with a learned, personalized item tokenizer (PIT).

The package is layered as a staged pipeline (see docs/architecture.md):
data -> embed -> tokenizers -> index -> models -> train -> decoding -> eval -> serve -> bench.
"""

import os

# OpenMP threads that spin while waiting make torch 10-20x slower as soon as another process
# wants the same cores (measured: a PIT step took 10.4 s instead of 0.73 s on 2 busy cores). Passive
# waiting costs little on an idle machine and avoids that cliff. It must be set before torch
# loads its OpenMP runtime, hence here; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
