"""PIT's user-guided minimum-loss SID selection, per (history, target) pair or per window.

Each target's SID is the one of its ``n_candidates`` strongest beam-index SIDs with the lowest
User-to-Token loss for this user, plus log(items holding the SID) when ``collision_penalty`` is on
(a SID shared by n items names the target only with probability 1/n; without the charge the
cheapest SID is the one every item shares). Candidates are scored with dropout off (the choice
should follow the model, not the noise), in one decoder pass against the user's memory; targets
with a single candidate skip scoring. Training and the service's online feedback apply the same
rule. With a ``temperature`` (``pit.selection_rule="posterior"``) the SID is drawn with probability
proportional to exp(-cost / temperature): at temperature 1 the posterior P(SID | user, item) of a
model whose item probability sums over the item's SIDs (what the one-to-many decoding scores), so
training is stochastic EM on that mixture where the minimum is its hard-EM limit, which
reinforces whichever SID U2T already prefers. With a ``baseline`` (``pit.selection_rule="relative"``, see
``pitrec.train.selection_baseline``) the choice is made on the cost relative to the item's other
users instead, and the scored costs update the baseline.

``share`` < 1 scores a random share of the targets that have a choice (drawn by ``rng``); the
others train on their strongest SID and are reported as ``skipped``, so that the caller does not
record them as selections (they were not chosen by any loss). Scoring is the cost of
co-evolution: it grows with the share of items the index gives several SIDs, and the share caps
it (``benchmarks/step_cost.py`` measures both).

``precision="bfloat16"`` scores under ``torch.autocast``: the scoring is forward-only and only its
argmin is used, so the matrix products can run on AMX / AVX512-BF16 units; a near-tie may then
flip (the agreement with float32 is measured by ``benchmarks/tuning/selection_precision.py``).
Without such units (a CPU with AVX2 only) bfloat16 is converted, not computed, and the scoring
costs several times float32's: ``"auto"`` scores in bfloat16 where the device has native units
(``pitrec.utils.runtime.native_bfloat16``) and in float32 elsewhere; an explicit ``"bfloat16"``
is kept as asked, with a warning on such a machine.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import numpy as np
import torch

from pitrec.decoding.prefix_scoring import prefix_shared_log_probs
from pitrec.index.beam_index import BeamIndex
from pitrec.models.user_to_token import Memory, UserToToken
from pitrec.train import distributed as dist
from pitrec.train.selection_baseline import SelectionBaseline
from pitrec.utils.runtime import native_bfloat16, warn_if_slow_bfloat16


class Selection(NamedTuple):
    """Per target: the SID to train on (N, L), its candidate column (N,), whether it was scored
    (N,), and whether it had a choice but was left unscored by ``share`` (N,)."""

    chosen: torch.Tensor
    pick: torch.Tensor
    scored: torch.Tensor
    skipped: torch.Tensor


def _draw(choice: torch.Tensor, share: float, rng: np.random.Generator | None) -> torch.Tensor:
    """Which of the targets with a choice are scored: all, or each with probability ``share``."""
    if not 0 < share <= 1:
        raise ValueError(f"selection share must lie in (0, 1], got {share}")
    if share >= 1:
        return choice
    if rng is None:
        raise ValueError("a selection share below 1 needs a random generator (rng)")
    return choice & torch.from_numpy(rng.random(len(choice)) < share).to(choice.device)


PRECISIONS = ("float32", "bfloat16", "auto")


def scoring_precision(precision: str, device_type: str) -> str:
    """The precision the candidates are scored in: ``auto`` resolved for this device (bfloat16
    where it has native bfloat16 units, float32 elsewhere); an explicit bfloat16 warns where it is
    slower than float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"selection precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16(device_type) else "float32"
    if precision == "bfloat16":
        warn_if_slow_bfloat16(device_type, "PIT's selection scoring (pit.selection_precision)")
    return precision


@contextlib.contextmanager
def _scoring(u2t: UserToToken, device: torch.device, precision: str):
    """Candidates are scored with dropout off, then ``u2t`` goes back to its mode. bfloat16: under
    autocast. float32: the caller's context unchanged (an ``autocast(enabled=False)`` here would
    switch off a ``train.precision=bfloat16`` step's autocast)."""
    precision = scoring_precision(precision, device.type)
    was_training = u2t.training
    u2t.eval()
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bfloat16" else contextlib.nullcontext():
            yield
    finally:
        u2t.train(was_training)


def _charge(index: BeamIndex, cand_np: np.ndarray, device) -> torch.Tensor:
    counts = index.sid_item_counts(cand_np)
    return torch.from_numpy(np.log(np.maximum(counts, 1))).float().to(device)


@torch.no_grad()
def selection_cost(u2t: UserToToken, index: BeamIndex, memory: Memory, cand: torch.Tensor, mask: torch.Tensor,
                   collision_penalty: bool = True, precision: str = "float32") -> torch.Tensor:
    """What the selection minimises: the U2T loss (dropout off) of each candidate SID (B, C, L)
    given its row's history, plus the collision charge; (B, C), +inf where ``mask`` is False."""
    with _scoring(u2t, memory.states.device, precision):
        cost = u2t.candidate_nll(memory, cand, mask).float()
    if collision_penalty:
        cost = cost + _charge(index, cand.cpu().numpy(), cost.device)
    return cost


