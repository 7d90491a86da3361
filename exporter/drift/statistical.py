"""Divergences and two-sample statistics over binned counts. Pure numpy/scipy, no I/O.

Inputs are counts per bin (baseline `expected`, window `actual`), laid out the same way: the
window only ever holds counts, so every statistic here is computed from them. Definitions,
smoothing and log bases are spelled out in docs/statistics.md.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

EPSILON = 1e-4  # floor for empty bins in PSI and KL, before renormalising (docs/statistics.md)


def proportions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts, dtype=float)


def smoothed(counts: np.ndarray, eps: float = EPSILON) -> np.ndarray:
    """Proportions with empty bins floored at `eps`, renormalised to sum to 1."""
    p = np.maximum(proportions(counts), eps)
    return p / p.sum()


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index: sum (a - e) ln(a / e) over smoothed proportions. Symmetric."""
    e, a = smoothed(expected), smoothed(actual)
    return float(np.sum((a - e) * np.log(a / e)))


def kl_divergence(expected: np.ndarray, actual: np.ndarray) -> float:
    """KL(actual || expected) in nats over smoothed proportions: the surprise of the window."""
    e, a = smoothed(expected), smoothed(actual)
    return float(np.sum(a * np.log(a / e)))


def js_distance(expected: np.ndarray, actual: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (so it lies in [0, 1]); needs no smoothing."""
    e, a = proportions(expected), proportions(actual)
    m = (e + a) / 2

    def half(p: np.ndarray) -> float:
        nz = p > 0
        return float(np.sum(p[nz] * np.log2(p[nz] / m[nz])))

    return float(np.sqrt(max(0.0, (half(e) + half(a)) / 2)))


def ks_statistic(expected: np.ndarray, actual: np.ndarray) -> float:
    """Largest gap between the two CDFs at the bin edges (exact for the binned data)."""
    return float(np.max(np.abs(np.cumsum(proportions(expected)) - np.cumsum(proportions(actual)))))


def psi_null_quantile(n_expected: float, n_actual: float, bins: int, alpha: float) -> float:
    """PSI that no-drift samples of these sizes exceed with probability `alpha`.

    Under no drift, PSI * n*m/(n+m) is approximately chi-square with (bins - 1) degrees of
    freedom, so thin windows need a larger PSI before it means anything.
    """
    if n_expected <= 0 or n_actual <= 0 or bins < 2:
        return float("inf")
    return float(stats.chi2.isf(alpha, bins - 1) * (1.0 / n_expected + 1.0 / n_actual))


def occupied_bins(expected: np.ndarray, actual: np.ndarray) -> int:
    """Bins with mass on either side: the degrees of freedom of the comparison, plus one."""
    return int(np.count_nonzero((expected > 0) | (actual > 0)))
