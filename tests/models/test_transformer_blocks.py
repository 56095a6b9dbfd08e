"""The decoder's cached self-attention: the elementwise path of a decoding step equals the
``scaled_dot_product_attention`` path, with earlier positions held per position and broadcast
along the sequences that share them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pitrec.decoding.beam_search import gather_beams
from pitrec.models.transformer_blocks import cached_self_attention


def reference_attention(q, kv, cache, rows):
    """Plain causal attention of the last position over every position, from materialised tensors."""
    N = q.shape[0]
    C = N // rows
    earlier = [p.expand(rows, C, *p.shape[2:]).reshape(N, 1, *p.shape[2:]) for p in cache]
    full = torch.cat(earlier + [kv], 1)  # (N, S, 2, h, dh)
    k, v = full[:, :, 0].transpose(1, 2), full[:, :, 1].transpose(1, 2)
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k, v)
    return y.transpose(1, 2).flatten(2)


@pytest.mark.parametrize("earlier", [0, 1, 3])
def test_a_decoding_step_equals_full_attention_with_shared_and_per_sequence_positions(earlier):
    g = torch.Generator().manual_seed(earlier)
    rows, C, heads, dh = 3, 4, 2, 8
    # position 0 shared by every sequence of a row (size 1 along C), later ones per sequence or
    # broadcast with stride 0
    cache = []
    for j in range(earlier):
        if j == 0:
            cache.append(torch.randn(rows, 1, 2, heads, dh, generator=g))
        elif j == 1:
            cache.append(torch.randn(rows, 1, 2, heads, dh, generator=g).expand(rows, C, 2, heads, dh))
        else:
            cache.append(torch.randn(rows, C, 2, heads, dh, generator=g))
    q = torch.randn(rows * C, 1, heads, dh, generator=g)
    kv = torch.randn(rows * C, 1, 2, heads, dh, generator=g)
    y, extended = cached_self_attention(q, kv, tuple(cache) or None, rows)
    torch.testing.assert_close(y, reference_attention(q, kv, cache, rows), atol=1e-6, rtol=1e-5)
    assert len(extended) == earlier + 1
    assert all(a is b for a, b in zip(extended, cache))  # earlier positions are not copied
    assert extended[-1].data_ptr() == kv.data_ptr() and extended[-1].shape == (rows, C, 2, heads, dh)


def test_several_new_positions_are_causal_and_extend_the_cache():
    g = torch.Generator().manual_seed(7)
    rows, C, T, heads, dh = 2, 3, 3, 2, 4
    cache = (torch.randn(rows, 1, 2, heads, dh, generator=g),)
    q = torch.randn(rows * C, T, heads, dh, generator=g)
    kv = torch.randn(rows * C, T, 2, heads, dh, generator=g)
    y, extended = cached_self_attention(q, kv, cache, rows)
    # each new position, decoded alone after the ones before it, gives the same output
    step_cache = cache
    for i in range(T):
        yi, step_cache = cached_self_attention(q[:, i:i + 1], kv[:, i:i + 1], step_cache, rows)
        torch.testing.assert_close(yi[:, 0], y[:, i], atol=1e-6, rtol=1e-5)
    assert len(extended) == 1 + T
    for a, b in zip(extended, step_cache):
        torch.testing.assert_close(a.expand(rows, C, *a.shape[2:]), b.expand(rows, C, *b.shape[2:]))


def test_gather_beams_keeps_a_shared_row_broadcast():
    shared = torch.arange(2 * 5, dtype=torch.float).view(2, 1, 5)
    per_beam = torch.arange(2 * 3 * 5, dtype=torch.float).view(2, 3, 5)
    users, beams = torch.tensor([1, 0, 1]), torch.tensor([[2, 0], [1, 1], [0, 2]])
    out = gather_beams((shared, shared.expand(2, 3, 5), per_beam), users, beams)
    for got, full in zip(out, (shared.expand(2, 3, 5), shared.expand(2, 3, 5), per_beam)):
        assert got.shape == (3, 2, 5)
        torch.testing.assert_close(got, full.contiguous()[users.unsqueeze(1), beams])
    assert out[0].stride(1) == 0 and out[1].stride(1) == 0  # not copied per beam
    assert out[2].stride(1) != 0
