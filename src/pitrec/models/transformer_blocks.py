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


def extend_kv_cache(k: torch.Tensor, v: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Keys/values (N, h, T, d/h) of T new positions after a cache (B, C, h, t, d/h) of t earlier
    ones (N = B*C) -> all t + T keys/values and the causal mask of the new queries (None for a
    single new position, which may see everything)."""
    T = k.shape[2]
    t = 0 if cache is None else cache[0].shape[-2]
    if cache is not None:
        k = torch.cat([cache[0].flatten(0, 1), k], dim=2)
        v = torch.cat([cache[1].flatten(0, 1), v], dim=2)
    causal = None
    if T > 1:
        causal = torch.arange(t + T, device=k.device) <= torch.arange(t, t + T, device=k.device).unsqueeze(1)
    return k, v, causal


class Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (N, S, d) -> (N, h, S, d/h)
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

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
                cache: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, C, T, d): C sequences per user, T new positions each; cache (B, C, h, t, d/h) holds
        the keys/values of the t earlier positions; cross_mask broadcasts to (B, h, C*T, S).
        Returns the output and the extended cache."""
        B, C, T, d = x.shape
        h = self.norm1(x).reshape(B * C, T, d)
        k, v, causal = extend_kv_cache(*self.self_attn.keys_values(h), cache)
        x = x + self.drop(self.self_attn.attend(h, k, v, causal).reshape(B, C, T, d))
        q = self.norm2(x).reshape(B, C * T, d)  # cross-attention: every query of a user, one memory
        x = x + self.drop(self.cross_attn.attend(q, *cross, cross_mask).reshape(B, C, T, d))
        x = x + self.drop(self.ffn(self.norm3(x)))
        return x, (k.unflatten(0, (B, C)), v.unflatten(0, (B, C)))
