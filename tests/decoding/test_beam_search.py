"""Constrained beam search: validity, parity with exhaustive scoring, SID -> item mapping."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pitrec.decoding.beam_search import (Frontier, beam_search, beams_to_items, gather_beams, reorder_beams,
                                         users_first_groups)
from pitrec.index.trie import Trie
from pitrec.models.user_to_token import UserToToken, UserToTokenConfig


pytestmark = pytest.mark.usefixtures("one_thread")


class TableModel:
    """A toy autoregressive model: random log-probs for every (user, prefix, level). Its cache is a
    nested dict holding each beam's prefix, which exercises the generic cache reordering."""

    def __init__(self, n_users: int, sizes: list[int], seed: int):
        g = torch.Generator().manual_seed(seed)
        self.sizes = sizes
        self.radix = [int(np.prod(sizes[:l])) for l in range(len(sizes))]
        self.tables = [torch.randn(n_users, r, s, generator=g).log_softmax(-1) for r, s in zip(self.radix, sizes)]
        self.calls: list[tuple[int, list[int] | None, int]] = []  # (level, rows, beams per row) of every step

    def step(self, prev, level, cache, rows=None):
        users = torch.arange(self.tables[0].shape[0]) if rows is None else rows
        self.calls.append((level, None if rows is None else rows.tolist(), 1 if prev is None else prev.shape[1]))
        if prev is None:
            prefix = torch.zeros(len(users), 1, dtype=torch.long)
        else:
            prefix = cache["state"][0] * self.sizes[level - 1] + prev
        return self.tables[level][users.unsqueeze(1), prefix], {"state": [prefix]}

    def sid_log_prob(self, user: int, sid, last_codes=None) -> float:
        """log P(sid); with ``last_codes`` (the codes the trie allows after sid's prefix) the last
        level renormalised over them."""
        total, prefix = 0.0, 0
        for level, c in enumerate(sid):
            row = self.tables[level][user, prefix]
            total += float(row[c])
            if last_codes is not None and level == len(sid) - 1:
                total -= float(row[list(last_codes)].logsumexp(0))
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


def sibling_codes(trie: Trie) -> dict[tuple, list[int]]:
    """Every SID prefix (all levels but the last) -> the last codes the trie holds after it."""
    out: dict[tuple, list[int]] = {}
    for sid in trie.leaf_codes.tolist():
        out.setdefault(tuple(sid[:-1]), []).append(sid[-1])
    return out


@settings(max_examples=80, deadline=None)
@given(catalogues(), st.integers(0, 10_000), st.integers(1, 6))
def test_renormalized_last_level_equals_exhaustive_scoring_table_model(trie, seed, k):
    users = 3
    model = TableModel(users, trie.codebook_sizes, seed)
    result = beam_search(model.step, users, trie.codebook_sizes, beam_width=trie.n_leaves, trie=trie,
                         renormalize_last=True)
    assert trie.contains(result.codes[result.alive]).all()
    items, scores = beams_to_items(result.leaves, result.log_probs, trie, k)
    siblings = sibling_codes(trie)
    sids = [tuple(r) for r in trie.leaf_codes.tolist()]
    for u in range(users):
        best = exhaustive_items({s: model.sid_log_prob(u, s, siblings[s[:-1]]) for s in sids}, trie)
        assert_matches_exhaustive(items[u], scores[u], best, k)
    # the last level is decoded only when some prefix has several codes (here every user has a
    # beam on every prefix), in one call: each user's beams that need it in its row, or every beam
    # in place when those are most of them
    last = [(rows, width) for level, rows, width in model.calls if level == len(trie.codebook_sizes) - 1]
    several = sum(len(c) > 1 for c in siblings.values())
    if several:
        assert len(last) == 1 and (last[0] == (list(range(users)), several) or last[0][0] is None), last
    else:
        assert last == []


def test_renormalized_last_level_decodes_every_beam_in_place_when_most_need_it():
    trie = Trie.build(np.array([[0, 0], [0, 1], [1, 0], [1, 1], [2, 1]]), [3, 2])
    model = TableModel(2, [3, 2], seed=3)
    model.tables[0][:] = torch.tensor([0.0, -0.5, -50.0]).log_softmax(-1)  # both users: prefixes 0 and 1
    result = beam_search(model.step, 2, [3, 2], beam_width=2, trie=trie, renormalize_last=True)
    assert [(rows, width) for level, rows, width in model.calls if level == 1] == [(None, 2)]
    siblings = sibling_codes(trie)
    for u in range(2):
        for sid, score in zip(result.codes[u].tolist(), result.log_probs[u].tolist()):
            assert score == pytest.approx(model.sid_log_prob(u, tuple(sid), siblings[tuple(sid[:-1])]), abs=1e-6)


