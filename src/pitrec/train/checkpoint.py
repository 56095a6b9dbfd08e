"""Checkpoints as safetensors (tensors) + JSON (everything else), written atomically.

A checkpoint is a directory: ``model.safetensors`` (all modules, keys prefixed by module name),
``optimizer.safetensors`` + the optimizer's non-tensor state in ``state.json``, ``extra.safetensors``
for recipe state such as SID tables or the beam index, and ``state.json`` (epoch, step, best
metric, RNG states, ...). The whole directory is swapped in at once, so a crash mid-save leaves
the previous checkpoint intact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pitrec.utils.io import atomic_dir


def _flatten_modules(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    out = {}
    for name, mod in modules.items():
        for key, value in mod.state_dict().items():
            out[f"{name}.{key}"] = value.detach().cpu().contiguous()
    return out


def _optimizer_split(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_join(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for flat, value in list(tensors.items()) + list(meta.get("scalars", {}).items()):
        pid, key = flat.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: str | Path, modules: dict[str, torch.nn.Module], state: dict,
                    optimizer: torch.optim.Optimizer | None = None,
                    extra_tensors: dict[str, torch.Tensor] | None = None) -> None:
    with atomic_dir(path) as tmp:
        save_file(_flatten_modules(modules), str(tmp / "model.safetensors"))
        state = dict(state)
        if optimizer is not None:
            tensors, meta = _optimizer_split(optimizer)
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            state["optimizer"] = meta
        if extra_tensors:
            save_file({k: v.detach().cpu().contiguous() for k, v in extra_tensors.items()}, str(tmp / "extra.safetensors"))
        (tmp / "state.json").write_text(json.dumps(state, indent=1, default=_json_default) + "\n")


def load_checkpoint(path: str | Path, modules: dict[str, torch.nn.Module],
                    optimizer: torch.optim.Optimizer | None = None, strict: bool = True) -> tuple[dict, dict[str, torch.Tensor]]:
    """Load into ``modules`` (and ``optimizer``); returns (state, extra_tensors)."""
    path = Path(path)
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint (no state.json)")
    flat = load_file(str(path / "model.safetensors"))
    for name, mod in modules.items():
        prefix = name + "."
        sub = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
        missing, unexpected = mod.load_state_dict(sub, strict=False)
        if strict and (missing or unexpected):
            raise RuntimeError(f"checkpoint {path} does not match module {name!r}: missing {missing}, unexpected {unexpected}")
    state = json.loads((path / "state.json").read_text())
    if optimizer is not None and (path / "optimizer.safetensors").is_file():
        optimizer.load_state_dict(_optimizer_join(load_file(str(path / "optimizer.safetensors")), state["optimizer"]))
    extra = load_file(str(path / "extra.safetensors")) if (path / "extra.safetensors").is_file() else {}
    return state, extra


def _json_default(obj):
    if torch.is_tensor(obj):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
