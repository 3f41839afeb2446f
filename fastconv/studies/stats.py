"""Summary statistics over a study's seeds: mean and sample standard deviation, a 95% t-interval, and the
spread of several settings' means with a bootstrap interval."""
import math

import numpy as np

__all__ = ["mean_std", "ci95_half_width", "spread_ci95", "T_95"]

# two-sided 95% Student t critical values by sample size n (n - 1 degrees of freedom); between the listed
# sizes the next smaller n is used (a wider interval), and beyond 31 the normal value 1.96
T_95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262, 11: 2.228,
        12: 2.201, 13: 2.179, 14: 2.160, 15: 2.145, 16: 2.131, 21: 2.086, 31: 2.042}


def mean_std(values):
    """``(mean, std)`` of ``values`` as floats; ``std`` is the sample standard deviation (ddof=1), 0 for one value.

    Examples
    --------
    >>> mean_std([1.0, 2.0, 3.0])
    (2.0, 1.0)
    """
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def ci95_half_width(values):
    """Half-width of the 95% t-interval of the mean: ``t_{0.975, n-1} * std / sqrt(n)`` (0 for n < 2).

    Examples
    --------
    >>> round(ci95_half_width([1.0, 2.0, 3.0]), 3)
    2.484
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n < 2:
        return 0.0
    factor = T_95.get(n, T_95[max(k for k in T_95 if k <= n)] if n < 31 else 1.96)
    return float(factor * values.std(ddof=1) / math.sqrt(n))


def spread_ci95(groups, resamples=2000, seed=0):
    """The spread ``max - min`` of the groups' means and a 95% percentile-bootstrap interval for it.

    ``groups`` is a list of value lists (one per setting, e.g. the seeds' accuracies of one initializer).
    Each resample draws every group's values with replacement (its own size) and takes max - min of the
    resampled means; the interval is the 2.5th..97.5th percentile of those spreads.  The bootstrap's own
    generator is seeded with ``seed``, so the interval is reproducible.  Returns ``(spread, low, high)``.

    Examples
    --------
    >>> spread_ci95([[1.0, 1.0], [3.0, 3.0]])
    (2.0, 2.0, 2.0)
    """
    groups = [np.asarray(g, dtype=np.float64) for g in groups]
    spread = float(max(g.mean() for g in groups) - min(g.mean() for g in groups))
    rng = np.random.default_rng(seed)
    means = np.stack([g[rng.integers(0, len(g), (resamples, len(g)))].mean(axis=1) for g in groups])
    spreads = means.max(axis=0) - means.min(axis=0)
    low, high = np.percentile(spreads, [2.5, 97.5])
    return spread, float(low), float(high)