def test_renormalized_last_level_skips_users_whose_beams_have_one_item_each():
    # prefixes (0,) and (1,) hold one SID each; (2,) holds two: only beams reaching (2,) need the model
    trie = Trie.build(np.array([[0, 0], [1, 1], [2, 0], [2, 1]]), [3, 2])
    model = TableModel(3, [3, 2], seed=1)
    model.tables[0][:] = torch.tensor([0.0, -1.0, -50.0]).log_softmax(-1)  # users 0-2: prefix 2 last
    model.tables[0][1] = torch.tensor([-50.0, -1.0, 0.0]).log_softmax(-1)  # user 1: prefix 2 first
    result = beam_search(model.step, 3, [3, 2], beam_width=2, trie=trie, renormalize_last=True)
    assert [(rows, width) for level, rows, width in model.calls if level == 1] == [([1], 1)]
    # the only code after (0,) and (1,) scores 0: a user's beam scores are its prefixes' log-probs
    torch.testing.assert_close(result.log_probs[0], model.tables[0][0, 0, :2])
    assert result.codes[0].tolist() == [[0, 0], [1, 1]]
    every = {(1, 1): model.sid_log_prob(1, (1, 1), [1]),
             **{s: model.sid_log_prob(1, s, [0, 1]) for s in ((2, 0), (2, 1))}}
    best = sorted(every, key=every.get, reverse=True)[:2]
    assert result.codes[1].tolist() == [list(s) for s in best]
    torch.testing.assert_close(result.log_probs[1], torch.tensor([every[s] for s in best]))


@settings(max_examples=15, deadline=None)
@given(catalogues(), st.integers(0, 10_000), st.sampled_from(["item", "sid"]))
def test_renormalized_last_level_equals_exhaustive_scoring_user_to_token(trie, seed, encoding):
    users, k = 2, 5
    model = tiny_model(trie.codebook_sizes, seed, encoding)
    memory = random_memory(model, users, seed)
    result = model.generate(memory, trie.n_leaves, trie, renormalize_last=True)
    items, scores = beams_to_items(result.leaves, result.log_probs, trie, k)
    siblings = sibling_codes(trie)
    last_size = trie.codebook_sizes[-1]
    with torch.no_grad():
        for u in range(users):
            one = type(memory)(memory.states[u:u + 1], memory.valid[u:u + 1])
            sid_scores = {}
            for sid in map(tuple, trie.leaf_codes.tolist()):
                # log P(prefix, c) for every last code c; their log-sum-exp is log P(prefix)
                every = torch.tensor([[*sid[:-1], c] for c in range(last_size)]).unsqueeze(0)
                lp = -model.candidate_nll(one, every)[0]
                within = lp[siblings[sid[:-1]]]
                sid_scores[sid] = float(lp.logsumexp(0) + lp[sid[-1]] - within.logsumexp(0))
            best = exhaustive_items(sid_scores, trie)
            assert_matches_exhaustive(items[u], scores[u], best, k)


def test_renormalize_last_needs_a_trie():
    with pytest.raises(ValueError, match="needs a trie"):
        beam_search(TableModel(1, [2], 0).step, 1, [2], 2, renormalize_last=True)


def test_gather_beams_takes_each_rows_beams_of_every_tensor():
    cache = {"a": [torch.arange(6).view(3, 2)], "b": (torch.arange(12).view(3, 2, 2),)}
    out = gather_beams(cache, torch.tensor([2, 0]), torch.tensor([[1, 0], [0, 0]]))
    assert out["a"][0].tolist() == [[5, 4], [0, 0]]
    assert out["b"][0].tolist() == [[[10, 11], [8, 9]], [[0, 1], [0, 1]]]
    with pytest.raises(TypeError):
        gather_beams({"x": 3}, torch.tensor([0]), torch.tensor([[0]]))


# -- the last level's frontier: every SID one step from a prefix the last level extended, scored
# as exhaustive scoring scores it, and nothing else

def extended_prefixes(model: TableModel, trie: Trie, width: int) -> list[set[tuple]]:
    """Per user, the prefixes (first L - 1 codes) the last level starts from: the beams of the
    same search over the catalogue cut one level short (the searches agree up to there)."""
    users = model.tables[0].shape[0]
    if trie.n_levels == 1:
        return [{()} for _ in range(users)]
    codes = trie.leaf_codes[:, :-1].numpy()
    short = Trie.build(codes, trie.codebook_sizes[:-1], items=np.zeros(len(codes), dtype=np.int64), n_items=1)
    result = beam_search(model.step, users, short.codebook_sizes, width, trie=short)
    return [{tuple(c) for c, alive in zip(result.codes[u].tolist(), result.alive[u].tolist()) if alive}
            for u in range(users)]


