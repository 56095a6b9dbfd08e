"""Constrained beam search: validity, parity with exhaustive scoring, SID -> item mapping."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pitrec.decoding.beam_search import beam_search, beams_to_items, reorder_beams
from pitrec.index.trie import Trie
from pitrec.models.user_to_token import UserToToken, UserToTokenConfig


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second thread only adds synchronisation, which on a loaded 2-core machine
    costs 10-100x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TableModel:
    """A toy autoregressive model: random log-probs for every (user, prefix, level). Its cache is a
    nested dict holding each beam's prefix, which exercises the generic cache reordering."""

    def __init__(self, n_users: int, sizes: list[int], seed: int):
        g = torch.Generator().manual_seed(seed)
        self.sizes = sizes
        self.radix = [int(np.prod(sizes[:l])) for l in range(len(sizes))]
        self.tables = [torch.randn(n_users, r, s, generator=g).log_softmax(-1) for r, s in zip(self.radix, sizes)]

    def step(self, prev, level, cache):
        if prev is None:
            prefix = torch.zeros(self.tables[0].shape[0], 1, dtype=torch.long)
        else:
            prefix = cache["state"][0] * self.sizes[level - 1] + prev
        users = torch.arange(prefix.shape[0]).unsqueeze(1)
        return self.tables[level][users, prefix], {"state": [prefix]}

    def sid_log_prob(self, user: int, sid) -> float:
        total, prefix = 0.0, 0
        for level, c in enumerate(sid):
            total += float(self.tables[level][user, prefix, c])
            prefix = prefix * self.sizes[level] + c
        return total


@st.composite
def catalogues(draw, max_levels=3, max_size=4, max_rows=12):
    levels = draw(st.integers(1, max_levels))
    sizes = [draw(st.integers(1, max_size)) for _ in range(levels)]
    n = draw(st.integers(1, max_rows))
    codes = np.array([[draw(st.integers(0, s - 1)) for s in sizes] for _ in range(n)], dtype=np.int64)
    n_items = draw(st.integers(1, 8))
    items = np.array([draw(st.integers(0, n_items - 1)) for _ in range(n)], dtype=np.int64)
    return Trie.build(codes, sizes, items=items, n_items=n_items)


def exhaustive_items(sid_scores: dict[tuple, float], trie: Trie) -> dict[int, float]:
    """Best SID score of every item that has a SID."""
    best: dict[int, float] = {}
    leaves = trie.lookup(torch.tensor(list(sid_scores)))
    flat, source = trie.items_of(leaves)
    scores = list(sid_scores.values())
    for item, src in zip(flat.tolist(), source.tolist()):
        best[item] = max(best.get(item, -np.inf), scores[src])
    return best


