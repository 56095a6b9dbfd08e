"""TIGER end to end on tiny synthetic data: stages -> training -> constrained beam search ->
item-level evaluation -> run directory, in seconds."""

from __future__ import annotations

import json

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
import torch

from pitrec.config import load_config
from pitrec.data.batches import PAD
from pitrec.train.api import prepare_data, train_run

TINY = [
    "data.format=synthetic", "data.synthetic_users=120", "data.synthetic_items=50", "data.synthetic_clusters=4",
    "data.max_history=6", "embed.encoder=tfidf", "embed.tfidf_dim=16",
    "tokenizer.name=rqkmeans", "tokenizer.levels=2", "tokenizer.codebook_size=4",
    "u2t.d_model=16", "u2t.heads=2", "u2t.encoder_layers=1", "u2t.decoder_layers=1", "u2t.ffn=32", "u2t.max_history=6",
    # a constant rate: the recipe's cosine would spend half of these 4 epochs at a low rate
    "train.epochs=4", "train.batch_size=64", "train.lr=0.005", "train.warmup_steps=0", "train.lr_schedule=constant",
    "tiger.beam_width=6", "run.progress=false", "run.seed=3", "run.num_threads=1",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiger")
    cfg = load_config("tiger", overrides=TINY + [f"embed.cache_dir={root / 'cache'}", f"run.out={root / 'run'}"])
    threads = torch.get_num_threads()
    try:
        result = train_run("tiger", cfg)
    finally:
        torch.set_num_threads(threads)
    return cfg, root / "run", result


def test_tiger_trains_and_evaluates_on_items(tiny_run):
    cfg, run, result = tiny_run
    assert result["method"] == "tiger" and result["epochs_run"] == 4
    for k in cfg.eval.ks:
        assert 0.0 <= result["test"][f"ndcg@{k}"] <= result["test"][f"recall@{k}"] <= 1.0
    assert result["test"]["users"] == 120
    # 50 items in 4 planted clusters: four epochs beat chance (recall@5 = 5/50) clearly
    assert result["test"]["recall@5"] > 0.25
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 4 and epochs[3]["train_loss"] < epochs[0]["train_loss"]


def test_tiger_run_directory_holds_its_artifacts(tiny_run):
    _, run, _ = tiny_run
    for name in ("config.yaml", "sid_table.json", "sid_stats.json", "test_metrics.json", "decoding_stats.json",
                 "checkpoint/best/model.safetensors", "checkpoint/latest/extra.safetensors"):
        assert (run / name).is_file(), name
    stats = json.loads((run / "decoding_stats.json").read_text())
    assert stats["constrained"] and stats["test_beams"] > 0
    assert stats["test_invalid_beams"] == 0 and stats["test_invalid_rate"] == 0.0


def test_tiger_ranker_returns_distinct_catalogue_items(tiny_run):
    from pitrec.train.api import build_recipe

    cfg, _, _ = tiny_run
    data, split = prepare_data(cfg)
    recipe = build_recipe("tiger", cfg.with_overrides({"run": {"out": None}}), data, split)
    recipe.train(False)
    history = torch.tensor([[PAD, PAD, 3, 4], [1, 2, 3, 4], [PAD, PAD, PAD, 7]])
    ranker = recipe.ranker()
    top = ranker.rank(history, 20)
    assert top.shape == (3, 20)
    for row in top.tolist():
        real = [i for i in row if i >= 0]
        assert len(real) == len(set(real)) and all(i < split.n_items for i in real)
        assert row[:len(real)] == real  # -1 only as padding at the end
    masked = ranker.rank(history, 20, exclude_history=True)
    assert not (masked.unsqueeze(2) == history.clamp(min=0).unsqueeze(1))[history.unsqueeze(1).expand(-1, 20, -1) >= 0].any()
    assert ranker.invalid == 0


def test_unconstrained_decoding_counts_invalid_sids(tiny_run):
    from pitrec.train.api import build_recipe

    cfg, _, _ = tiny_run
    # 2 levels x 6 codes without a disambiguation level: a beam of 36 holds every combination, so
    # exactly the combinations that are no item's SID are invalid
    cfg = cfg.with_overrides({"run": {"out": None}, "tokenizer": {"collision": "keep", "codebook_size": 6},
                              "tiger": {"constrained": False, "beam_width": 36, "last_level": "model"}})
    data, split = prepare_data(cfg)
    recipe = build_recipe("tiger", cfg, data, split)
    recipe.train(False)
    n_sids = recipe.trie.n_leaves
    assert n_sids < 36
    ranker = recipe.ranker()
    ranker.rank(torch.tensor([[1, 2, 3], [4, 5, 6]]), 20)
    assert ranker.beams == 72 and ranker.invalid == 2 * (36 - n_sids)
    recipe.cfg = cfg.with_overrides({"tiger": {"constrained": True}})
    constrained = recipe.ranker()
    constrained.rank(torch.tensor([[1, 2, 3], [4, 5, 6]]), 20)
    assert constrained.beams == 2 * n_sids and constrained.invalid == 0


def test_resume_refuses_a_different_sid_table(tiny_run):
    from pitrec.train.api import build_recipe

    cfg, run, _ = tiny_run
    data, split = prepare_data(cfg)
    recipe = build_recipe("tiger", cfg.with_overrides({"run": {"out": None}}), data, split)
    tensors, _ = recipe.extra_state()
    recipe.load_extra_state(tensors, {})  # same table: fine
    other = {"sid_codes": torch.flip(tensors["sid_codes"], [0])}
    with pytest.raises(ValueError, match="different SID table"):
        recipe.load_extra_state(other, {})


def test_prefix_windows_hold_exactly_the_prefix_samples_pairs():
    import numpy as np

    from pitrec.data.batches import PrefixSamples
    from pitrec.train.prefix_windows import PrefixWindows

    rng = np.random.default_rng(0)
    train = [rng.integers(0, 30, size=n) for n in (0, 1, 2, 5, 7, 12, 3)]
    max_history = 4
    samples = PrefixSamples(train, max_history)
    expected = sorted((tuple(h[h != PAD].tolist()), t) for h, t in zip(samples.history, samples.target.tolist()))
    windows = PrefixWindows(train, max_history)
    assert windows.total_targets() == len(samples)
    batches = windows.batch_indices(5, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(windows)))  # each window once
    assert sorted(_window_pairs(windows)) == expected


