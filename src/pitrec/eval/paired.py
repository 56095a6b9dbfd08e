"""Two models ranked on the same users, compared user by user.

The benchmark's verdicts rest on the spread over training seeds, which needs several runs per
method. With one run each, the question that can be answered is narrower but still useful: is
the difference between these two trained models larger than what the choice of test users alone
would produce? Both models see the same users, so the per-user differences are paired; their mean
is the difference of the reported metrics, and a bootstrap over users (SciPy's) and a paired
t-test give its uncertainty. It says nothing about another seed of either method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class PairedDifference:
    metric: str
    mean_a: float
    mean_b: float
    difference: float  # mean_b - mean_a
    low: float  # bootstrap confidence interval of the difference
    high: float
    p_value: float  # paired t-test, two-sided
    b_better_users: int  # users whose metric is higher under b
    a_better_users: int
    users: int


def paired_differences(a: dict[str, np.ndarray], b: dict[str, np.ndarray], confidence: float = 0.95,
                       resamples: int = 2000, seed: int = 0) -> list[PairedDifference]:
    """Per metric present in both, b minus a over the same users (aligned arrays, one value per user)."""
    shared = [m for m in a if m in b]
    if not shared:
        raise ValueError(f"no metric in common: {sorted(a)} against {sorted(b)}")
    out = []
    for metric in shared:
        x, y = np.asarray(a[metric], dtype=np.float64), np.asarray(b[metric], dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"{metric}: per-user values must be two 1-d arrays of one length, got {x.shape} and {y.shape}")
        if len(x) < 2:
            raise ValueError(f"{metric}: a paired comparison needs at least 2 users, got {len(x)}")
        d = y - x
        if np.ptp(d) <= 1e-12:  # no spread (up to rounding): the interval is the difference itself
            low = high = float(d.mean())
            p = 1.0 if abs(low) <= 1e-12 else 0.0
        else:
            ci = stats.bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=resamples,
                                 method="percentile", random_state=np.random.default_rng(seed)).confidence_interval
            low, high = float(ci.low), float(ci.high)
            p = float(stats.ttest_rel(y, x).pvalue)
        out.append(PairedDifference(metric, float(x.mean()), float(y.mean()), float(d.mean()), low, high, p,
                                    int((d > 0).sum()), int((d < 0).sum()), len(d)))
    return out
