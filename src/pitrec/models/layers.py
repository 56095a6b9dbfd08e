"""Pieces the sequence models share: weight initialisation and the per-level output head that
User-to-Token and Item-to-Token both decode SIDs with (one vocabulary, one head, levels of
possibly different sizes)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def init_normal(m: nn.Module, std: float) -> None:
    """N(0, std) weights, zero biases, a zero padding row: small initial logits, so no item or
    code starts out preferred (use with ``module.apply``)."""
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()


def level_log_probs(h: torch.Tensor, head: nn.Linear, offsets: torch.Tensor, codebook_sizes: list[int],
                    levels: range) -> torch.Tensor:
    """h (..., T, d) where position j predicts ``levels[j]`` -> (..., T, V_max) log-probs over that
    level's own slice of the shared head, padded with -inf where a level has fewer codes: a
    position never puts mass on another level's codes."""
    v_max = max(codebook_sizes[l] for l in levels)
    out = h.new_full((*h.shape[:-1], v_max), float("-inf"))
    for j, level in enumerate(levels):
        lo, size = int(offsets[level]), codebook_sizes[level]
        logits = F.linear(h[..., j, :], head.weight[lo:lo + size], head.bias[lo:lo + size])
        out[..., j, :size] = logits.log_softmax(-1)
    return out


def smoothed_nll(picked: torch.Tensor, log_probs: torch.Tensor, eps: float) -> torch.Tensor:
    """Label-smoothed cross-entropy summed over levels: picked (..., L) the targets' log-probs,
    log_probs (..., L, V_max) padded with -inf beyond each level's codes. Each level spreads
    ``eps`` over its own codes only, as ``F.cross_entropy(label_smoothing=eps)`` does per level."""
    real = torch.isfinite(log_probs)
    uniform = -log_probs.masked_fill(~real, 0.0).sum(-1) / real.sum(-1)
    return ((1.0 - eps) * -picked + eps * uniform).sum(-1)
