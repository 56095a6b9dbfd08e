"""Item-to-Token (I2T): PIT's learned tokenizer, a small decoder-only Transformer that writes an
item's semantic ID from its collaborative embedding.

``P(c | X_i) = prod_l P(c_l | c_<l, X_i)``: the (projected) item embedding is the first input
(BOS), then the codes of earlier levels. Generating SIDs instead of assigning them by nearest
centroid is what lets PIT propose several plausible SIDs per item (beam search) and tokenise a
new item from its features alone.

I2T reads ``sg(X_i)``: the embedding is detached inside ``nll`` and ``generate`` so the tokenizer's
loss never pulls the item embedding towards being easy to tokenise (X_i is shaped by the CSA
loss and by U2T only). The vocabulary is the one U2T uses: level ``l`` code ``c`` is token
``offset[l] + c`` and level ``l`` is predicted only over its own range, so every output is a
well-formed SID of the same codebooks.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import torch
from pydantic import Field, model_validator
from torch import nn

from pitrec.config import Section
from pitrec.decoding.beam_search import BeamResult, beam_search
from pitrec.index.trie import Trie
from pitrec.models.layers import init_normal, level_log_probs
from pitrec.models.transformer_blocks import KVCache, cached_self_attention
from pitrec.registry import SECTIONS

LayerCache = KVCache  # the keys/values of each earlier position, (B, W, 2, heads, d/heads) each


@SECTIONS.register("i2t")
class ItemToTokenConfig(Section):
    # Small on purpose: it maps one vector to L codes, a far easier job than U2T's.
    d_model: int = Field(64, ge=8)
    heads: int = Field(4, ge=1)
    layers: int = Field(2, ge=1)
    ffn: int = Field(256, ge=8)
    dropout: float = Field(0.1, ge=0, lt=1)
    init_std: float = Field(0.02, gt=0)

    @model_validator(mode="after")
    def _heads_divide(self) -> "ItemToTokenConfig":
        if self.d_model % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide d_model ({self.d_model})")
        return self


class CausalBlock(nn.Module):
    """Pre-norm causal self-attention with a KV cache, then a feed-forward.

    Written here rather than borrowed from U2T's layers so the tokenizer does not change when
    the recommender's internals do (they are tuned separately)."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: LayerCache | None) -> tuple[torch.Tensor, LayerCache]:
        """x (B, W, T, d): T new positions of W sequences per item, after the cached t earlier ones."""
        B, W, T, d = x.shape
        qkv = self.qkv(self.norm1(x).reshape(B * W, T, d)).unflatten(-1, (3, self.heads, -1))  # (B*W, T, 3, h, d/h)
        y, cache = cached_self_attention(qkv[:, :, 0], qkv[:, :, 1:], cache, B,
                                         dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.out(y).reshape(B, W, T, d))
        x = x + self.drop(self.ffn(self.norm2(x)))
        return x, cache


