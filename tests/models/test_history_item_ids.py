"""``u2t.history_item_ids``: a learned id row per trained item added to its code embeddings in the
history. Items with one SID become distinguishable, unknown items fall back to codes alone, and
the one-pass prefix scoring of training still equals encoding each prefix."""

from __future__ import annotations

import pytest
import torch

from pitrec.models.user_to_token import UserToToken, UserToTokenConfig

SIZES = [5, 4, 3]
N_ITEMS = 9


def _model(ids: bool, encoding: str = "item", attention: str = "causal", seed: int = 0,
           id_dropout: float = 0.0) -> UserToToken:
    torch.manual_seed(seed)
    cfg = UserToTokenConfig(d_model=16, heads=4, encoder_layers=2, decoder_layers=2, ffn=32, dropout=0.0,
                            history_encoding=encoding, max_history=8, encoder_attention=attention,
                            history_item_ids=ids, history_item_id_dropout=id_dropout)
    model = UserToToken(SIZES, cfg, N_ITEMS).eval()
    if model.recency_bias is not None:
        torch.nn.init.normal_(model.recency_bias.weight)
    return model


def _codes(users: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, s, (users, length), generator=g) for s in SIZES], -1)


@pytest.mark.parametrize("encoding", ["item", "sid"])
@torch.no_grad()
def test_two_items_with_the_same_codes_are_told_apart_and_unknown_items_are_codes_alone(encoding):
    model = _model(True, encoding)
    codes = _codes(1, 4, seed=1).expand(2, -1, -1)
    pad = torch.zeros(2, 4, dtype=torch.bool)
    items = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 4]])  # same codes, another item last
    memory = model.encode(codes, pad, items)
    assert not torch.allclose(memory.states[0], memory.states[1])
    # items the table does not know (cold start: ids beyond it; padding: -1) add nothing
    plain = _model(False, encoding)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("item_emb")})
    unknown = torch.tensor([[N_ITEMS, N_ITEMS + 5, -1, 100]])
    torch.testing.assert_close(model.encode(codes[:1], pad[:1], unknown).states, plain.encode(codes[:1], pad[:1]).states)


@torch.no_grad()
def test_prefix_scoring_with_ids_equals_encoding_each_prefix():
    model = _model(True)
    window = _codes(3, 6, seed=7)
    items = torch.randint(0, N_ITEMS, (3, 6), generator=torch.Generator().manual_seed(3))
    valid = torch.ones(3, 6, dtype=torch.bool)
    valid[1, :2] = False
    nll = model.prefix_nll(window, valid, 5, items)
    for j in range(1, 6):
        hist = torch.cat([_codes(3, 6 - j, seed=j), window[:, :j]], 1)
        pad = torch.cat([torch.ones(3, 6 - j, dtype=torch.bool), ~valid[:, :j]], 1)
        hist_items = torch.cat([torch.full((3, 6 - j), -1), items[:, :j]], 1)
        expected = model.sid_nll(model.encode(hist, pad, hist_items), window[:, j])
        real = valid[:, j - 1]
        torch.testing.assert_close(nll[real, j - 1], expected[real], atol=1e-4, rtol=1e-4)
    by_length = model.encode_by_length(window, ~valid, chunk=2, items=items)
    full = model.encode(window, ~valid, items)
    torch.testing.assert_close(by_length.states[by_length.valid], full.states[full.valid], atol=1e-5, rtol=1e-5)


def test_the_option_needs_item_ids_and_a_catalogue_size():
    model = _model(True)
    with pytest.raises(ValueError, match="needs its item ids"):
        model.encode(_codes(1, 3, seed=0), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="number of items"):
        UserToToken(SIZES, UserToTokenConfig(d_model=16, history_item_ids=True))


@torch.no_grad()
def test_id_dropout_encodes_dropped_items_by_their_codes_in_training_only():
    codes, pad = _codes(64, 4, seed=2), torch.zeros(64, 4, dtype=torch.bool)
    items = torch.randint(0, N_ITEMS, (64, 4), generator=torch.Generator().manual_seed(4))
    plain = _model(False)
    for p, share in ((1.0, 1.0), (0.0, 0.0), (0.5, None)):
        model = _model(True, id_dropout=p)
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("item_emb")})
        codes_only = plain.encode(codes, pad).states
        with_ids = model.eval().encode(codes, pad, items).states
        assert not torch.allclose(with_ids, codes_only)  # evaluation always reads the ids
        model.train()
        torch.manual_seed(0)
        trained = model.encode(codes, pad, items).states
        # a causal encoder: the first position depends on the first item only
        dropped = torch.isclose(trained[:, 0], codes_only[:, 0], atol=1e-6).all(-1).float().mean().item()
        if share is not None:
            assert dropped == share
        else:
            assert 0.3 < dropped < 0.7
