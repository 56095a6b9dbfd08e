"""Prefix-shared scoring must give every SID the log-probability of the teacher-forced pass (the
reference): it only decodes each distinct prefix once instead of once per SID."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pitrec.decoding.prefix_scoring import _rank_within_user, prefix_shared_log_probs
from pitrec.models.user_to_token import UserToToken, UserToTokenConfig

SIZES = [3, 4, 2, 3]


def _model(seed: int) -> UserToToken:
    torch.manual_seed(seed)
    cfg = UserToTokenConfig(d_model=16, heads=2, encoder_layers=1, decoder_layers=2, ffn=32, max_history=6)
    model = UserToToken(SIZES, cfg).eval()
    with torch.no_grad():  # sharper distributions than the init, so SIDs' scores differ
        for p in model.parameters():
            p.mul_(4.0)
    return model


def _sids(rng: np.random.Generator, users: int, per_user: int, shared: int) -> np.ndarray:
    """Per user, ``per_user`` SIDs, most below a few common prefixes of ``shared`` codes (as an
    item's sibling SIDs are), some repeated."""
    out = np.stack([rng.integers(0, s, size=(users, per_user)) for s in SIZES], axis=-1)
    if shared:
        roots = out[:, :, :shared].copy()  # each SID takes the prefix of one of the user's first two
        out[:, :, :shared] = roots[np.arange(users)[:, None], rng.integers(0, min(2, per_user), size=(users, per_user))]
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), per_user=st.integers(1, 7), shared=st.integers(0, 3),
       renormalize=st.booleans())
def test_prefix_shared_scores_equal_the_teacher_forced_pass(seed, per_user, shared, renormalize):
    rng = np.random.default_rng(seed)
    model = _model(seed % 5)
    users = 4
    history = torch.from_numpy(np.stack([rng.integers(0, s, size=(users, 5)) for s in SIZES], axis=-1))
    pad = torch.from_numpy(rng.random((users, 5)) < 0.3)
    pad[:, -1] = False
    codes = torch.from_numpy(_sids(rng, users, per_user, shared))
    mask = torch.from_numpy(rng.random((users, per_user)) < 0.7)
    mask[:, 0] = True
    last_valid = torch.from_numpy(rng.random((users, per_user, SIZES[-1])) < 0.6) if renormalize else None
    if last_valid is not None:
        last_valid.scatter_(2, codes[..., -1:], True)  # a SID's own last code is always allowed
    with torch.no_grad():
        memory = model.encode(history, pad)
        expected = -model.candidate_nll(memory, codes, mask, last_valid=last_valid)
        step = partial(model.decode_step, memory, model.cross_keys_values(memory))
        got = prefix_shared_log_probs(step, codes, mask, SIZES, last_valid=last_valid).sum(-1)
    torch.testing.assert_close(got[mask], expected[mask], rtol=1e-4, atol=1e-4)


def test_each_distinct_prefix_is_decoded_once():
    model = _model(0)
    codes = torch.tensor([[[0, 1, 0, 2], [0, 1, 1, 0], [0, 1, 1, 2], [2, 3, 0, 0]]])  # one user
    calls = []

    def step(prev, level, cache):
        calls.append(1 if prev is None else prev.shape[1])
        return real(prev, level, cache)

    with torch.no_grad():
        memory = model.encode(codes[:, :2], torch.zeros(1, 2, dtype=torch.bool))
        real = partial(model.decode_step, memory, model.cross_keys_values(memory))
        prefix_shared_log_probs(step, codes, torch.ones(1, 4, dtype=torch.bool), SIZES)
    # level 0: BOS; level 1: prefixes (0), (2); level 2: (0,1), (2,3); level 3: (0,1,0), (0,1,1), (2,3,0)
    assert calls == [1, 2, 2, 3]


def test_ranks_restart_per_user_and_follow_the_key_order():
    rank, n = _rank_within_user(torch.tensor([[5, 3, 5, 9], [7, 7, 7, 7]]))
    assert rank.tolist() == [[1, 0, 1, 2], [0, 0, 0, 0]] and n == 3


def test_a_user_without_real_sids_is_refused():
    model = _model(0)
    with torch.no_grad():
        memory = model.encode(torch.zeros(2, 1, 4, dtype=torch.long), torch.zeros(2, 1, dtype=torch.bool))
        step = partial(model.decode_step, memory, model.cross_keys_values(memory))
        mask = torch.tensor([[True, False], [False, False]])
        try:
            prefix_shared_log_probs(step, torch.zeros(2, 2, 4, dtype=torch.long), mask, SIZES)
        except ValueError as exc:
            assert "at least one real SID" in str(exc)
        else:
            raise AssertionError("a user with no real SID was scored")


@torch.no_grad()
def test_window_targets_scored_by_prefix_equal_the_per_pair_pass():
    """PIT's windowed selection: a target's candidate SIDs scored through ``window_target_step``
    (each distinct prefix once) equal ``prefix_pair_nll`` of every (target, SID) pair."""
    torch.manual_seed(0)
    cfg = UserToTokenConfig(d_model=16, heads=2, encoder_layers=1, decoder_layers=2, ffn=32, max_history=8,
                            encoder_attention="causal")
    model = UserToToken(SIZES, cfg).eval()
    torch.nn.init.normal_(model.recency_bias.weight)
    rng = np.random.default_rng(1)
    window = torch.from_numpy(np.stack([rng.integers(0, s, size=(3, 7)) for s in SIZES], axis=-1))
    valid = torch.ones(3, 7, dtype=torch.bool)
    valid[1, :3] = False
    memory = model.encode_windows(window, valid)
    mask, _ = model.prefix_mask(valid, 4)
    rows, cols = torch.tensor([0, 0, 1, 2, 2, 1]), torch.tensor([0, 3, 2, 1, 3, 3])
    cands = torch.from_numpy(_sids(rng, len(rows), 5, shared=2))  # (targets, 5 SIDs, L), siblings
    cand_mask = torch.from_numpy(rng.random((len(rows), 5)) < 0.8)
    cand_mask[:, 0] = True
    step = model.window_target_step(memory, mask, rows, cols)
    got = prefix_shared_log_probs(step, cands, cand_mask, SIZES).sum(-1)
    t, c = cand_mask.nonzero(as_tuple=True)
    expected = -model.prefix_pair_nll(memory, mask, rows[t], cols[t], cands[t, c])
    torch.testing.assert_close(got[t, c], expected, rtol=1e-4, atol=1e-4)
