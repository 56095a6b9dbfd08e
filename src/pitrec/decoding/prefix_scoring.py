"""Scoring given SIDs per user, each distinct SID prefix decoded once.

Explaining a PIT ranking means log P(SID | history) for every SID of every returned item, most of
which the user's beams did not reach. A teacher-forced pass decodes each SID's L positions on its
own, but an item's SIDs share their first codes (with ``pit.proposal_prefix`` all of them share
the first two), so most of those positions repeat work. Here the SIDs of each user are walked
level by level like beams: at level l the decoder runs once per distinct prefix of l codes, with
the prefix's cache gathered from its parent, and every SID below that prefix reads its level-l
log-probability from that one step. Same ``StepFn`` as ``beam_search`` (users first, (B, N, ...)
per-prefix tensors), so the memory's cross-attention keys/values stay once per user.
"""

from __future__ import annotations

from typing import Sequence

import torch

from pitrec.decoding.beam_search import StepFn, reorder_beams


def prefix_shared_log_probs(step: StepFn, codes: torch.Tensor, mask: torch.Tensor, codebook_sizes: Sequence[int],
                            last_valid: torch.Tensor | None = None) -> torch.Tensor:
    """codes (B, C, L) of C SIDs per user, mask (B, C) which are real (every user needs one) ->
    log P(code_l | codes_<l, user) per SID and level, (B, C, L); masked SIDs get copies of a real
    SID's values. Summed over levels: the SID's log-probability, as the teacher-forced pass gives it.
    ``last_valid`` (B, C, V_last): the last level renormalised over these codes, as beam search's
    ``renormalize_last`` scores it (``Trie.last_level_mask`` gives them).

    Decoder steps: one per user at level 0, then one per distinct (user, prefix) at each level,
    instead of L per SID."""
    B, C, L = codes.shape
    if not bool(mask.any(1).all()):
        raise ValueError("every user needs at least one real SID to score")
    # a masked slot repeats the user's first real SID: it adds no prefix of its own
    first_real = mask.float().argmax(1)
    rows = torch.arange(B, device=codes.device)
    codes = torch.where(mask.unsqueeze(-1), codes, codes[rows, first_real].unsqueeze(1)).clamp(min=0)
    out = codes.new_zeros((B, C, L), dtype=torch.float32)
    prev = cache = None
    node = torch.zeros(B, C, dtype=torch.long, device=codes.device)  # each SID's prefix node at this level
    key = torch.zeros(B, C, dtype=torch.long, device=codes.device)  # mixed-radix id of its prefix
    for level in range(L):
        if level > 0:
            key = key * int(codebook_sizes[level - 1]) + codes[..., level - 1]
            parent = node
            node, n_nodes = _rank_within_user(key)
            # one representative SID per node gives the node's parent and its last code
            rep = torch.zeros(B, n_nodes, dtype=torch.long, device=codes.device)
            rep.scatter_(1, node, torch.arange(C, device=codes.device).expand(B, C))
            cache = reorder_beams(cache, parent.gather(1, rep))
            prev = codes[..., level - 1].gather(1, rep)
        log_probs, cache = step(prev, level, cache)  # (B, n_nodes, V_level)
        picked = log_probs.gather(1, node.unsqueeze(-1).expand(B, C, log_probs.shape[-1]))
        out[..., level] = picked.gather(2, codes[..., level:level + 1]).squeeze(-1).float()
        if level == L - 1 and last_valid is not None:
            out[..., level] -= picked.masked_fill(~last_valid, float("-inf")).logsumexp(-1).float()
    return out


def _rank_within_user(key: torch.Tensor) -> tuple[torch.Tensor, int]:
    """key (B, C) -> each entry's rank among its row's distinct keys (B, C), and the most distinct
    keys of any row. Rows are users: ranks restart at 0 in each."""
    sorted_key, order = key.sort(1)
    new = torch.ones_like(sorted_key, dtype=torch.bool)
    new[:, 1:] = sorted_key[:, 1:] != sorted_key[:, :-1]
    rank_sorted = new.long().cumsum(1) - 1
    rank = torch.empty_like(rank_sorted).scatter_(1, order, rank_sorted)
    return rank, int(rank_sorted[:, -1].max()) + 1
