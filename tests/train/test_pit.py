"""PIT end to end on tiny synthetic data, and the properties the method rests on: the minimum-loss
selection picks the argmin (with the collision charge), a degenerate PIT step is exactly a TIGER
step, the run directory holds the beam index, and decoding returns distinct valid items."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pitrec.config import load_config
from pitrec.data.batches import PAD
from pitrec.index.beam_index import BeamIndex
from pitrec.train.api import build_recipe, prepare_data, train_run
from pitrec.utils.runtime import seed_everything

TINY = [
    "data.format=synthetic", "data.synthetic_users=120", "data.synthetic_items=50", "data.synthetic_clusters=4",
    "data.max_history=6", "embed.encoder=tfidf", "embed.tfidf_dim=16",
    "tokenizer.name=rqkmeans", "tokenizer.levels=2", "tokenizer.codebook_size=4",
    "u2t.d_model=16", "u2t.heads=2", "u2t.encoder_layers=1", "u2t.decoder_layers=1", "u2t.ffn=32", "u2t.max_history=6",
    "csa.dim=16", "csa.mlp_hidden=[16,8,8]", "i2t.d_model=16", "i2t.layers=1", "i2t.ffn=32",
    "train.epochs=4", "train.batch_size=64", "train.lr=0.005", "train.warmup_steps=0",
    "pit.warmup_epochs=2", "pit.beam_width=6", "pit.max_items_per_sid=50",
    "run.progress=false", "run.seed=3", "run.num_threads=1",
]


def tiny_cfg(root, *extra):
    return load_config("pit", overrides=TINY + [f"embed.cache_dir={root / 'cache'}", *extra])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pit")
    cfg = tiny_cfg(root, f"run.out={root / 'run'}")
    return cfg, root / "run", train_run("pit", cfg)


def test_pit_warms_up_then_co_evolves(tiny_run):
    cfg, run, result = tiny_run
    assert result["method"] == "pit" and result["epochs_run"] == 4
    assert result["test"]["users"] == 120 and result["test"]["recall@5"] > 0.15  # chance is 5/50
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["phase"] for e in epochs] == ["warm-up", "warm-up", "co-evolution", "co-evolution"]
    assert all(e["selection_scored_share"] == 0 for e in epochs[:2])
    # from the end of warm-up on, I2T beams add candidates: items own several SIDs
    assert epochs[1]["index"]["sids_per_item_mean"] > 1 and epochs[2]["selection_scored_share"] > 0
    assert 0 <= epochs[1]["refresh_i2t_top1_is_primary"] <= 1  # how well I2T knows the items' SIDs
    for e in epochs:
        assert {"train_u2t", "train_i2t", "train_csa", "codebook_entropy"} <= set(e)
        assert len(e["codebook_entropy"]) == 3  # 2 levels + the disambiguation level


def test_pit_run_directory_and_index_invariants(tiny_run):
    _, run, _ = tiny_run
    for name in ("beam_index/index.json", "sid_stats.json", "sid_stats_warmup.json", "decoding_stats.json",
                 "checkpoint/best/extra.safetensors", "test_metrics.json"):
        assert (run / name).is_file(), name
    index = BeamIndex.load(run / "beam_index")
    assert index.n_items == 50 and (index.sids_per_item() >= 1).all()
    trie = index.to_trie()
    reachable = torch.unique(trie.leaf_items)
    assert torch.equal(reachable, torch.arange(50))  # every item is reachable through some SID
    stats = json.loads((run / "decoding_stats.json").read_text())
    assert stats["test_invalid_beams"] == 0 and stats["test_beams"] > 0


def test_pit_ranker_returns_distinct_valid_items(tiny_run, tmp_path):
    cfg, run, _ = tiny_run
    data, split = prepare_data(cfg)
    recipe = build_recipe("pit", cfg, data, split)
    recipe.train(False)
    history = torch.tensor([[PAD, PAD, 3, 7], [1, 2, 3, 4], [PAD, PAD, PAD, 9]])
    items = recipe.ranker().rank(history, 20)
    assert items.shape == (3, 20)
    for row in items:
        valid = row[row >= 0]
        assert len(valid) == 20 and len(torch.unique(valid)) == 20 and int(valid.max()) < 50
    masked = recipe.ranker().rank(history, 10, exclude_history=True)
    for row, hist in zip(masked, history):
        assert not set(row.tolist()) & set(hist[hist >= 0].tolist())


def test_selection_picks_the_minimum_loss_candidate(tmp_path):
    """A constructed case: three candidate SIDs for one target, scored one by one with sid_nll; the
    batched selection must choose the argmin, and the collision charge must be able to flip it."""
    cfg = tiny_cfg(tmp_path, "pit.warmup_epochs=0", "pit.candidates=3")
    data, split = prepare_data(cfg)
    recipe = build_recipe("pit", cfg, data, split)
    recipe.epoch = 0
    target = 5
    codes = np.array([[0, 0, 0], [1, 2, 0], [3, 3, 0]])
    recipe.index.refresh(np.array([target]), codes[None], np.zeros((1, 3)))
    cand, mask, _ = recipe.index.candidates(np.array([target]), 3)
    assert mask.sum() == 3
    history = torch.tensor([[1, 2, 3]])
    recipe.u2t.eval()
    memory = recipe.u2t.encode(recipe.history_codes[history], history == PAD)
    each = torch.stack([recipe.u2t.sid_nll(memory, torch.from_numpy(c)[None]) for c in cand[0]]).squeeze(1)
    counts = recipe.index.sid_item_counts(cand[0])
    expected = int((each + torch.log(torch.from_numpy(np.maximum(counts, 1)).float())).argmin())
    chosen = recipe.select_sids(memory, torch.tensor([target])).chosen
    assert chosen[0].tolist() == cand[0, expected].tolist()

    # make the cheapest candidate a SID shared by many items: the charge log(n) must move the choice
    best = int(each.argmin())
    others = np.arange(50)[np.arange(50) != target][:40]
    recipe.index.refresh(others, np.repeat(cand[0, best][None, None], len(others), 0), np.zeros((len(others), 1)))
    gap = float((each.sort().values[1] - each.min()).detach())
    if np.log(41) > gap + 1e-6:
        chosen = recipe.select_sids(memory, torch.tensor([target])).chosen
        assert chosen[0].tolist() != cand[0, best].tolist()


@pytest.mark.parametrize("attention, stride, smoothing", [("bidirectional", 1, 0.0), ("causal", 1, 0.0), ("causal", 3, 0.0),
                                                       ("bidirectional", 1, 0.1), ("causal", 3, 0.1)])
def test_degenerate_pit_step_equals_tiger_step(tmp_path, attention, stride, smoothing):
    """CSA off, one candidate, a frozen tokenizer: a PIT step must be a TIGER step, same seed, same
    parameters after (the co-evolution machinery adds nothing when it has nothing to choose).

    Bidirectional: both train per (history, target) pair; causal: both train on prefix windows
    (with ``train.long_history_stride`` the same shared windows)."""
    same = [f"u2t.encoder_attention={attention}", f"train.long_history_stride={stride}", f"u2t.label_smoothing={smoothing}"]
    pit_cfg = tiny_cfg(tmp_path, "pit.csa=false", "pit.candidates=1", "pit.freeze_i2t=true", "pit.warmup_epochs=0", *same)
    def tiger_config(*extra):
        return load_config("tiger", overrides=TINY[:16] + same + ["train.batch_size=64", "train.lr=0.005", "train.warmup_steps=0",
                                                               "run.seed=3", "run.num_threads=1", "run.progress=false",
                                                               f"embed.cache_dir={tmp_path / 'cache'}", *extra])
    tiger_cfg = tiger_config()
    data, split = prepare_data(pit_cfg)
    build_recipe("tiger", tiger_cfg, data, split)  # fills the embedding and SID caches first

    def one_step(name, cfg):
        seed_everything(3)
        recipe = build_recipe(name, cfg, data, split)
        recipe.train(True)
        batch = recipe.train_batches(0, np.random.default_rng([3, 0]))[0]
        opt = torch.optim.AdamW(recipe.param_groups(), lr=0.005, betas=(0.9, 0.98))
        loss = recipe.training_step(batch, 0)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        model = recipe.model if name == "tiger" else recipe.u2t
        if stride > 1:  # long users' targets do share windows here
            from pitrec.train.prefix_windows import PrefixWindows
            assert len(recipe.windows) < len(PrefixWindows(split.train, cfg.data.max_history))
        return loss.item(), {k: v.detach().clone() for k, v in model.state_dict().items()}

    tiger_loss, tiger_params = one_step("tiger", tiger_cfg)
    pit_loss, pit_params = one_step("pit", pit_cfg)
    assert pit_loss == pytest.approx(tiger_loss, abs=1e-6)
    if smoothing:  # and the smoothing reached TIGER's loss (both could otherwise ignore it alike)
        assert abs(one_step("tiger", tiger_config("u2t.label_smoothing=0.0"))[0] - tiger_loss) > 1e-4
    assert tiger_params.keys() == pit_params.keys()
    for k in tiger_params:
        torch.testing.assert_close(pit_params[k], tiger_params[k], rtol=0, atol=1e-6, msg=k)


def test_single_sid_ablation_decodes_one_sid_per_item(tmp_path):
    from pitrec.decoding.pit_ranker import compile_index

    cfg = tiny_cfg(tmp_path)
    data, split = prepare_data(cfg)
    recipe = build_recipe("pit", cfg, data, split)
    recipe.index.refresh(np.arange(50), np.zeros((50, 2, 3), dtype=np.int64) + np.array([[0, 1, 0], [1, 0, 0]]),
                         np.zeros((50, 2)))
    many, _ = compile_index(recipe.index, True, "cpu")
    one, log_q = compile_index(recipe.index, False, "cpu")
    assert len(many.leaf_items) > 50 and len(one.leaf_items) == 50
    assert torch.allclose(log_q.exp(), torch.ones(50), atol=1e-5)


def test_coevolution_keeps_every_sid_naming_one_item(tiny_run):
    """The warm-up table has no shared SIDs (extra disambiguation level); I2T proposals must not
    introduce any (on the demo data they reached 65% of items before proposals were made unique)."""
    _, run, _ = tiny_run
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    coevolving = [e for e in epochs if e["phase"] == "co-evolution"]
    assert coevolving and all(e["primary_collision_rate"] == 0.0 for e in epochs)
    assert any(e.get("refresh_unique_proposals", 0) > 0 for e in epochs)


def _window_case(tmp_path, sids_per_item: int):
    """An untrained causal PIT recipe whose index gives every item ``sids_per_item`` random SIDs,
    and one training batch of windows encoded: (recipe, windows, memory, prefix mask)."""
    cfg = tiny_cfg(tmp_path, "pit.warmup_epochs=0", "pit.candidates=3", "u2t.encoder_attention=causal")
    data, split = prepare_data(cfg)
    recipe = build_recipe("pit", cfg, data, split)
    rng = np.random.default_rng(0)
    recipe.index.refresh(np.arange(50), rng.integers(0, 4, size=(50, sids_per_item, 3)), np.zeros((50, sids_per_item)))
    recipe.train(False)
    w = recipe.windows.batch(recipe.windows.batch_indices(64, np.random.default_rng(1))[0])
    valid = w.items != PAD
    memory = recipe.u2t.encode_windows(recipe.history_codes[w.items.clamp(min=0)], valid)
    mask, _ = recipe.u2t.prefix_mask(valid, w.n_last)
    return recipe, w, memory, mask


def test_windowed_selection_equals_per_pair_selection(tmp_path):
    """The causal encoder's windowed training step must choose, for every prefix of a window, the
    SID that the per-pair rule (the one the service applies) chooses for that history."""
    from pitrec.train.selection import min_loss_sids, min_loss_sids_prefix

    recipe, w, memory, mask = _window_case(tmp_path, sids_per_item=2)
    items, real = w.items, w.targets
    targets = items[:, -w.n_last:]
    chosen, _, multi, _ = min_loss_sids_prefix(recipe.u2t, recipe.index, memory, mask, targets, real, 3)
    assert multi.any()
    rows, cols = torch.nonzero(real, as_tuple=True)
    m = items.shape[1]
    for k, (r, c) in enumerate(zip(rows.tolist(), cols.tolist())):
        hist = items[r:r + 1, :m - w.n_last + c]
        one = recipe.u2t.encode(recipe.history_codes[hist.clamp(min=0)], hist == PAD)
        expected, *_ = min_loss_sids(recipe.u2t, recipe.index, one, targets[r:r + 1, c], 3)
        assert chosen[k].tolist() == expected[0].tolist(), (r, c)


def test_i2t_catalogue_batch_adds_uniform_items_on_their_primary_sids(tmp_path, monkeypatch):
    """pit.i2t_catalogue_batch: I2T's loss covers the step's targets plus that many catalogue items
    on their strongest SIDs, drawn from (seed, step) so a step (and a resumed step) is reproducible."""
    cfg = tiny_cfg(tmp_path, "pit.i2t_catalogue_batch=16")
    seed_everything(3)
    recipe = build_recipe("pit", cfg, *prepare_data(cfg))
    seen = []
    real_loss = recipe.i2t.loss

    def spy(x, codes):
        seen.append(codes.clone())
        return real_loss(x, codes)

    monkeypatch.setattr(recipe.i2t, "loss", spy)
    batch = recipe.train_batches(0, np.random.default_rng(0))[0]
    n_targets = recipe.batch_size_of(batch)
    recipe.training_step(batch, 7)
    recipe.training_step(batch, 7)
    recipe.training_step(batch, 8)
    assert len(seen[0]) == n_targets + 16
    assert torch.equal(seen[0], seen[1]) and not torch.equal(seen[0][-16:], seen[2][-16:])
    primaries = {tuple(c) for c in recipe.index.primary_codes().tolist()}
    assert all(tuple(c) in primaries for c in seen[0][-16:].tolist())


def test_i2t_content_feeds_the_content_embedding_to_item_to_token_in_training_and_serving(tmp_path):
    """pit.i2t_content: I2T reads [sg(X_i); content_i]; the run trains, is served, and a new item
    gets its SIDs through the same input."""
    from pitrec.serve import Recommender

    cfg = tiny_cfg(tmp_path, "pit.i2t_content=true", "train.epochs=3", f"run.out={tmp_path / 'run'}")
    result = train_run("pit", cfg)
    assert result["test"]["recall@5"] > 0.1  # chance is 5/50
    rec = Recommender.load(tmp_path / "run", persist=False)
    m = rec.engine.models
    content_dim = m.csa.item_embedding.content.shape[1]
    assert m.i2t.item_proj.weight.shape[1] == cfg.csa.dim + content_dim
    added = rec.add_item("fresh", title=rec.catalog.texts[0], attributes=[])
    assert added.sids and all(len(s.sid) == len(rec.engine.index.codebook_sizes) for s in added.sids)


@pytest.mark.parametrize("item_content", ["content", "tokenizer_input"])
def test_item_content_chooses_what_x_i_and_i2t_read(tmp_path, item_content):
    """With collaborative SIDs, pit.item_content=tokenizer_input gives CSA (and I2T, with
    i2t_content) exactly the tokenizer's input; the default keeps the text embedding."""
    from pitrec.embed.stage import item_embeddings
    from pitrec.tokenizers.collaborative import tokenizer_input

    cfg = tiny_cfg(tmp_path, "tokenizer.collaborative_dim=4", f"pit.item_content={item_content}",
                   "pit.i2t_content=true")
    data, split = prepare_data(cfg)
    recipe = build_recipe("pit", cfg, data, split)
    content = item_embeddings(cfg, data)
    expected = tokenizer_input(cfg, content, split) if item_content == "tokenizer_input" else content
    stored = recipe.csa.item_embedding.content.cpu().numpy()
    np.testing.assert_allclose(stored, expected, atol=1e-6)
    assert stored.shape[1] == content.shape[1] + (4 if item_content == "tokenizer_input" else 0)
    items = torch.arange(5)
    assert recipe.tokenizer_inputs(items).shape[1] == cfg.csa.dim + stored.shape[1]