@settings(max_examples=80, deadline=None)
@given(catalogues(), st.integers(0, 10_000), st.integers(1, 4), st.booleans())
def test_the_frontier_scores_every_sid_one_step_from_an_extended_prefix(trie, seed, width, renormalize):
    users = 3
    model = TableModel(users, trie.codebook_sizes, seed)
    result = beam_search(model.step, users, trie.codebook_sizes, width, trie=trie, renormalize_last=renormalize)
    reached = extended_prefixes(TableModel(users, trie.codebook_sizes, seed), trie, width)
    siblings = sibling_codes(trie)
    sids = torch.tensor(sorted({tuple(r) for r in trie.leaf_codes.tolist()}))
    for u in range(users):
        got = result.frontier.score(torch.full((len(sids),), u), trie.prefix_nodes(sids), sids[:, -1])
        for sid, score in zip(sids.tolist(), got.tolist()):
            if tuple(sid[:-1]) in reached[u]:
                expected = model.sid_log_prob(u, sid, siblings[tuple(sid[:-1])] if renormalize else None)
                assert score == pytest.approx(expected, abs=1e-5), (u, sid)
            else:
                assert score == float("-inf"), (u, sid)
    # the final beams are on the frontier, at their own scores
    alive = result.alive
    users_of = torch.arange(users).unsqueeze(1).expand_as(alive)[alive]
    beams = result.codes[alive]
    on = result.frontier.score(users_of, trie.prefix_nodes(beams), beams[:, -1])
    torch.testing.assert_close(on, result.log_probs[alive])


def test_sids_whose_prefix_is_outside_the_trie_or_a_dead_beam_score_minus_infinity():
    frontier = Frontier(nodes=torch.tensor([[4, -1]]), log_probs=torch.tensor([[[-1.0, -2.0], [-3.0, -4.0]]]))
    users = torch.zeros(3, dtype=torch.long)
    got = frontier.score(users, torch.tensor([4, -1, 7]), torch.tensor([1, 0, 0]))
    assert got.tolist() == [-2.0, float("-inf"), float("-inf")]


def test_a_wider_search_replaces_its_users_rows_and_pads_the_others():
    base = Frontier(nodes=torch.tensor([[1], [2]]), log_probs=torch.tensor([[[-1.0, -2.0]], [[-3.0, -4.0]]]))
    wide = Frontier(nodes=torch.tensor([[5, 6]]), log_probs=torch.tensor([[[-5.0, -6.0], [-7.0, -8.0]]]))
    out = base.widened(torch.tensor([1]), wide)
    assert out.nodes.tolist() == [[1, -1], [5, 6]]
    assert out.log_probs[0, 1].tolist() == [float("-inf")] * 2 and out.log_probs[1].tolist() == [[-5.0, -6.0], [-7.0, -8.0]]
    users = torch.tensor([0, 1, 1])
    assert out.score(users, torch.tensor([1, 6, 2]), torch.tensor([1, 0, 0])).tolist() == [-2.0, -7.0, float("-inf")]


def test_users_first_groups_split_at_the_width_that_saves_most_slots():
    groups = users_first_groups(torch.tensor([0, 5, 1, 1, 1, 1]))
    assert [(users.tolist(), width) for users, width in groups] == [([2, 3, 4, 5], 1), ([1], 5)]
    assert users_first_groups(torch.zeros(3, dtype=torch.long)) == []
    (users, width), = users_first_groups(torch.tensor([2, 0, 2]))
    assert users.tolist() == [0, 2] and width == 2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=40))
def test_users_first_groups_cover_every_user_once_in_no_more_slots_than_one_group(counts):
    counts = torch.tensor(counts)
    groups = users_first_groups(counts)
    assert 1 <= len(groups) <= 2 or not (counts > 0).any()
    seen = torch.cat([users for users, _ in groups]) if groups else torch.empty(0, dtype=torch.long)
    assert sorted(seen.tolist()) == (counts > 0).nonzero().squeeze(1).tolist()
    assert all(int(counts[users].max()) == width for users, width in groups)
    slots = sum(len(users) * width for users, width in groups)
    assert slots <= int((counts > 0).sum()) * int(counts.max())
