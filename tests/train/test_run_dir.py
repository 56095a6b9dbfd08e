"""What a finished run directory holds, and that each piece reads back to what was used."""

from __future__ import annotations

import json

from safetensors.torch import load_file

from pitrec.config import config_from_dict
from pitrec.train.api import read_catalog
from pitrec.train.run_dir import RunDir


def test_run_directory_contents(straight_run, tiny_cfg):
    out, result = straight_run
    run = RunDir(out)
    cfg = tiny_cfg(out)

    # config.yaml reloads to the very Config that trained the run
    assert config_from_dict(run.read_config_dict()).to_dict() == cfg.to_dict()

    log = run.metrics()
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert all("valid" in r and r["train_loss"] > 0 for r in log)
    assert log[-1]["best_ndcg@10"] == max(r["valid"]["ndcg@10"] for r in log) == result["best_valid"]

    for which, files in (("latest", {"model.safetensors", "optimizer.safetensors", "state.json"}),
                         ("best", {"model.safetensors", "state.json"})):
        ck = out / "checkpoint" / which
        assert files <= {p.name for p in ck.iterdir()}
        assert any(k.startswith("sasrec.") for k in load_file(str(ck / "model.safetensors")))
    best_state = json.loads((out / "checkpoint" / "best" / "state.json").read_text())
    assert best_state["best_epoch"] == result["best_epoch"]

    assert json.loads(run.test_metrics_path.read_text()) == json.loads(json.dumps(result))
    catalog = read_catalog(out)
    assert len(catalog["item_ids"]) == cfg.data.synthetic_items
    assert len(catalog["user_ids"]) == cfg.data.synthetic_users
    assert not list(out.rglob("*.tmp"))  # every write finished