def test_bfloat16_selection_picks_a_near_minimum_candidate(tmp_path):
    """Scoring the candidates in bfloat16 may flip a near-tie, never a clear choice: where it picks
    differently from float32, its pick's float32 cost is within 0.1 nats of the minimum."""
    from pitrec.train.selection import min_loss_sids_prefix, selection_cost

    recipe, w, memory, mask = _window_case(tmp_path, sids_per_item=3)
    items, real = w.items, w.targets
    targets = items[:, -w.n_last:]
    exact, _, multi, _ = min_loss_sids_prefix(recipe.u2t, recipe.index, memory, mask, targets, real, 3)
    fast, *_ = min_loss_sids_prefix(recipe.u2t, recipe.index, memory, mask, targets, real, 3, precision="bfloat16")
    assert multi.sum() >= 20 and fast.shape == exact.shape
    rows, cols = torch.nonzero(real, as_tuple=True)
    m = items.shape[1]
    for k in torch.nonzero((fast != exact).any(1)).flatten().tolist():
        hist = items[rows[k]:rows[k] + 1, :m - w.n_last + cols[k]]
        one = recipe.u2t.encode(recipe.history_codes[hist.clamp(min=0)], hist == PAD)
        pair = torch.stack([exact[k], fast[k]])[None]
        cost = selection_cost(recipe.u2t, recipe.index, one, pair, torch.ones(1, 2, dtype=torch.bool))[0]
        assert cost[1] - cost[0] <= 0.1, (k, cost.tolist())
    with pytest.raises(ValueError, match="bfloat16"):
        min_loss_sids_prefix(recipe.u2t, recipe.index, memory, mask, targets, real, 3, precision="half")


