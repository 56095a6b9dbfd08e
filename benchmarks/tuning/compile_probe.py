"""Does ``torch.compile`` speed up TIGER's training step on CPU? One thread, the same window
batches, eager and compiled steps interleaved (a neighbour's load hits both alike), CPU seconds
per step after 5 untimed rounds.

    python benchmarks/tuning/compile_probe.py

Result and what it means for the trainer: ``benchmarks/tuning/compile_probe.md``.
"""
import time, sys
import numpy as np, torch
from pitrec.config import load_config
from pitrec.train.api import build_recipe, prepare_data
from pitrec.utils.runtime import seed_everything, set_threads
set_threads(1)
cfg = load_config("tiger", overrides=["data.path=../shared/data/amazon2014/beauty", "run.progress=false"])
data = prepare_data(cfg)
seed_everything(0)
rec = build_recipe("tiger", cfg, *data)
batches = rec.train_batches(0, np.random.default_rng(0))
model = rec.model
opt = torch.optim.AdamW(rec.param_groups(), lr=1e-3)
eager_fn = model.prefix_nll
compiled_fn = torch.compile(model.prefix_nll, dynamic=True)
from pitrec.data.batches import PAD
def step(fn, batch):
    w = rec.windows.batch(batch)
    items, targets = w.items, w.targets
    nll = fn(rec.item_codes[items.clamp(min=0)], items != PAD, w.n_last)
    loss = nll[targets].mean()
    opt.zero_grad(); loss.backward(); opt.step()
t0 = time.time()
for b in batches[:3]:
    step(compiled_fn, b)
print("compile warmup s", time.time() - t0, flush=True)
times = {"eager": [], "compiled": []}
for i, b in enumerate(batches[3:43]):
    for name, fn in (("eager", eager_fn), ("compiled", compiled_fn)):
        t = time.process_time(); step(fn, b); times[name].append(time.process_time() - t)
for k, v in times.items():
    print(k, "median cpu s", np.median(v[5:]), "sum", sum(v[5:]))
