"""``pit.selection_rule="relative"``: choose the SID this user prefers more than the item's other users do.

Why: the paper's rule trains on the candidate with the lowest User-to-Token loss for this user. On
beauty the item's primary SID wins that contest for 99% of scored targets, by a median of 6-15 nats
(``benchmarks/tuning/selection_margin_beauty.md``), because U2T has been trained on the primary SID
and never on the alternatives I2T proposes: the loss measures what U2T has seen, not what suits the
user, and the co-evolution never engages.

The relative rule removes the part of each candidate's loss that every user of the item shares. For
each (item, SID) edge it keeps a running mean of the selection cost over the users it was scored
for (the item's population). A candidate's relative cost is its cost for this user minus that mean,
a pointwise-mutual-information reading: how much more this user's history predicts the SID than
the item's users' histories do on average. An alternative replaces the strongest SID only when its
relative cost is lower by more than ``pit.selection_margin`` nats. An alternative with no mean yet
(never scored) cannot win on its first hearing; the strongest SID with no mean keeps the target.

The means are plain running means while an edge has been scored fewer than 1/rate times, then an
exponential moving average with ``pit.selection_baseline_rate``, so they follow U2T as it trains.
They are training state: saved with the checkpoint and restored on resume.
"""

from __future__ import annotations

import numpy as np
import torch

from pitrec.index.index_state import SidKeys

EXTRA_PREFIX = "selection_baseline."  # of its tensors among a checkpoint's extra tensors


def relative_pick(cost: np.ndarray, means: np.ndarray, margin: float) -> np.ndarray:
    """The relative rule on (N, C) costs and means (NaN: never scored; +inf cost: padding): column
    0, the strongest SID, unless an alternative's cost minus its mean is lower than column 0's by
    more than ``margin``. An alternative with no mean cannot win; column 0 with no mean keeps the target."""
    cost = np.asarray(cost, dtype=np.float64)
    rel = cost - means
    rel[:, 1:] += margin
    rel[np.isnan(rel) | ~np.isfinite(cost)] = np.inf
    return np.where(np.isfinite(rel[:, 0]), rel.argmin(1), 0)


class SelectionBaseline:
    """Running mean of the selection cost per (item, SID) edge, and the relative rule's choice."""

    def __init__(self, codebook_sizes: list[int], rate: float, margin: float) -> None:
        if not 0 < rate <= 1:
            raise ValueError(f"selection baseline rate must lie in (0, 1], got {rate}")
        if not margin >= 0:
            raise ValueError(f"selection margin must be >= 0 nats, got {margin}")
        self._sid = SidKeys(codebook_sizes, "selection baseline")
        self.rate, self.margin = float(rate), float(margin)
        self._stats: dict[tuple[int, int], tuple[float, int]] = {}  # (item, SID key) -> (mean, count)

    def __len__(self) -> int:
        return len(self._stats)

    def _keys(self, cand: np.ndarray) -> np.ndarray:
        return self._sid.encode(cand.reshape(-1, cand.shape[-1]), "selection baseline: candidates").reshape(cand.shape[:-1])

    def means(self, items: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """(N, C) mean cost of each candidate of each target item, NaN where never scored."""
        return self._means(items, self._keys(cand))

    def choose(self, items: np.ndarray, cand: np.ndarray, cost: torch.Tensor) -> torch.Tensor:
        """Column to train on per row: ``cost`` (N, C) for ``cand`` (N, C, L) of ``items`` (N,),
        +inf where a column is padding. Column 0 is the item's strongest SID."""
        pick = relative_pick(cost.detach().float().cpu().numpy(), self.means(items, cand), self.margin)
        return torch.from_numpy(pick).to(cost.device)

    def update(self, items: np.ndarray, cand: np.ndarray, cost: torch.Tensor) -> None:
        """Fold the finite costs of this step into the means (rows in order, so a resume that
        replays the same steps reproduces them)."""
        self._fold(items, self._keys(cand), cost.detach().float().cpu().numpy())

    def choose_and_update(self, items: np.ndarray, cand: np.ndarray, cost: torch.Tensor) -> torch.Tensor:
        """``choose`` on the means before this step, then ``update``: one training step's selection,
        with the candidates' keys and the costs read once."""
        keys, cost_np = self._keys(cand), cost.detach().float().cpu().numpy()
        pick = relative_pick(cost_np, self._means(items, keys), self.margin)
        self._fold(items, keys, cost_np)
        return torch.from_numpy(pick).to(cost.device)

    def _means(self, items: np.ndarray, keys: np.ndarray) -> np.ndarray:
        out = np.full(keys.shape, np.nan)
        for (r, c), key in np.ndenumerate(keys):
            hit = self._stats.get((int(items[r]), int(key)))
            if hit is not None:
                out[r, c] = hit[0]
        return out

    def _fold(self, items: np.ndarray, keys: np.ndarray, cost_np: np.ndarray) -> None:
        for (r, c), key in np.ndenumerate(keys):
            value = float(cost_np[r, c])
            if not np.isfinite(value):
                continue
            k = (int(items[r]), int(key))
            mean, n = self._stats.get(k, (0.0, 0))
            w = max(1.0 / (n + 1), self.rate)
            self._stats[k] = (mean + w * (value - mean), n + 1)

    # -- persistence ----------------------------------------------------------------------------
    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """The state under ``EXTRA_PREFIX``, for a checkpoint's extra tensors."""
        return {f"{EXTRA_PREFIX}{k}": v for k, v in self.state_dict().items()}

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> bool:
        """Restore from a checkpoint's extra tensors; False (means left as they are) when it has none."""
        state = {k[len(EXTRA_PREFIX):]: v for k, v in tensors.items() if k.startswith(EXTRA_PREFIX)}
        if state:
            self.load_state_dict(state)
        return bool(state)

    def state_dict(self) -> dict[str, torch.Tensor]:
        pairs = sorted(self._stats.items())
        items = torch.tensor([p[0][0] for p in pairs], dtype=torch.int64)
        keys = torch.tensor([p[0][1] for p in pairs], dtype=torch.int64)
        means = torch.tensor([p[1][0] for p in pairs], dtype=torch.float64)
        counts = torch.tensor([p[1][1] for p in pairs], dtype=torch.int64)
        return {"items": items, "keys": keys, "means": means, "counts": counts}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        try:
            cols = [state[k].tolist() for k in ("items", "keys", "means", "counts")]
        except KeyError as exc:
            raise ValueError(f"selection baseline state: field {exc.args[0]!r} missing") from None
        if len({len(c) for c in cols}) != 1:
            raise ValueError(f"selection baseline state: columns of unequal length {[len(c) for c in cols]}")
        self._stats = {(int(i), int(k)): (float(m), int(n)) for i, k, m, n in zip(*cols)}
