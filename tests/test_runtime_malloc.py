"""The allocator setting (run.retain_freed_memory): it takes effect where it can, it cuts the page
faults of beam search, and it never changes a result."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import textwrap

import pytest

from pitrec.config import load_config
from pitrec.utils.runtime import retain_freed_memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# A TIGER-sized generator (random weights) decodes 4 batches of 128 users with beam 20 over a
# 3 x 256 catalog of 8,000 SIDs, after one warm-up batch; prints the minor page faults of each
# batch and the decoded SIDs. One batch's count is noisy on a busy machine (with glibc's default
# one batch took 1,307 faults where its neighbours took 4,000-24,000; with freed memory retained
# one took 667 where the others took 23-28), so the test compares medians over the batches.
CHILD = textwrap.dedent("""
    import json, resource, sys
    import numpy as np, torch
    from pitrec.utils.runtime import retain_freed_memory
    took = retain_freed_memory(sys.argv[1] == "retain")
    from pitrec.index.trie import Trie
    from pitrec.models.user_to_token import UserToToken, UserToTokenConfig
    torch.set_num_threads(1)
    torch.manual_seed(0)
    sizes = [256, 256, 256]
    model = UserToToken(sizes, UserToTokenConfig()).eval()
    codes = np.unique(np.random.default_rng(0).integers(0, 256, (8000, 3)), axis=0)
    trie = Trie.build(codes, sizes)
    g = torch.Generator().manual_seed(1)
    hist = torch.stack([torch.randint(0, 256, (128, 20), generator=g) for _ in sizes], -1)
    pad = torch.zeros(128, 20, dtype=torch.bool)
    out = []
    with torch.no_grad():
        model.generate(model.encode(hist, pad), 20, trie)  # warm-up: the heap grows once
        faults = []
        for _ in range(4):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            out.append(model.generate(model.encode(hist, pad), 20, trie).leaves.tolist())
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"took": took, "faults": faults, "leaves": out}))
""")


def _decode(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_disabled_sets_nothing():
    assert retain_freed_memory(False) is False


@pytest.mark.parametrize("setting", [True, False])
def test_configure_process_applies_the_run_setting(monkeypatch, setting):
    import pitrec.utils.runtime as runtime

    asked = []
    monkeypatch.setattr(runtime, "retain_freed_memory", lambda enabled: asked.append(enabled))
    monkeypatch.setattr(runtime, "set_threads", lambda n: asked.append(("threads", n)))
    cfg = load_config(overrides=[f"--run.retain_freed_memory={str(setting).lower()}", "--run.num_threads=1"])
    runtime.configure_process(cfg.run)
    assert asked == [("threads", 1), setting]
    assert load_config().run.retain_freed_memory is False  # process-wide and not measurably faster: opt-in


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_retained_memory_cuts_beam_search_page_faults_and_changes_no_result():
    default, retained = _decode("default"), _decode("retain")
    assert (default["took"], retained["took"]) == (False, True)
    assert retained["leaves"] == default["leaves"]
    median_retained, median_default = statistics.median(retained["faults"]), statistics.median(default["faults"])
    assert median_retained < median_default / 4, (retained["faults"], default["faults"])
