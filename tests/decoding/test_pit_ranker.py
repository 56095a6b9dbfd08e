"""PIT's ranker hands its final beams to the serving engine's explanations: they must be the beams
the ranking came from (a widened user's from its widest search) with the model's log-probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pitrec.data.batches import PAD
from pitrec.decoding.pit_ranker import PITRanker
from pitrec.index.trie import Trie
from pitrec.models.user_to_token import Memory, UserToToken, UserToTokenConfig

SIZES = [4, 4, 3]


def _model(seed: int) -> UserToToken:
    torch.manual_seed(seed)
    cfg = UserToTokenConfig(d_model=16, heads=2, encoder_layers=1, decoder_layers=2, ffn=32, max_history=6)
    model = UserToToken(SIZES, cfg).eval()
    with torch.no_grad():  # sharper distributions than the init, so beams differ between users
        for p in model.parameters():
            p.mul_(5.0)
    return model


def _catalog(n_items: int, per_item: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every item owns ``per_item`` distinct SIDs, so a narrow beam names too few items."""
    rng = np.random.default_rng(seed)
    all_sids = np.array(np.meshgrid(*[np.arange(s) for s in SIZES], indexing="ij")).reshape(len(SIZES), -1).T
    codes = all_sids[rng.choice(len(all_sids), n_items * per_item, replace=False)]
    return codes, np.repeat(np.arange(n_items), per_item)


def test_the_ranker_returns_the_beams_its_ranking_came_from_with_their_model_log_probs():
    codes, items = _catalog(n_items=12, per_item=3, seed=0)
    trie = Trie.build(codes, SIZES, items=items, n_items=12)
    model = _model(1)
    history_codes = torch.from_numpy(codes[::3])  # each item's first SID encodes it in histories
    g = torch.Generator().manual_seed(2)
    history = torch.randint(0, 12, (8, 5), generator=g)
    history[0, :3] = PAD
    ranker = PITRanker(model, history_codes, trie, torch.zeros(len(codes)), beam_width=4, aggregation="sum")
    with torch.no_grad():
        ranked = ranker.rank_with_beams(history, k=3)
        memory = model.encode(history_codes[history.clamp(min=0)], history == PAD)
        narrow = model.generate(memory, 4, trie)

    assert ranker.widened > 0 and ranked.leaves.shape[1] > 4  # some users needed a wider search
    assert torch.equal(ranked.items, ranker.rank(history, k=3))
    widened = 0
    for u in range(len(history)):
        alive = ranked.leaves[u] >= 0
        assert torch.isfinite(ranked.log_probs[u][alive]).all() and not torch.isfinite(ranked.log_probs[u][~alive]).any()
        # every returned item was reached by one of these beams
        reached = set(trie.items_of(ranked.leaves[u][alive])[0].tolist())
        assert set(ranked.items[u][ranked.items[u] >= 0].tolist()) <= reached
        # and each beam's log-probability is the model's teacher-forced log P(SID | user)
        sids = trie.leaf_codes[ranked.leaves[u][alive]].unsqueeze(0)
        user_memory = Memory(memory.states[u:u + 1], memory.valid[u:u + 1])
        with torch.no_grad():
            expected = -model.candidate_nll(user_memory, sids)[0]
        torch.testing.assert_close(ranked.log_probs[u][alive], expected, atol=1e-5, rtol=1e-5)
        if int(alive.sum()) > 4:
            widened += 1
        else:  # a user that was not widened keeps the first search's beams
            assert torch.equal(ranked.leaves[u][:4], torch.where(narrow.alive[u], narrow.leaves[u], -1))
    assert 0 < widened <= ranker.widened  # the ranker counts a user once per widening round
    assert widened < len(history)  # both kinds of user were checked


def _sibling_catalog(n_items: int, shared: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every item owns 2-3 SIDs below a prefix of ``shared`` codes of its own (PIT's sibling SIDs)."""
    rng = np.random.default_rng(seed)
    grid = [np.arange(s) for s in SIZES]
    prefixes = np.array(np.meshgrid(*grid[:shared], indexing="ij")).reshape(shared, -1).T
    tails = np.array(np.meshgrid(*grid[shared:], indexing="ij")).reshape(len(SIZES) - shared, -1).T
    codes, items = [], []
    for item, prefix in enumerate(prefixes[rng.choice(len(prefixes), n_items, replace=False)]):
        for tail in tails[rng.choice(len(tails), rng.integers(2, 4), replace=False)]:
            codes.append([*prefix, *tail])
            items.append(item)
    return np.array(codes), np.array(items)


@pytest.mark.parametrize("levels,n_items,width,k", [(1, 14, 4, 4), (2, 4, 2, 2)])
def test_expanded_last_levels_score_each_returned_item_over_all_its_sibling_sids(levels, n_items, width, k):
    codes, items = _sibling_catalog(n_items, shared=len(SIZES) - levels, seed=3)
    trie = Trie.build(codes, SIZES, items=items, n_items=n_items)
    model = _model(4)
    history_codes = torch.from_numpy(codes[np.unique(items, return_index=True)[1]])
    g = torch.Generator().manual_seed(5)
    history = torch.randint(0, n_items, (10, 5), generator=g)
    history[1, :2] = PAD
    with torch.no_grad():
        memory = model.encode(history_codes[history.clamp(min=0)], history == PAD)
        # every SID's log P(SID | user), teacher-forced: the exhaustive reference
        exact = -model.candidate_nll(memory, torch.from_numpy(codes).unsqueeze(0).expand(len(history), -1, -1))
    beams_only = PITRanker(model, history_codes, trie, torch.zeros(len(codes)), beam_width=width, aggregation="sum")
    expanded = PITRanker(model, history_codes, trie, torch.zeros(len(codes)), beam_width=width, aggregation="sum",
                         expand_last=levels)
    with torch.no_grad():
        ranked = expanded.rank_with_beams(history, k=k)
        beams_only.rank(history, k=k)
    assert expanded.widened < beams_only.widened  # W prefixes name W items: no user is short
    assert (ranked.items >= 0).all()
    for u in range(len(history)):
        alive = ranked.leaves[u] >= 0
        reached = set(trie.items_of(ranked.leaves[u][alive])[0].tolist())
        for item, score in zip(ranked.items[u].tolist(), ranked.scores[u].tolist()):
            # the item's score aggregates all its SIDs, and all of them are in the search's result
            assert score == pytest.approx(float(exact[u, items == item].logsumexp(0)), abs=1e-4)
            assert item in reached
            own = trie.lookup(torch.from_numpy(codes[items == item]))
            assert set(own.tolist()) <= set(ranked.leaves[u][alive].tolist())
    # a beam covering every prefix ranks exactly like aggregating every SID of every item
    full = PITRanker(model, history_codes, trie, torch.zeros(len(codes)), beam_width=16, aggregation="sum",
                     expand_last=levels)
    with torch.no_grad():
        got_items, got_scores = full.rank_with_scores(history, k=min(6, n_items))
    per_item = torch.stack([exact[:, items == i].logsumexp(1) for i in range(n_items)], 1)
    best_scores, best_items = per_item.topk(min(6, n_items), dim=1)
    torch.testing.assert_close(got_scores, best_scores, atol=1e-4, rtol=0)
    assert torch.equal(got_items, best_items)
