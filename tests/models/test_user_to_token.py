"""User-to-Token: cached decoding = teacher forcing, batched candidates = separate calls,
per-level vocabularies, padding invariance, and that it learns."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from pitrec.models.user_to_token import UserToToken, UserToTokenConfig

SIZES = [5, 4, 3]


pytestmark = pytest.mark.usefixtures("one_thread")


ENCODINGS = [("item", "bidirectional"), ("sid", "bidirectional"), ("item", "causal"), ("sid", "causal")]


def make_model(encoding: str, seed: int = 0, d_model: int = 16, layers: int = 2,
               attention: str = "bidirectional") -> UserToToken:
    torch.manual_seed(seed)
    cfg = UserToTokenConfig(d_model=d_model, heads=4, encoder_layers=layers, decoder_layers=layers, ffn=2 * d_model,
                            dropout=0.0, history_encoding=encoding, max_history=8, encoder_attention=attention)
    model = UserToToken(SIZES, cfg)
    if model.recency_bias is not None:  # its zero init would hide a mis-aligned distance
        torch.nn.init.normal_(model.recency_bias.weight)
    return model


def random_codes(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, s, shape, generator=g) for s in SIZES], -1)


def histories(users: int = 4, length: int = 6):
    codes = random_codes(users, length, seed=1)
    pad = torch.zeros(users, length, dtype=torch.bool)
    pad[0, :4] = True
    pad[1, :1] = True
    return codes, pad


@pytest.mark.parametrize("encoding,attention", ENCODINGS)
@torch.no_grad()
def test_kv_cached_steps_equal_teacher_forcing(encoding, attention):
    model = make_model(encoding, attention=attention).eval()
    memory = model.encode(*histories())
    cross = model.cross_keys_values(memory)
    targets = random_codes(4, 3, seed=2)  # (B, W=3, L): three beams per user
    cache, prev, stepwise = None, None, []
    for level in range(len(SIZES)):
        log_probs, cache = model.decode_step(memory, cross, prev, level, cache)
        if level == 0:  # the first step sees one BOS per user; fan out to the W beams
            log_probs = log_probs.expand(-1, 3, -1)
            cache = [tuple(t.expand(-1, 3, *t.shape[2:]) for t in layer) for layer in cache]
        stepwise.append(log_probs.gather(-1, targets[..., level:level + 1]).squeeze(-1))
        prev = targets[..., level]
    cached_nll = -torch.stack(stepwise, -1).sum(-1)
    torch.testing.assert_close(cached_nll, model.candidate_nll(memory, targets), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("encoding", ["item", "sid"])
@torch.no_grad()
def test_candidate_nll_equals_separate_sid_nll_calls(encoding):
    model = make_model(encoding).eval()
    memory = model.encode(*histories())
    cands = random_codes(4, 7, seed=3)
    mask = torch.ones(4, 7, dtype=torch.bool)
    mask[2, 5:] = False
    batched = model.candidate_nll(memory, cands, mask)
    for c in range(7):
        single = model.sid_nll(memory, cands[:, c])
        keep = mask[:, c]
        torch.testing.assert_close(batched[keep, c], single[keep], atol=1e-5, rtol=1e-5)
    assert torch.isinf(batched[2, 5:]).all() and torch.isfinite(batched[mask]).all()


@torch.no_grad()
def test_each_level_is_a_distribution_over_its_own_range():
    model = make_model("item").eval()
    memory = model.encode(*histories())
    cross = model.cross_keys_values(memory)
    cache, prev = None, None
    for level, size in enumerate(SIZES):
        log_probs, cache = model.decode_step(memory, cross, prev, level, cache)
        assert log_probs.shape[-1] == size
        torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:-1]))
        prev = log_probs.argmax(-1)
    # and the exhaustive SID distribution sums to one
    every = torch.cartesian_prod(*[torch.arange(s) for s in SIZES])
    nll = model.candidate_nll(memory, every.unsqueeze(0).expand(4, -1, -1))
    torch.testing.assert_close((-nll).exp().sum(-1), torch.ones(4))


@pytest.mark.parametrize("encoding,attention", ENCODINGS)
@torch.no_grad()
def test_extra_left_padding_changes_nothing(encoding, attention):
    model = make_model(encoding, attention=attention).eval()
    codes, pad = histories()
    target = random_codes(4, seed=4)
    base = model.sid_nll(model.encode(codes, pad), target)
    junk = random_codes(4, 2, seed=5)  # whatever codes sit under padding must not matter
    longer = torch.cat([junk, codes], 1)
    longer_pad = torch.cat([torch.ones(4, 2, dtype=torch.bool), pad], 1)
    torch.testing.assert_close(model.sid_nll(model.encode(longer, longer_pad), target), base, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("encoding,attention", ENCODINGS)
@torch.no_grad()
def test_encoding_by_length_keeps_every_real_state_and_every_score(encoding, attention):
    """Users sorted by history length and encoded in chunks cut to their longest history: the same
    states at real positions, the same valid positions, so the same decoding."""
    model = make_model(encoding, attention=attention).eval()
    g = torch.Generator().manual_seed(7)
    users, length = 11, 8
    codes = random_codes(users, length, seed=8)
    lengths = torch.randint(0, length + 1, (users,), generator=g)
    lengths[:2] = torch.tensor([0, length])  # an empty history and a full one
    pad = torch.arange(length).unsqueeze(0) < (length - lengths).unsqueeze(1)
    full = model.encode(codes, pad)
    for chunk in (1, 3, 64):
        cut = model.encode_by_length(codes, pad, chunk=chunk)
        assert cut.states.shape == full.states.shape and torch.equal(cut.valid, full.valid)
        torch.testing.assert_close(cut.states[cut.valid], full.states[full.valid], atol=1e-5, rtol=1e-5)
        a, b = model.generate(full, 6), model.generate(cut, 6)
        assert torch.equal(a.codes, b.codes)
        torch.testing.assert_close(a.log_probs, b.log_probs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("encoding,attention", ENCODINGS)
@torch.no_grad()
def test_prefix_nll_of_a_window_equals_encoding_each_prefix(encoding, attention):
    model = make_model(encoding, attention=attention).eval()
    window = random_codes(3, 6, seed=7)
    valid = torch.ones(3, 6, dtype=torch.bool)
    valid[1, :2] = False  # left padding: user 1 has 4 items
    if attention == "bidirectional":
        with pytest.raises(ValueError, match="causal"):
            model.prefix_nll(window, valid, 5)
        return
    nll = model.prefix_nll(window, valid, 5)
    assert nll.shape == (3, 5) and torch.isfinite(nll).all()
    torch.testing.assert_close(model.prefix_nll(window, valid, 2), nll[:, 3:], atol=1e-5, rtol=1e-5)
    for j in range(1, 6):
        # the window's items before j, left-padded (with junk codes) as at evaluation time
        hist = torch.cat([random_codes(3, 6 - j, seed=j), window[:, :j]], 1)
        pad = torch.cat([torch.ones(3, 6 - j, dtype=torch.bool), ~valid[:, :j]], 1)
        expected = model.sid_nll(model.encode(hist, pad), window[:, j])
        real = valid[:, j - 1]  # the prefix holds at least one real item
        torch.testing.assert_close(nll[real, j - 1], expected[real], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="n_last"):
        model.prefix_nll(window, valid, 6)


@pytest.mark.parametrize("encoding", ["item", "sid"])
@torch.no_grad()
def test_prefix_pair_nll_equals_candidate_nll_of_each_prefix(encoding):
    """PIT's windowed selection: any list of (window, target column, SID) triples, one encoder pass
    and one decoder pass, gives what scoring each prefix as its own history gives."""
    model = make_model(encoding, attention="causal").eval()
    window = random_codes(3, 6, seed=8)
    valid = torch.ones(3, 6, dtype=torch.bool)
    valid[2, :3] = False
    memory = model.encode_windows(window, valid)
    mask, allowed = model.prefix_mask(valid, 4)
    cands = torch.stack([random_codes(3, 4, seed=20 + c) for c in range(3)], 2)  # (B, n_last=4, C=3, L)
    # every real (window, column) with a varying number of candidates, in a shuffled order, window 1 left out
    triples = [(r, c, k) for r in (0, 2) for c in range(4) if valid[r, 2 + c - 1] for k in range((r + c) % 3 + 1)]
    triples = [triples[i] for i in torch.randperm(len(triples), generator=torch.Generator().manual_seed(0)).tolist()]
    rows, cols, ks = (torch.tensor(x) for x in zip(*triples))
    nll = model.prefix_pair_nll(memory, mask, rows, cols, cands[rows, cols, ks])
    assert nll.shape == (len(triples),)
    for p, (r, c, k) in enumerate(triples):
        j = 2 + c  # window item scored by column c
        hist, pad = window[r:r + 1, :j], ~valid[r:r + 1, :j]
        expected = model.candidate_nll(model.encode(hist, pad), cands[r:r + 1, c, k:k + 1])[0, 0]
        torch.testing.assert_close(nll[p], expected, atol=1e-4, rtol=1e-4)
    for c in range(4):
        j = 2 + c
        real = valid[:, j - 1]
        assert allowed[real, c].sum(-1).tolist() == (valid[real, :j].sum(1) * (model.n_levels if encoding == "sid" else 1)).tolist()


@pytest.mark.parametrize("encoding", ["item", "sid"])
@torch.no_grad()
def test_label_smoothed_loss_is_torchs_cross_entropy_per_level(encoding):
    """Each level spreads eps over its own codes (SIZES differ), as F.cross_entropy does."""
    import torch.nn.functional as F
    model = make_model(encoding).eval()
    codes, pad = histories()
    target = random_codes(4, seed=5)
    memory = model.encode(codes, pad)
    log_probs, _ = model._decode(model._teacher_inputs(target.unsqueeze(1)), 0, model.cross_keys_values(memory),
                                 model._cross_mask(memory), None)
    for eps in (0.0, 0.1, 0.5):
        expected = sum(F.cross_entropy(log_probs[:, 0, lvl, :size], target[:, lvl], label_smoothing=eps)
                       for lvl, size in enumerate(SIZES)) / len(SIZES)
        torch.testing.assert_close(model.loss(codes, pad, target, smoothing=eps), expected, atol=1e-5, rtol=1e-5)
    # the smoothing does move the loss, and without it the loss is the SIDs' mean -log P per code
    assert not torch.isclose(model.loss(codes, pad, target, smoothing=0.5), model.loss(codes, pad, target))
    torch.testing.assert_close(model.loss(codes, pad, target), model.sid_nll(memory, target).mean() / len(SIZES))
    torch.testing.assert_close(model.loss(codes, pad, target), model.candidate_nll(memory, target[:, None]).mean() / len(SIZES))
    with pytest.raises(ValueError, match="smoothing"):  # scores renormalised over allowed codes are not a loss
        model._nll(memory, target[:, None], model._cross_mask(memory), smoothing=0.1,
                   last_valid=torch.ones(4, 1, SIZES[-1], dtype=torch.bool))


@torch.no_grad()
def test_label_smoothed_prefix_nll_equals_smoothed_loss_of_each_prefix():
    model = make_model("item", attention="causal").eval()
    window = random_codes(3, 6, seed=7)
    valid = torch.ones(3, 6, dtype=torch.bool)
    nll = model.prefix_nll(window, valid, 5, smoothing=0.2)
    for j in range(1, 6):
        for u in range(3):
            expected = model.loss(window[u:u + 1, :j], torch.zeros(1, j, dtype=torch.bool), window[u:u + 1, j],
                                  smoothing=0.2) * len(SIZES)
            torch.testing.assert_close(nll[u, j - 1], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("attention", ["bidirectional", "causal"])
@torch.no_grad()
def test_all_padding_history_gives_finite_scores(attention):
    model = make_model("sid", attention=attention).eval()
    codes, pad = histories()
    pad[3] = True
    assert torch.isfinite(model.sid_nll(model.encode(codes, pad), random_codes(4, seed=6))).all()


@pytest.mark.parametrize("encoding", ["item", "sid"])
def test_learns_a_planted_next_item_rule(encoding):
    """Target = the SID of the last history item shifted by one code per level: learnable only by
    reading the history through the encoder."""
    model = make_model(encoding, d_model=32, layers=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sizes = torch.tensor(SIZES)
    losses = []
    for step in range(80):
        codes = random_codes(64, 2, seed=100 + step)
        loss = model.loss(codes, torch.zeros(64, 2, dtype=torch.bool), (codes[:, -1] + 1) % sizes)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 1.0 and losses[-1] < 0.2 * losses[0]


def test_config_rejects_heads_not_dividing_d_model():
    with pytest.raises(ValidationError, match=r"heads \(6\) must divide d_model \(128\)"):
        UserToTokenConfig(d_model=128, heads=6)


def test_history_codes_must_have_the_models_levels():
    model = make_model("item")
    with pytest.raises(ValueError, match="2 levels, the model 3"):
        model.encode(torch.zeros(2, 3, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.bool))
