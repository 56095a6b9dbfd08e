"""log P(SID | user) for the SIDs an explained ranking lists, reusing what the user's search computed.

An explained PIT ranking reports every SID of every returned item, and the beams reached only some
of them: on beauty with sibling SIDs (4 per item) 10 of the 40 SIDs of a user's top 10. Decoding
the other 30 from the start doubled the served ranking's CPU time. Three sources, cheapest first:

1. the last level's frontier: the search scored every last code after each prefix its last level
   extended, so a SID sharing its first L - 1 codes with one of them is read off, no decoder step;
2. the level before: a SID sharing its first L - 2 codes with a prefix the search extended there
   has those levels scored, and one decoder step from that prefix's kept cache scores its last
   code (PIT's siblings share their first two codes with the item's primary, and with the
   collision level a SID has L = 4). Under ``renormalize_last`` a SID alone on its first L - 1
   codes scores its last code 0, so it needs no step at all (the search skips such beams too);
3. the rest are decoded from the start, each distinct prefix once (``prefix_shared_log_probs``).

Every source gives the model's teacher-forced log-probability (the last level renormalised within
the trie's codes after the prefix, with ``renormalize_last``), so which one scored a SID changes
nothing but the cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from pitrec.decoding.beam_search import gather_beams, users_first_groups
from pitrec.decoding.pit_ranker import RankedBeams
from pitrec.decoding.prefix_scoring import prefix_shared_log_probs
from pitrec.index.trie import Trie
from pitrec.models.user_to_token import Memory, UserToToken


@dataclass
class SourceCounts:
    """How many SIDs each source scored (``benchmarks/tuning/pit_decode_parts.py`` prints them)."""

    frontier: int = 0
    one_step: int = 0  # scored from the level before, with a decoder step
    alone: int = 0  # from the level before without a step: alone on its prefix, renormalised last level
    decoded: int = 0


def sid_log_probs(model: UserToToken, ranked: RankedBeams, users: torch.Tensor, sids: torch.Tensor, trie: Trie,
                  renormalize_last: bool = False, counts: SourceCounts | None = None) -> torch.Tensor:
    """SIDs (N, L) of users (N,) (rows of ``ranked``, repeats allowed) -> log P(SID | user) (N,)
    float32. Every SID must be in ``trie``, the trie the search ran on."""
    counts = counts if counts is not None else SourceCounts()
    out = _from_frontier(ranked, users, sids, trie).float()
    counts.frontier += int(torch.isfinite(out).sum())
    rest = (~torch.isfinite(out)).nonzero().squeeze(1)
    if len(rest) and ranked.penultimate is not None:
        got, alone = _one_step(model, ranked, users[rest], sids[rest], trie, renormalize_last)
        found = torch.isfinite(got)
        out[rest[found]] = got[found].float()
        counts.alone += int((found & alone).sum())
        counts.one_step += int((found & ~alone).sum())
        rest = rest[~found]
    if len(rest):
        out[rest] = _decoded(model, ranked, users[rest], sids[rest], trie, renormalize_last).float()
        counts.decoded += len(rest)
    return out


def _from_frontier(ranked: RankedBeams, users: torch.Tensor, sids: torch.Tensor, trie: Trie) -> torch.Tensor:
    """-inf where the last level did not extend the SID's prefix."""
    return ranked.frontier.score(users, trie.prefix_nodes(sids), sids[:, -1])


