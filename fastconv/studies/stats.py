"""Summary statistics over a study's seeds: mean and sample standard deviation, and a 95% t-interval."""
import math

import numpy as np

__all__ = ["mean_std", "ci95_half_width", "T_95"]

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
