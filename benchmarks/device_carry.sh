#!/usr/bin/env bash
# Prepares .devcarry/ (git-ignored through .git/info/exclude) for a GPU machine that has its own
# PyTorch but no network, no pitrec dependencies beyond its image and no MiniLM package:
#   - wheels of pydantic and its needs for that machine's Python (3.12 by default);
#   - the beauty dataset (the machine cannot see ../shared);
#   - the MiniLM content embeddings that the sentence-transformers stage cached here, as .npy
#     (passed as EMBED_NPY: the same vectors, so the SID cache keys are unchanged);
#   - the SID tables cached for the CF-SID runs of seeds 0-2, so no tokenizer is fitted there.
# Then, on the machine (one command; carry .devcarry):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .devcarry/whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD/src PITREC_GIT_SHA=<commit> PITREC="python3 -m pitrec.cli" \
#     EMBED_NPY=.devcarry/beauty_minilm.npy BEAUTY=.devcarry/beauty HF_HUB_OFFLINE=1
#   mkdir -p .cache/pitrec && cp -r .devcarry/cache/sids .cache/pitrec/
#   MINUTES=4 DEADLINE=540 bash benchmarks/device_gpu.sh /tmp/o
# Run this here after the CPU runs have filled the caches (a beauty run of tiger/cf-sids per seed).
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
TARGET_PY=${TARGET_PY:-3.12}
DATA=${DATA:-../shared/data/amazon2014/beauty}
mkdir -p .devcarry/whl .devcarry/cache/sids
grep -qx "/.devcarry/" .git/info/exclude 2>/dev/null || echo "/.devcarry/" >>.git/info/exclude
versions=$($PY -c "import importlib.metadata as m; print(' '.join(f'{p}=={m.version(p)}' for p in
  ('pydantic', 'pydantic_core', 'annotated-types', 'typing-inspection', 'typing_extensions')))")
# shellcheck disable=SC2086
$PY -m pip download -q --no-deps --only-binary=:all: --python-version "$TARGET_PY" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .devcarry/whl $versions
rm -rf .devcarry/beauty && cp -r "$DATA" .devcarry/beauty
$PY - "$DATA" <<'EOF'
"""Copy the cached embeddings and the CF-SID tables of seeds 0-2 that the beauty runs use."""
import shutil
import sys
from pathlib import Path

import numpy as np

from pitrec.config import load_config
from pitrec.embed.stage import item_embeddings
from pitrec.tokenizers.collaborative import tokenizer_input
from pitrec.tokenizers.stage import sid_cache_key
from pitrec.train.api import prepare_data

cfg = load_config("tiger", overrides=[f"data.path={sys.argv[1]}", "tokenizer.collaborative_dim=64",
                                      "embed.fallback_to_tfidf=false", "run.progress=false"])
data, split = prepare_data(cfg)
vectors = item_embeddings(cfg, data)
np.save(".devcarry/beauty_minilm.npy", vectors)
cache = Path(cfg.embed.cache_dir) / "sids"
for seed in (0, 1, 2):
    seeded = cfg.with_overrides([f"run.seed={seed}"])
    key = sid_cache_key(seeded.tokenizer, seed, data, tokenizer_input(seeded, vectors, split))
    if not (cache / key).is_dir():
        sys.exit(f"no cached CF-SID table for seed {seed} ({cache / key}): train tiger/cf-sids seed {seed} here first")
    shutil.copytree(cache / key, Path(".devcarry/cache/sids") / key, dirs_exist_ok=True)
print(f"embeddings {vectors.shape}, SID tables of seeds 0-2 copied")
EOF
du -sh .devcarry