def _one_step(model: UserToToken, ranked: RankedBeams, users: torch.Tensor, sids: torch.Tensor, trie: Trie,
              renormalize_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores, -inf where the level before the last did not extend the SID's first L - 2 codes, and
    which SIDs were scored without a step (alone on their prefix, renormalised last level)."""
    pen, last = ranked.penultimate, sids.shape[1] - 1
    prefix, row = pen.locate(users, trie.prefix_nodes(sids, last - 1), sids[:, last - 1])
    out = torch.full_like(prefix, float("-inf"))
    alone = torch.zeros(len(sids), dtype=torch.bool, device=sids.device)
    last_valid = trie.last_level_mask(sids) if renormalize_last else None  # (N, V_last)
    if renormalize_last:  # log P(the prefix's only last code) = 0
        alone = torch.isfinite(prefix) & (last_valid.sum(-1) == 1)
        out[alone] = prefix[alone]
    ok = (torch.isfinite(prefix) & ~alone).nonzero().squeeze(1)
    if not len(ok):
        return out, alone
    users, sids, row = users[ok], sids[ok], row[ok]
    # one decoder step per distinct (user, prefix row, code at L - 2), laid out users first (N, S)
    # like the search's beams, so the memory's cross-attention keys/values stay once per user
    B = ranked.memory.states.shape[0]
    key = (users * pen.nodes.shape[1] + row) * int(trie.codebook_sizes[last - 1]) + sids[:, last - 1]
    uniq, inverse = torch.unique(key, return_inverse=True)  # sorted: grouped by user
    rep = torch.empty(len(uniq), dtype=torch.long, device=key.device)
    rep.scatter_(0, inverse, torch.arange(len(key), device=key.device))
    u = users[rep]
    per_user = torch.bincount(u, minlength=B)
    slot = torch.arange(len(u), device=u.device) - (torch.cumsum(per_user, 0) - per_user)[u]
    step = partial(model.decode_step, ranked.memory, ranked.cross)
    log_probs = torch.empty(len(uniq), int(trie.codebook_sizes[last]), device=u.device)
    at = torch.full((B,), -1, dtype=torch.long, device=u.device)  # a user's row within its group
    for group, width in users_first_groups(per_user):
        at[group] = torch.arange(len(group), device=u.device)
        mine = torch.isin(u, group).nonzero().squeeze(1)
        r, s = at[u[mine]], slot[mine]
        parent = torch.zeros(len(group), width, dtype=torch.long, device=u.device)  # padding repeats row 0
        prev = torch.zeros(len(group), width, dtype=torch.long, device=u.device)
        parent[r, s], prev[r, s] = row[rep[mine]], sids[rep[mine], last - 1]
        got, _ = step(prev, last, gather_beams(pen.cache, group, parent), rows=group)
        log_probs[mine] = got[r, s].float()  # (distinct, V_last)
    if renormalize_last:
        log_probs = log_probs.masked_fill(~last_valid[ok][rep], float("-inf"))
        log_probs = log_probs - log_probs.logsumexp(-1, keepdim=True)
    out[ok] = prefix[ok].float() + log_probs[inverse, sids[:, last]]
    return out, alone


def _decoded(model: UserToToken, ranked: RankedBeams, users: torch.Tensor, sids: torch.Tensor, trie: Trie,
             renormalize_last: bool) -> torch.Tensor:
    """Every SID from the start, grouped by user: one memory row per user (cross-attention
    keys/values once per user), each distinct prefix decoded once."""
    order = torch.sort(users, stable=True).indices
    users_sorted = users[order]
    distinct, urow, per_user = torch.unique_consecutive(users_sorted, return_inverse=True, return_counts=True)
    pos = torch.arange(len(users), device=users.device) - (torch.cumsum(per_user, 0) - per_user)[urow]
    grid = sids.new_zeros((len(distinct), int(per_user.max()), sids.shape[1]))
    grid_mask = torch.zeros(grid.shape[:2], dtype=torch.bool, device=sids.device)
    grid[urow, pos], grid_mask[urow, pos] = sids[order], True
    memory = Memory(ranked.memory.states[distinct], ranked.memory.valid[distinct])
    last_valid = trie.last_level_mask(grid) if renormalize_last else None
    step = partial(model.decode_step, memory, model.cross_keys_values(memory))
    scored = prefix_shared_log_probs(step, grid, grid_mask, model.codebook_sizes, last_valid).sum(-1)
    out = torch.empty(len(users), dtype=torch.float32, device=sids.device)
    out[order] = scored[urow, pos].float()
    return out