def _choose(cost: torch.Tensor, items: np.ndarray, cand_np: np.ndarray, rows: torch.Tensor,
            baseline: SelectionBaseline | None, temperature: float = 0.0,
            rng: np.random.Generator | None = None) -> torch.Tensor:
    """The column each scored row trains on: the lowest cost; with a ``temperature`` a draw with
    probability proportional to exp(-cost / temperature) (Gumbel-max, from ``rng``); with a
    baseline the relative rule's choice (then the costs join the baseline)."""
    if temperature > 0:
        if rng is None:
            raise ValueError("a selection temperature above 0 needs a random generator (rng)")
        gumbel = torch.from_numpy(rng.gumbel(size=tuple(cost.shape))).to(cost)
        return (cost / temperature - gumbel).argmin(1)  # +inf (no candidate) is never drawn
    if baseline is None:
        return cost.argmin(1)
    keep = rows.cpu().numpy()
    return baseline.choose_and_update(items[keep], cand_np[keep], cost)


@torch.no_grad()
def min_loss_sids(u2t: UserToToken, index: BeamIndex, memory: Memory, target: torch.Tensor, n_candidates: int,
                  collision_penalty: bool = True, precision: str = "float32", share: float = 1.0,
                  rng: np.random.Generator | None = None, baseline: SelectionBaseline | None = None,
                  temperature: float = 0.0) -> Selection:
    """One history per row (B rows)."""
    items_np = target.cpu().numpy()
    cand_np, mask_np, _ = index.candidates(items_np, n_candidates)
    device = memory.states.device
    cand = torch.from_numpy(cand_np).to(device)
    mask = torch.from_numpy(mask_np).to(device)
    pick = torch.zeros(len(target), dtype=torch.long, device=device)
    choice = mask.sum(1) > 1
    multi = _draw(choice, share, rng)
    if multi.any():
        sub = Memory(memory.states[multi], memory.valid[multi])
        cost = selection_cost(u2t, index, sub, cand[multi], mask[multi], collision_penalty, precision)
        pick[multi] = _choose(cost, items_np, cand_np, multi, baseline, temperature, rng)
    return Selection(cand[torch.arange(len(target), device=device), pick], pick, multi, choice & ~multi)


@torch.no_grad()
def min_loss_sids_prefix(u2t: UserToToken, index: BeamIndex, memory: Memory, prefix_mask: torch.Tensor,
                         targets: torch.Tensor, real: torch.Tensor, n_candidates: int,
                         collision_penalty: bool = True, precision: str = "float32", share: float = 1.0,
                         rng: np.random.Generator | None = None,
                         baseline: SelectionBaseline | None = None, temperature: float = 0.0) -> Selection:
    """Windows (``UserToToken.encode_windows``): ``targets`` (B, n_last) items, ``real`` (B, n_last)
    which of them are training targets. Returns the selection of the real ones, in row-major order."""
    device = memory.states.device
    flat = targets[real]
    items_np = flat.cpu().numpy()
    cand_np, mask_np, _ = index.candidates(items_np, n_candidates)
    cand = torch.from_numpy(cand_np).to(device)
    mask = torch.from_numpy(mask_np).to(device)
    pick = torch.zeros(len(flat), dtype=torch.long, device=device)
    choice = mask.sum(1) > 1
    multi = _draw(choice, share, rng)
    if multi.any():
        cost = prefix_selection_cost(u2t, index, memory, prefix_mask, real, cand_np, mask, multi,
                                     collision_penalty, precision)
        pick[multi] = _choose(cost, items_np, cand_np, multi, baseline, temperature, rng)
    return Selection(cand[torch.arange(len(flat), device=device), pick], pick, multi, choice & ~multi)


@torch.no_grad()
def prefix_selection_cost(u2t: UserToToken, index: BeamIndex, memory: Memory, prefix_mask: torch.Tensor,
                          real: torch.Tensor, cand_np: np.ndarray, mask: torch.Tensor, rows: torch.Tensor,
                          collision_penalty: bool = True, precision: str = "float32") -> torch.Tensor:
    """``selection_cost`` for windows: the cost of each candidate (``cand_np`` (N, C, L) of the N
    real targets in row-major order, ``mask`` (N, C)) for the targets in ``rows`` (N,) bool,
    (rows.sum(), C), +inf where ``mask`` is False. Only the listed targets are decoded, each
    distinct prefix of a target's candidates once, and the collision charge is looked up for those rows only (its cost grows with the
    index's edges)."""
    device = memory.states.device
    cand = torch.from_numpy(cand_np).to(device)
    window, column = real.nonzero(as_tuple=True)  # of each real target, in row-major order
    t = rows.nonzero().squeeze(1)  # the targets to score, each with its candidates
    with _scoring(u2t, device, precision):
        # an item's candidate SIDs share their first codes (siblings share two): each distinct
        # prefix of a target's candidates is decoded once
        step = u2t.window_target_step(memory, prefix_mask, window[t], column[t])
        log_p = prefix_shared_log_probs(step, cand[t], mask[t], u2t.codebook_sizes).sum(-1)
    cost = (-log_p).masked_fill(~mask[t], float("inf"))
    if collision_penalty:
        cost = cost + _charge(index, cand_np[rows.cpu().numpy()], device)
    return cost


class SelectionCounters:
    """How often co-evolution picked a SID other than the item's strongest one."""

    def __init__(self) -> None:
        self.samples = self.scored = self.switched = self.skipped = 0

    def add(self, samples: int, scored: int, switched: int, skipped: int = 0) -> None:
        self.samples += samples
        self.scored += scored
        self.switched += switched
        self.skipped += skipped

    def all_reduce(self) -> None:
        """Counts over all ranks (each counted only its own batches)."""
        total = dist.all_reduce_sum(torch.tensor([self.samples, self.scored, self.switched, self.skipped],
                                                 dtype=torch.int64))
        self.samples, self.scored, self.switched, self.skipped = (int(v) for v in total.tolist())

    def report(self) -> dict[str, float]:
        n = max(self.samples, 1)
        return {"selection_scored_share": self.scored / n, "selection_switched_share": self.switched / n,
                "selection_skipped_share": self.skipped / n}