class ItemToToken(nn.Module):
    def __init__(self, item_dim: int, codebook_sizes: Sequence[int], cfg: ItemToTokenConfig):
        super().__init__()
        self.codebook_sizes = [int(s) for s in codebook_sizes]
        self.n_levels = len(self.codebook_sizes)
        self.item_dim = int(item_dim)
        sizes = torch.tensor(self.codebook_sizes)
        self.register_buffer("offsets", torch.cumsum(sizes, 0) - sizes, persistent=False)
        self.vocab_size = int(sizes.sum())
        d = cfg.d_model
        self.item_proj = nn.Linear(self.item_dim, d)  # X_i -> the BOS input
        self.token_emb = nn.Embedding(self.vocab_size, d)
        self.pos_emb = nn.Embedding(self.n_levels, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(CausalBlock(d, cfg.heads, cfg.ffn, cfg.dropout) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, self.vocab_size)
        self.apply(partial(init_normal, std=cfg.init_std))

    # -- teacher forcing ------------------------------------------------------------------------
    def level_log_probs(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """x (B, D), codes (B, L) -> (B, L, V_max): log P(level l = . | c_<l, x) over level l's
        own codes, padded with -inf where a level is smaller than the largest."""
        bos = self.start_inputs(x).unsqueeze(1)
        self._check_codes(codes, x.shape[0])
        prev = self.token_emb(self.offsets[:-1] + codes[:, :-1])
        h, _ = self._run(torch.cat([bos, prev], dim=1).unsqueeze(1), 0, None)
        return level_log_probs(h[:, 0], self.head, self.offsets, self.codebook_sizes, range(self.n_levels))

    def nll(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """-log P(codes | sg(x)) per item, (B, D), (B, L) -> (B,)."""
        log_probs = self.level_log_probs(x, codes)
        return -log_probs.gather(-1, codes.unsqueeze(-1)).squeeze(-1).sum(-1)

    def loss(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy per code, comparable across SID lengths (and to U2T's loss)."""
        return self.nll(x, codes).mean() / self.n_levels

    # -- generation ----------------------------------------------------------------------------
    def step(self, bos: torch.Tensor, prev_codes: torch.Tensor | None, level: int,
             cache: list[LayerCache] | None, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, list[LayerCache]]:
        """One decoding step (a ``decoding.beam_search.StepFn`` once ``bos`` is bound).

        bos (B, d) is ``start_inputs(x)``, computed once per item; prev_codes (B, W) are the
        level ``level - 1`` codes of W beams (None at level 0, which has one beam per item).
        Returns log-probs (B, W, V_level) and the cache extended by this position. ``rows`` (N,):
        the beams of N items instead, prev_codes (N, S) and cache (N, S, ...), row n from item rows[n].
        """
        if rows is not None:
            bos = bos[rows]
        if prev_codes is None:
            inputs = bos[:, None, None, :]
        else:
            inputs = self.token_emb(self.offsets[level - 1] + prev_codes).unsqueeze(2)
        h, cache = self._run(inputs, level, cache)
        return level_log_probs(h, self.head, self.offsets, self.codebook_sizes, range(level, level + 1))[:, :, 0, :self.codebook_sizes[level]], cache

    def start_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The BOS input of each item from sg(x): (B, D) -> (B, d). The detach is the stop-gradient."""
        if x.ndim != 2 or x.shape[1] != self.item_dim:
            raise ValueError(f"item embeddings must be (B, {self.item_dim}), got {tuple(x.shape)}")
        return self.item_proj(x.detach())

    @torch.no_grad()
    def generate(self, x: torch.Tensor, beam_width: int, trie: Trie | None = None,
                 renormalize_last: bool = False, prefix: torch.Tensor | None = None) -> BeamResult:
        """The ``beam_width`` most probable SIDs per item, best first: unconstrained (proposals
        for the beam index), or restricted to the SIDs of ``trie``.

        ``prefix`` (B, k), k < L: every item's SIDs start with its row of codes, so the beams are
        the item's most probable SIDs below that prefix (siblings of an existing SID); a beam's
        log-probability still counts the prefix's levels."""
        step = partial(self.step, self.start_inputs(x))
        if prefix is not None:
            if prefix.ndim != 2 or prefix.shape[0] != x.shape[0] or not 0 < prefix.shape[1] < self.n_levels:
                raise ValueError(f"prefix must be ({x.shape[0]}, k) with 0 < k < {self.n_levels}, got {tuple(prefix.shape)}")
            self._check_codes(torch.cat([prefix, prefix.new_zeros(len(prefix), self.n_levels - prefix.shape[1])], 1), len(prefix))
            step = partial(_forced_prefix_step, step, prefix)
        return beam_search(step, x.shape[0], self.codebook_sizes, beam_width, trie, device=x.device,
                           renormalize_last=renormalize_last)

    # -- internals -----------------------------------------------------------------------------
    def _run(self, inputs: torch.Tensor, start: int, cache: list[LayerCache] | None) -> tuple[torch.Tensor, list[LayerCache]]:
        """inputs (B, W, T, d) at positions start..start+T-1 -> normed states and the caches."""
        T = inputs.shape[2]
        h = self.drop(inputs + self.pos_emb.weight[start:start + T])
        new_cache = []
        for i, block in enumerate(self.blocks):
            h, c = block(h, None if cache is None else cache[i])
            new_cache.append(c)
        return self.norm(h), new_cache


    def _check_codes(self, codes: torch.Tensor, n: int) -> None:
        if codes.ndim != 2 or tuple(codes.shape) != (n, self.n_levels):
            raise ValueError(f"codes must be ({n}, {self.n_levels}), got {tuple(codes.shape)}")
        bad = (codes < 0) | (codes >= torch.tensor(self.codebook_sizes, device=codes.device))
        if bad.any():
            r, l = bad.nonzero()[0].tolist()
            raise ValueError(f"codes row {r} level {l}: {int(codes[r, l])} outside [0, {self.codebook_sizes[l]})")


def _forced_prefix_step(step, prefix: torch.Tensor, prev: torch.Tensor | None, level: int, cache: Any,
                        rows: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
    """``step`` with every code but the prefix's masked at the prefix's levels: the search keeps
    one live beam per item until the prefix ends, then branches as usual."""
    log_probs, cache = step(prev, level, cache, rows=rows)
    if level < prefix.shape[1]:
        forced = prefix[:, level] if rows is None else prefix[rows, level]
        keep = torch.zeros_like(log_probs, dtype=torch.bool)
        keep.scatter_(-1, forced[:, None, None].expand(-1, log_probs.shape[1], 1), True)
        log_probs = log_probs.masked_fill(~keep, float("-inf"))
    return log_probs, cache
