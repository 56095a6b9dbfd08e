"""PIT's ranker hands its final beams to the serving engine's explanations: they must be the beams
the ranking came from (a widened user's from its widest search) with the model's log-probabilities."""

from __future__ import annotations

import numpy as np
import torch

from pitrec.data.batches import PAD
from pitrec.decoding.explain_scores import SourceCounts, sid_log_probs
from pitrec.decoding.beam_search import users_first_groups
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


def test_every_sid_is_scored_as_teacher_forcing_scores_it_from_whichever_source_reaches_it(monkeypatch):
    """``explain_scores.sid_log_probs`` on every SID of the catalog for every user: read off the
    frontier, one step from the level before (no step for a SID alone on its prefix under the
    renormalised last level), or decoded from the start, each gives the model's log P(SID | user);
    after a widened search (no level-before cache) too."""
    from pitrec.decoding import explain_scores

    groups = []  # how many user groups each one-step pass used
    monkeypatch.setattr(explain_scores, "users_first_groups",
                        lambda counts: groups.append(len(users_first_groups(counts))) or users_first_groups(counts))
    codes, items = _catalog(n_items=8, per_item=3, seed=12)  # 8 of its 24 SIDs alone on their prefix
    trie = Trie.build(codes, SIZES, items=items, n_items=8)
    model = _model(1)
    history_codes = torch.from_numpy(codes[::3])
    history = torch.randint(0, 8, (8, 5), generator=torch.Generator().manual_seed(2))
    users = torch.arange(len(history)).repeat_interleave(len(codes))
    sids = torch.from_numpy(codes).repeat(len(history), 1)
    grid = torch.from_numpy(codes).expand(len(history), -1, -1)
    assert (trie.last_level_mask(grid).sum(-1) == 1).any() and (trie.last_level_mask(grid).sum(-1) > 1).any()
    for renormalize in (False, True):
        with torch.no_grad():
            memory = model.encode(history_codes[history], torch.zeros_like(history, dtype=torch.bool))
            last_valid = trie.last_level_mask(grid) if renormalize else None
            expected = -model.candidate_nll(memory, grid, last_valid=last_valid).reshape(-1)
            for width, widens in ((4, True), (2, False)):
                ranker = PITRanker(model, history_codes, trie, torch.zeros(len(codes)), beam_width=width,
                                   aggregation="sum", renormalize_last=renormalize)
                ranked = ranker.rank_with_beams(history, k=4 if widens else 1)
                assert (ranker.widened > 0) == widens and (ranked.penultimate is None) == widens
                counts = SourceCounts()
                got = sid_log_probs(model, ranked, users, sids, trie, renormalize, counts=counts)
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
                assert counts.frontier > 0 and counts.decoded > 0 and (counts.one_step > 0) != widens
                assert (counts.alone > 0) == (renormalize and not widens)
                assert counts.frontier + counts.one_step + counts.alone + counts.decoded == len(sids)
    assert set(groups) == {1, 2}  # one-step passes with one group of users and with two
