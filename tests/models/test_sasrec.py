"""SASRec's structural guarantees: causality, padding invariance, ignored padding targets, and
the training windows / length buckets of its recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pitrec.data.batches import PAD
from pitrec.models.sasrec import SASRec, SASRecConfig
from pitrec.train.recipes.sasrec import length_bucketed_batches, training_windows

N_ITEMS = 30


VARIANTS = {
    "tied": {"tie_output": True},
    "untied": {"tie_output": False},
    # RecBole's layout: LayerNorm on the input, post-LN blocks, no sqrt(d) scale, tied output
    "recbole": {"tie_output": True, "input_norm": True, "norm_first": False, "scale_embeddings": False},
}


@pytest.fixture(params=list(VARIANTS))
def model(request) -> SASRec:
    torch.manual_seed(0)
    return SASRec(N_ITEMS, SASRecConfig(hidden=16, layers=2, heads=2, ffn=32, max_len=12, dropout=0.3,
                                        attn_dropout=0.3, **VARIANTS[request.param])).eval()


def _histories(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, N_ITEMS, size=(batch, length)))


@torch.no_grad()
def test_changing_a_later_item_leaves_earlier_positions_unchanged(model: SASRec) -> None:
    seq = _histories(3, 8)
    base = model(seq)
    for t in range(1, 8):
        changed = seq.clone()
        changed[:, t] = (changed[:, t] + 7) % N_ITEMS
        out = model(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-5)
        assert not torch.allclose(out[:, t], base[:, t]), f"position {t} ignores its own item"


@torch.no_grad()
def test_extra_left_padding_does_not_change_the_scores(model: SASRec) -> None:
    seq = _histories(4, 5)
    seq[0, :3] = PAD  # rows that are already padded stay consistent too
    scores = model.scores(seq)
    for extra in (1, 4):
        padded = torch.cat([torch.full((4, extra), PAD), seq], dim=1)
        torch.testing.assert_close(model.scores(padded), scores, rtol=0, atol=1e-5)


@torch.no_grad()
def test_histories_longer_than_max_len_use_the_most_recent_items(model: SASRec) -> None:
    recent = _histories(2, 12)
    older = torch.cat([_histories(2, 6, seed=5), recent], dim=1)
    torch.testing.assert_close(model.scores(older), model.scores(recent), rtol=0, atol=1e-6)


def test_padding_targets_are_ignored_by_the_loss(model: SASRec) -> None:
    inputs = _histories(2, 6)
    inputs[:, :2] = PAD
    targets = _histories(2, 6, seed=2)
    masked = targets.clone()
    masked[:, :2] = PAD
    logits = model.item_logits(model(inputs)[:, 2:]).reshape(-1, N_ITEMS)
    expected = torch.nn.functional.cross_entropy(logits, targets[:, 2:].reshape(-1))
    torch.testing.assert_close(model.loss(inputs, masked), expected)


def test_output_layer_is_the_item_embedding_only_when_tied(model: SASRec) -> None:
    h = torch.randn(3, 16)
    tied = torch.allclose(model.item_logits(h), h @ model.item_emb.weight[1:].T)
    assert tied == (model.out_emb is None)
    assert model.item_logits(h).shape == (3, N_ITEMS)


def test_training_windows_cover_every_target_once() -> None:
    seqs = [np.arange(n) + 100 * n for n in (1, 2, 5, 11, 23)]
    windows = training_windows(seqs, max_len=5)
    assert all(2 <= len(w) <= 6 for w in windows)
    targets = sorted(int(x) for w in windows for x in w[1:])
    assert targets == sorted(int(x) for s in seqs for x in s[1:])
    for w in windows:  # each window is a contiguous piece of its sequence
        assert np.all(np.diff(w) == 1)


def test_length_buckets_are_a_partition_with_little_padding() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, size=1000)
    batches = length_bucketed_batches(lengths, 32, np.random.default_rng(1), window_batches=8)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    unbucketed = sum(len(b) * lengths[b].max() for b in np.array_split(rng.permutation(1000), len(batches)))
    assert padded < 0.6 * unbucketed