@pytest.mark.parametrize("native", [False, True])
def test_auto_selection_precision_scores_in_bfloat16_only_where_the_device_has_native_units(tmp_path, monkeypatch, native):
    """``auto`` is float32 on a CPU without native bfloat16 (AVX2 only: bfloat16 is converted
    there and several times slower) and bfloat16 where oneDNN has kernels for it: the same picks,
    to the bit, as the explicit setting it resolves to."""
    import pitrec.train.selection as selection

    recipe, w, memory, mask = _window_case(tmp_path, sids_per_item=3)
    targets, real = w.items[:, -w.n_last:], w.targets
    monkeypatch.setattr(selection, "native_bfloat16", lambda device_type: native)
    monkeypatch.setattr(selection, "warn_if_slow_bfloat16", lambda *a: False)
    picks = {p: selection.min_loss_sids_prefix(recipe.u2t, recipe.index, memory, mask, targets, real, 3,
                                               precision=p).pick for p in ("auto", "float32", "bfloat16")}
    assert picks["auto"].equal(picks["bfloat16" if native else "float32"])
    assert selection.scoring_precision("auto", "cpu") == ("bfloat16" if native else "float32")


def test_explicit_bfloat16_selection_warns_where_it_is_slower_than_float32(monkeypatch):
    import pitrec.train.selection as selection
    import pitrec.utils.runtime as runtime

    monkeypatch.setattr(runtime, "_SLOW_BFLOAT16_WARNED", set())
    monkeypatch.setattr(runtime, "native_bfloat16", lambda device_type: False)
    with pytest.warns(RuntimeWarning, match="selection_precision.*no native bfloat16"):
        assert selection.scoring_precision("bfloat16", "cpu") == "bfloat16"
    assert selection.scoring_precision("float32", "cpu") == "float32"
    monkeypatch.setattr(runtime, "native_bfloat16", lambda device_type: True)
    monkeypatch.setattr(runtime, "_SLOW_BFLOAT16_WARNED", set())
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert selection.scoring_precision("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(ValueError, match="auto"):
        selection.scoring_precision("half", "cpu")


@pytest.mark.parametrize("new_edges", ["weighted", "below_primary"])
def test_new_edges_below_primary_keeps_every_primary_through_a_refresh(tmp_path, new_edges):
    """After decays every item's weight is below new_edge_weight: by weight I2T's untested
    proposals take primary places, below_primary they are added under the primaries."""
    cfg = tiny_cfg(tmp_path, f"pit.new_edges={new_edges}")
    data, split = prepare_data(cfg)
    recipe = build_recipe("pit", cfg, data, split)
    before = recipe.index.primary_codes().copy()
    recipe.index.decay(0.25)
    churn = recipe.refresh_index()
    assert churn["edges_added"] > 0
    changed = (recipe.index.primary_codes() != before).any(1).mean()
    assert churn["primary_changed"] == pytest.approx(changed)
    assert (changed == 0) if new_edges == "below_primary" else (changed > 0)


def test_resume_reads_the_run_s_sid_table_instead_of_building_the_stage(tmp_path, monkeypatch):
    """A resumed checkpoint was trained on the run's table; a rebuild under another BLAS thread
    count could fit other codes (``pitrec.tokenizers.stage.trained_sid_table``)."""
    cfg = tiny_cfg(tmp_path, f"run.out={tmp_path / 'run'}", "train.epochs=1", "pit.warmup_epochs=1")
    first = train_run("pit", cfg)

    def rebuilt(*args, **kwargs):
        raise AssertionError("the SID stage was built again on resume")

    monkeypatch.setattr("pitrec.tokenizers.stage.sid_table", rebuilt)
    again = train_run("pit", cfg, resume=True)
    metrics = [k for k in first["test"] if k.startswith(("recall@", "ndcg@"))]
    assert metrics and {k: again["test"][k] for k in metrics} == {k: first["test"][k] for k in metrics}