def assert_matches_exhaustive(items_row, scores_row, best: dict[int, float], k: int):
    expected = sorted(best.values(), reverse=True)[:k]
    got = [s for s in scores_row.tolist() if np.isfinite(s)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert (items_row[len(got):] == -1).all()
    for item, score in zip(items_row[:len(got)].tolist(), got):
        assert best[item] == pytest.approx(score, rel=1e-5, abs=1e-5)


@settings(max_examples=80, deadline=None)
@given(catalogues(), st.integers(0, 10_000), st.integers(1, 6))
def test_full_beam_equals_exhaustive_scoring_table_model(trie, seed, k):
    users = 3
    model = TableModel(users, trie.codebook_sizes, seed)
    result = beam_search(model.step, users, trie.codebook_sizes, beam_width=trie.n_leaves, trie=trie)
    items, scores = beams_to_items(result.leaves, result.log_probs, trie, k)
    sids = [tuple(r) for r in trie.leaf_codes.tolist()]
    for u in range(users):
        best = exhaustive_items({s: model.sid_log_prob(u, s) for s in sids}, trie)
        assert_matches_exhaustive(items[u], scores[u], best, k)


def tiny_model(sizes, seed, encoding="item") -> UserToToken:
    torch.manual_seed(seed)
    cfg = UserToTokenConfig(d_model=16, heads=2, encoder_layers=1, decoder_layers=2, ffn=32,
                            history_encoding=encoding, max_history=6)
    model = UserToToken(sizes, cfg).eval()
    with torch.no_grad():  # sharper, more varied distributions than the 0.02 init
        for p in model.parameters():
            p.mul_(5.0)
    return model


def random_memory(model: UserToToken, users: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    hist = torch.stack([torch.randint(0, s, (users, 5), generator=g) for s in model.codebook_sizes], -1)
    pad = torch.zeros(users, 5, dtype=torch.bool)
    pad[0, :3] = True
    with torch.no_grad():
        return model.encode(hist, pad)


@settings(max_examples=15, deadline=None)
@given(catalogues(), st.integers(0, 10_000), st.sampled_from(["item", "sid"]))
def test_full_beam_equals_exhaustive_scoring_user_to_token(trie, seed, encoding):
    users, k = 2, 5
    model = tiny_model(trie.codebook_sizes, seed, encoding)
    memory = random_memory(model, users, seed)
    result = model.generate(memory, trie.n_leaves, trie)
    items, scores = beams_to_items(result.leaves, result.log_probs, trie, k)
    sids = trie.leaf_codes
    with torch.no_grad():
        nll = model.candidate_nll(memory, sids.unsqueeze(0).expand(users, -1, -1))
    for u in range(users):
        best = exhaustive_items({tuple(s): -float(v) for s, v in zip(sids.tolist(), nll[u])}, trie)
        assert_matches_exhaustive(items[u], scores[u], best, k)


def test_narrow_beam_returns_only_valid_sids_sorted_and_deterministic():
    rng = np.random.default_rng(1)
    sizes = [6, 6, 5]
    trie = Trie.build(rng.integers(0, 5, size=(60, 3)), sizes)
    model = tiny_model(sizes, 3, "sid")
    memory = random_memory(model, 4, 3)
    a = model.generate(memory, 7, trie)
    b = model.generate(memory, 7, trie)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.log_probs, b.log_probs)
    assert trie.contains(a.codes).all()
    assert torch.equal(trie.lookup(a.codes), a.leaves)
    assert (a.log_probs[:, :-1] >= a.log_probs[:, 1:]).all()
    # the log-prob of each beam is the model's own score of that SID
    with torch.no_grad():
        nll = model.candidate_nll(memory, a.codes)
    torch.testing.assert_close(-nll, a.log_probs, atol=1e-5, rtol=0)


def test_beam_wider_than_catalogue_pads_with_empty_beams():
    trie = Trie.build(np.array([[0, 1], [2, 0], [2, 1]]), [3, 2])
    model = tiny_model([3, 2], 0)
    result = model.generate(random_memory(model, 2, 0), 5, trie)
    assert result.alive.sum(1).tolist() == [3, 3]
    assert (result.leaves[:, 3:] == -1).all()
    items, scores = beams_to_items(result.leaves, result.log_probs, trie, 5)
    assert (items[:, 3:] == -1).all() and torch.isinf(scores[:, 3:]).all()
    assert sorted(items[0, :3].tolist()) == [0, 1, 2]


def test_unconstrained_search_ranks_every_code_combination():
    sizes = [3, 2, 2]
    model = TableModel(2, sizes, seed=5)
    result = beam_search(model.step, 2, sizes, beam_width=12)
    assert result.leaves is None
    for u in range(2):
        everything = sorted((model.sid_log_prob(u, s) for s in itertools.product(*map(range, sizes))), reverse=True)
        np.testing.assert_allclose(result.log_probs[u].tolist(), everything, atol=1e-6)
        for sid, score in zip(result.codes[u].tolist(), result.log_probs[u].tolist()):
            assert abs(model.sid_log_prob(u, sid) - score) < 1e-6


def test_beams_to_items_dedups_expands_collisions_and_excludes():
    # leaf (0,0) -> items 4, 1 (a collision); item 1 also owns (1,1); (1,0) -> item 2
    trie = Trie.build(np.array([[0, 0], [0, 0], [1, 1], [1, 0]]), [2, 2], items=np.array([4, 1, 1, 2]), n_items=5)
    leaves = trie.lookup(torch.tensor([[[1, 1], [0, 0], [1, 0]], [[1, 0], [0, 0], [1, 1]]]))
    log_probs = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.7, float("-inf")]])
    items, scores = beams_to_items(leaves, log_probs, trie, 4)
    assert items.tolist() == [[1, 4, 2, -1], [2, 1, 4, -1]]  # item 1 keeps its best SID; (0,0) gives 1 then 4
    assert scores[0].tolist()[:3] == [-1.0, -2.0, -3.0]
    history = torch.tensor([[-1, 4], [2, 2]])
    items, _ = beams_to_items(leaves, log_probs, trie, 2, exclude=history)
    assert items.tolist() == [[1, 2], [1, 4]]


def test_reorder_beams_gathers_within_users_only():
    cache = {"a": [torch.arange(6).view(2, 3)], "b": (torch.arange(12).view(2, 3, 2),)}
    out = reorder_beams(cache, torch.tensor([[2, 2], [0, 1]]))
    assert out["a"][0].tolist() == [[2, 2], [3, 4]]
    assert out["b"][0].tolist() == [[[4, 5], [4, 5]], [[6, 7], [8, 9]]]
    with pytest.raises(TypeError):
        reorder_beams({"x": 3}, torch.tensor([[0]]))
