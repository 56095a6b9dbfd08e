"""The Transformer blocks of User-to-Token, written out (not ``nn.Transformer``) because beam
search needs a decoder step with a KV cache and because the decoder input is laid out (B, C, T):
C sequences per user (beams or candidate SIDs) share one encoder memory."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from pitrec.models.user_to_token import UserToTokenConfig


# The self-attention cache of one layer: the keys/values of each earlier position, one
# (B, C, 2, h, d/h) tensor per position. Kept per position, not as one (.., t, ..) tensor, so a
# decoding step appends without copying the earlier positions again (a concatenation per layer and
# level did), and a position whose keys/values every sequence of a row shares (BOS, before the
# beams branch) stays one row, broadcast (size 1 or stride 0 along C), that beam reordering does
# not copy (``decoding.beam_search.gather_beams``).
KVCache = tuple[torch.Tensor, ...]


def cached_self_attention(q: torch.Tensor, kv: torch.Tensor, cache: KVCache | None, rows: int,
                          dropout_p: float = 0.0) -> tuple[torch.Tensor, KVCache]:
    """Causal self-attention of T new positions after the cached earlier ones.

    q (N, T, h, d/h) and kv (N, T, 2, h, d/h) of N = rows * C sequences; ``cache`` holds the t
    earlier positions (see ``KVCache``). Returns the attention output (N, T, h * d/h) and the cache
    extended by the T new positions (views of ``kv``, no copy).

    A single new position (a decoding step) attends with elementwise products, position by
    position: on CPU that took half the time of ``scaled_dot_product_attention``, whose kernel
    works per (sequence, head) block and so spent more on blocks of 1 query x 2-4 keys than on
    arithmetic."""
    N, T, _, heads, dh = kv.shape
    C = N // rows
    earlier = cache or ()
    t = len(earlier)
    per_row = kv.unflatten(0, (rows, C))  # (rows, C, T, 2, h, dh)
    extended = earlier + tuple(per_row[:, :, i] for i in range(T))
    if T == 1 and dropout_p == 0.0:
        qb = q.reshape(rows, C, heads, dh) * dh ** -0.5
        scores = torch.stack([(qb * p[:, :, 0]).sum(-1) for p in extended], -1).softmax(-1)  # (rows, C, h, S)
        y = scores[..., 0, None] * extended[0][:, :, 1]
        for j in range(1, len(extended)):
            y = y + scores[..., j, None] * extended[j][:, :, 1]
        return y.reshape(N, 1, heads * dh), extended
    if earlier:
        before = torch.stack([p.expand(rows, C, *p.shape[2:]) for p in earlier], 2).flatten(0, 1)
        kv = torch.cat([before, kv], 1)  # (N, t + T, 2, h, dh)
    causal = None
    if T > 1:
        causal = torch.arange(t + T, device=kv.device) <= torch.arange(t, t + T, device=kv.device).unsqueeze(1)
    y = F.scaled_dot_product_attention(q.transpose(1, 2), kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2),
                                       attn_mask=causal, dropout_p=dropout_p)
    return y.transpose(1, 2).flatten(2), extended


class Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (N, S, d) -> (N, h, S, d/h)
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def queries_keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, T, d) -> queries (N, T, h, d/h) and packed keys/values (N, T, 2, h, d/h), the
        layout ``cached_self_attention`` takes."""
        return self.q(x).unflatten(-1, (self.heads, -1)), self.kv(x).unflatten(-1, (2, self.heads, -1))

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Queries from x (N, S_q, d) over keys/values (N, h, S_k, d/h); mask True = may attend."""
        y = F.scaled_dot_product_attention(self._split(self.q(x)), k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).flatten(2))


class FeedForward(nn.Sequential):
    def __init__(self, d: int, ffn: int, activation: str):
        # in place: the (tokens, ffn) activation is the largest tensor of a decoding step; ReLU's backward
        # needs only its output, so training is unaffected
        super().__init__(nn.Linear(d, ffn), nn.ReLU(inplace=True) if activation == "relu" else nn.GELU(), nn.Linear(ffn, d))


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + feed-forward."""

    def __init__(self, cfg: "UserToTokenConfig"):
        super().__init__()
        d = cfg.d_model
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, cfg.heads)
        self.ffn = FeedForward(d, cfg.ffn, cfg.activation)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn.attend(h, *self.attn.keys_values(h), mask))
        return x + self.drop(self.ffn(self.norm2(x)))


class DecoderLayer(nn.Module):
    """Pre-norm causal self-attention (with KV cache), cross-attention to the memory, feed-forward."""

    def __init__(self, cfg: "UserToTokenConfig"):
        super().__init__()
        d = cfg.d_model
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = Attention(d, cfg.heads)
        self.cross_attn = Attention(d, cfg.heads)
        self.ffn = FeedForward(d, cfg.ffn, cfg.activation)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cross: tuple[torch.Tensor, torch.Tensor], cross_mask: torch.Tensor,
                cache: KVCache | None) -> tuple[torch.Tensor, KVCache]:
        """x (B, C, T, d): C sequences per user, T new positions each; cache holds the keys/values
        of the earlier positions (``KVCache``); cross_mask broadcasts to (B, h, C*T, S).
        Returns the output and the extended cache."""
        B, C, T, d = x.shape
        h = self.norm1(x).reshape(B * C, T, d)
        y, cache = cached_self_attention(*self.self_attn.queries_keys_values(h), cache, B)
        x = x + self.drop(self.self_attn.out(y).reshape(B, C, T, d))
        q = self.norm2(x).reshape(B, C * T, d)  # cross-attention: every query of a user, one memory
        x = x + self.drop(self.cross_attn.attend(q, *cross, cross_mask).reshape(B, C, T, d))
        x = x + self.drop(self.ffn(self.norm3(x)))
        return x, cache