def _window_pairs(windows, batch_targets: int = 5) -> list[tuple[tuple[int, ...], int, int]]:
    """(history, target, position of the target in its user's sequence) of every training pair."""
    import numpy as np

    got = []
    for idx in windows.batch_indices(batch_targets, np.random.default_rng(1)):
        b = windows.batch(idx)
        m = b.items.shape[1]
        for row, mask in zip(b.items.tolist(), b.targets.tolist()):
            got += [(tuple(i for i in row[:j] if i != PAD), row[j]) for j in range(m - b.n_last, m)
                    if mask[j - (m - b.n_last)]]
    return got


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 25), min_size=1, max_size=8), max_history=st.integers(1, 6), data=st.data())
def test_long_history_stride_trains_every_target_once_on_a_suffix_of_its_history(lengths, max_history, data):
    """Stride k: the same targets as the exact windows, each once; each history is the exact
    one's last items, at least max_history - k + 1 of them; stride 1 is exact."""
    import collections

    import numpy as np

    from pitrec.train.prefix_windows import PrefixWindows

    stride = data.draw(st.integers(1, max_history), label="stride")
    # distinct items, so a (history, target) pair names its position in its user's sequence
    train = [np.arange(n) + 100 * u for u, n in enumerate(lengths)]
    exact = PrefixWindows(train, max_history)
    assume(exact.total_targets() > 0)  # (recipes refuse data without a training pair)
    strided = PrefixWindows(train, max_history, stride)
    assert strided.total_targets() == exact.total_targets() and len(strided) <= len(exact)
    exact_pairs, got = _window_pairs(exact), _window_pairs(strided)
    want = {t: h for h, t in exact_pairs}
    assert collections.Counter(t for _, t in got) == collections.Counter(t for _, t in exact_pairs)
    for history, target in got:
        full = want[target]
        assert full[len(full) - len(history):] == history  # a suffix of the exact history
        assert len(history) >= min(len(full), max_history - stride + 1)
        if stride == 1 or len(full) < max_history:  # exact, and short users' histories always are
            assert history == full


def test_long_history_stride_shortens_long_users_histories_and_checks_its_range():
    import numpy as np

    from pitrec.train.prefix_windows import PrefixWindows

    train = [np.arange(30), np.arange(3) + 100]
    pairs = _window_pairs(PrefixWindows(train, 4, 3))
    # targets 5..28 in threes see 2, 3, 4 items; target 29 alone sees 4; the short user is exact
    assert sorted(len(h) for h, t in pairs if 5 <= t < 100) == [2] * 8 + [3] * 8 + [4] * 9
    assert sorted(len(h) for h, t in pairs if t >= 100) == [1, 2]
    with pytest.raises(ValueError, match="long_history_stride must lie in"):
        PrefixWindows(train, 4, 5)


def test_long_history_stride_needs_a_causal_encoder(tmp_path):
    from pitrec.train.api import build_recipe

    cfg = load_config("tiger", overrides=TINY + [f"embed.cache_dir={tmp_path / 'cache'}", "u2t.encoder_attention=bidirectional",
                                                 "train.long_history_stride=2"])
    data, split = prepare_data(cfg)
    with pytest.raises(ValueError, match="long_history_stride needs a causal encoder"):
        build_recipe("tiger", cfg, data, split)


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_both_encoders_train_on_every_prefix_pair(tmp_path, attention):
    """causal: PrefixWindows + prefix_nll; bidirectional (TIGER's): one encoder pass per pair."""
    cfg = load_config("tiger", overrides=TINY + [f"embed.cache_dir={tmp_path / 'cache'}",
                                                 f"u2t.encoder_attention={attention}", "train.epochs=1"])
    threads = torch.get_num_threads()
    try:
        result = train_run("tiger", cfg)
    finally:
        torch.set_num_threads(threads)
    assert result["steps"] >= 1 and 0.0 <= result["test"]["ndcg@10"] <= 1.0
    from pitrec.train.api import build_recipe
    import numpy as np

    data, split = prepare_data(cfg)
    recipe = build_recipe("tiger", cfg, data, split)
    batches = recipe.train_batches(0, np.random.default_rng(0))
    assert sum(recipe.batch_size_of(b) for b in batches) == split.n_train_targets()
    assert torch.isfinite(recipe.training_step(batches[0], 0)["loss"])


def test_new_tiger_runs_renormalize_the_last_level_and_older_runs_keep_their_rule():
    from pitrec.config import ConfigError, config_from_dict

    assert load_config("tiger").tiger.last_level == "renormalized"
    # a run directory written before this default has no key: it reads as the rule it was measured with
    assert config_from_dict({"tiger": {"beam_width": 20, "constrained": True}}).tiger.last_level == "model"
    with pytest.raises(ConfigError, match="set tiger.last_level=model as well"):
        load_config("tiger", overrides=["tiger.constrained=false"])
    assert not load_config("tiger", overrides=["tiger.constrained=false", "tiger.last_level=model"]).tiger.constrained
