"""Divergences and two-sample statistics over binned counts. Pure numpy/scipy, no I/O.

Inputs are counts per bin (baseline `expected`, window `actual`), laid out the same way: the
window only ever holds counts, so every statistic here is computed from them. Definitions,
smoothing and log bases are spelled out in docs/statistics.md.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import special

EPSILON = 1e-4  # floor for empty bins in PSI and KL, before renormalising (docs/statistics.md)


def _out(value: np.ndarray) -> float | np.ndarray:
    """A float for one distribution, an array for a stack of them (rows)."""
    return float(value) if np.ndim(value) == 0 else value


def proportions(counts: np.ndarray) -> np.ndarray:
    """Counts -> shares along the last axis (all zeros where there are no counts)."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def smoothed(counts: np.ndarray, eps: float = EPSILON) -> np.ndarray:
    """Proportions with empty bins floored at `eps`, renormalised to sum to 1."""
    p = np.maximum(proportions(counts), eps)
    return p / p.sum(axis=-1, keepdims=True)


def psi(expected: np.ndarray, actual: np.ndarray) -> float | np.ndarray:
    """Population stability index: sum (a - e) ln(a / e) over smoothed proportions. Symmetric."""
    e, a = smoothed(expected), smoothed(actual)
    return _out(np.sum((a - e) * np.log(a / e), axis=-1))


def kl_divergence(expected: np.ndarray, actual: np.ndarray) -> float | np.ndarray:
    """KL(actual || expected) in nats over smoothed proportions: the surprise of the window."""
    e, a = smoothed(expected), smoothed(actual)
    return _out(np.sum(a * np.log(a / e), axis=-1))


def js_distance(expected: np.ndarray, actual: np.ndarray) -> float | np.ndarray:
    """Jensen-Shannon distance, base 2 (so it lies in [0, 1]); needs no smoothing."""
    e, a = proportions(expected), proportions(actual)
    m = (e + a) / 2

    def half(p: np.ndarray) -> np.ndarray:
        ratio = np.divide(p, m, out=np.ones_like(p), where=p > 0)
        return np.sum(p * np.log2(ratio), axis=-1)

    return _out(np.sqrt(np.maximum(0.0, (half(e) + half(a)) / 2)))


def ks_statistic(expected: np.ndarray, actual: np.ndarray) -> float | np.ndarray:
    """Largest gap between the two CDFs at the bin edges (exact for the binned data)."""
    gap = np.cumsum(proportions(expected), axis=-1) - np.cumsum(proportions(actual), axis=-1)
    return _out(np.max(np.abs(gap), axis=-1))


SIMULATE_BELOW = 1000  # windows smaller than this get simulated no-drift quantiles
SIMULATION_DRAWS = 20_000
_DIVERGENCES = {"psi": psi, "kl_divergence": kl_divergence, "js_distance": js_distance}


def simulation_size(n: float) -> int:
    """Window sizes on a 5% geometric grid, rounded down (fewer rows, a larger quantile: the
    conservative side), so simulations are shared by nearby sizes."""
    return max(1, math.floor(1.05 ** math.floor(math.log(max(n, 1.0)) / math.log(1.05) + 1e-9)))


def tail_quantile(values: np.ndarray, alpha: float, tail_share: float = 0.01) -> float:
    """The (1 - alpha) quantile of a sample, with an exponential fit beyond its top `tail_share`.

    Peaks over threshold: above u (the 1 - tail_share quantile) the excesses are taken as
    exponential with their observed mean, so q = u + mean_excess * ln(tail_share / alpha). This
    uses hundreds of points instead of the handful beyond a 1e-4 quantile; for chi-square-like
    tails (hazard rising towards its limit) it errs on the large, conservative side.
    """
    if alpha >= tail_share:
        return float(np.quantile(values, 1 - alpha))
    u = float(np.quantile(values, 1 - tail_share))
    excess = values[values > u] - u
    if len(excess) == 0:
        return u
    return u + float(excess.mean()) * math.log(tail_share / alpha)


def _multinomial_like(rng: np.random.Generator, m: float, p: np.ndarray, size: int) -> np.ndarray:
    """Counts with the multinomial's mean and covariance m(diag(p) - pp'), drawn as Gaussians.

    For the large baseline side only: exact multinomial draws cost ~1 us each, whatever m.
    """
    z = rng.standard_normal((size, len(p))) * np.sqrt(m * p)
    return np.maximum(m * p + z - np.outer(z.sum(axis=1), p), 0.0)


@functools.lru_cache(maxsize=4096)
def simulated_null_quantile(
    expected: tuple[float, ...], n_actual: int, alpha: float, statistic: str
) -> float:
    """No-drift (1 - alpha) quantile of PSI, KL or JS for a window of `n_actual` rows.

    Baselines and windows are drawn from the baseline's own shares (the window exactly, as a
    multinomial; the baseline of m rows by its Gaussian approximation), SIMULATION_DRAWS times,
    and the statistic computed exactly as for real data. A bin empty in the baseline (out of its
    range, or a category it never saw) gets one pseudo-count: beyond the extremes of m samples
    lies 1/(m+1) of a continuous population (rule of succession). Seeded by the inputs, so a
    window always gets the same verdict; memoised, so a scrape pays once per (distribution,
    window size on the grid, statistic): about 25 ms.
    """
    counts = np.asarray(expected)
    m = counts.sum()
    p = np.maximum(counts, 1.0) / np.maximum(counts, 1.0).sum()
    rng = np.random.default_rng([n_actual, len(counts), int(m)])
    base = _multinomial_like(rng, m, p, SIMULATION_DRAWS)
    window = rng.multinomial(n_actual, p, size=SIMULATION_DRAWS)
    return tail_quantile(_DIVERGENCES[statistic](base, window), alpha)


def psi_null_quantile(
    n_expected: float | np.ndarray,
    n_actual: float | np.ndarray,
    bins: int | np.ndarray,
    alpha: float,
) -> float | np.ndarray:
    """PSI that no-drift samples of these sizes exceed with probability `alpha`.

    Under no drift, PSI * n*m/(n+m) is approximately chi-square with (bins - 1) degrees of
    freedom, so thin windows need a larger PSI before it means anything. Infinite where there
    is nothing to compare (an empty side, fewer than two bins).
    """
    m, n, bins = np.asarray(n_expected, float), np.asarray(n_actual, float), np.asarray(bins)
    valid = (m > 0) & (n > 0) & (bins >= 2)
    m, n, dof = np.where(valid, m, 1.0), np.where(valid, n, 1.0), np.where(valid, bins - 1, 1)
    # chi2.isf(alpha, bins - 1) as scipy.stats computes it, without its per-call dispatch.
    return _out(np.where(valid, special.chdtri(dof, alpha) * (1.0 / m + 1.0 / n), np.inf))


def occupied_bins(expected: np.ndarray, actual: np.ndarray) -> int | np.ndarray:
    """Bins with mass on either side: the degrees of freedom of the comparison, plus one."""
    occupied = np.count_nonzero((expected > 0) | (actual > 0), axis=-1)
    return int(occupied) if np.ndim(occupied) == 0 else occupied


def _cdf_at_edges(counts: np.ndarray) -> np.ndarray:
    """CDF at edges[0..F] of fine-bin counts laid out [underflow, F inner bins, overflow]."""
    p = proportions(counts)
    inner = np.cumsum(p[..., 1:-1], axis=-1)
    return p[..., :1] + np.concatenate([np.zeros_like(p[..., :1]), inner], axis=-1)


def _abs_linear_integral(a: np.ndarray, b: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Integral of |d| over each segment where d goes linearly from a to b."""
    same = a * b >= 0
    total = np.abs(a) + np.abs(b)
    crossing = np.divide(a * a + b * b, 2 * total, out=np.zeros_like(total), where=total > 0)
    return width * np.where(same, total / 2, crossing)


def wasserstein_binned(
    edges: np.ndarray,
    expected: np.ndarray,
    actual: np.ndarray,
    below_sum: float | np.ndarray = 0.0,
    above_sum: float | np.ndarray = 0.0,
) -> float | np.ndarray:
    """Wasserstein-1 distance from fine-bin counts (same units as the feature).

    `expected` is a baseline's counts, whose out-of-range bins are empty by construction (its
    bins span its own range). Inside that range each CDF is taken as linear within a bin; outside
    it the window's values are known through their sums (`below_sum`, `above_sum`), so those
    parts are exact.
    The gap to the distance on raw values is at most `wasserstein_bin_bound`. NaN where a side
    is empty.
    """
    n, m = actual.sum(axis=-1), expected.sum(axis=-1)
    d = _cdf_at_edges(actual) - _cdf_at_edges(expected)
    inner = np.sum(_abs_linear_integral(d[..., :-1], d[..., 1:], np.diff(edges)), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        below = actual[..., 0] * edges[..., 0] / n - below_sum / n
        above = above_sum / n - actual[..., -1] * edges[..., -1] / n
    w1 = inner + np.maximum(0.0, below) + np.maximum(0.0, above)
    return _out(np.where((n > 0) & (m > 0), w1, np.nan))


def wasserstein_bin_bound(edges: np.ndarray, expected: np.ndarray, actual: np.ndarray) -> float:
    """Largest gap between `wasserstein_binned` and the distance on the raw values.

    Within a bin of width w holding shares p (baseline) and q (window), the true CDFs differ from
    their linear interpolations by an area of at most w*p/2 and w*q/2.
    """
    p, q = proportions(expected)[1:-1], proportions(actual)[1:-1]
    return float(np.sum(np.diff(edges) * (p + q) / 2))


def wasserstein_null_bound(
    edges: np.ndarray,
    expected: np.ndarray,
    actual: np.ndarray,
    ks_critical: float | np.ndarray,
) -> float | np.ndarray:
    """W1 that no-drift samples exceed with probability at most alpha (conservative).

    With probability 1 - alpha the CDF gap is below the KS critical value everywhere, and it is
    never more than F_b + F_c or (1 - F_b) + (1 - F_c); integrating that envelope bounds W1.
    """
    fb, fc = _cdf_at_edges(expected), _cdf_at_edges(actual)
    ks_critical = np.asarray(ks_critical, dtype=float)[..., None]
    envelope = np.minimum(ks_critical, np.minimum(fb + fc, 2 - fb - fc))
    return _out(np.sum(np.diff(edges) * (envelope[..., :-1] + envelope[..., 1:]) / 2, axis=-1))


def chi_square(expected: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """Pearson chi-square test of homogeneity on the 2 x K table of counts (no Yates correction).

    Bins empty on both sides are dropped. Returns (statistic, p-value); informative only, never
    the verdict on its own (large windows make every p-value small).
    """
    keep = (expected > 0) | (actual > 0)
    table = np.vstack([expected[keep], actual[keep]]).astype(float)
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    expected_cells = (
        table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    )
    statistic = float(np.sum((table - expected_cells) ** 2 / expected_cells))
    return statistic, float(special.chdtrc(table.shape[1] - 1, statistic))  # chi2.sf


def ks_critical(
    n_expected: float | np.ndarray, n_actual: float | np.ndarray, alpha: float
) -> float | np.ndarray:
    """Asymptotic two-sample KS critical value: sqrt(-ln(alpha/2)/2) * sqrt((n+m)/(n*m)),
    infinite where a side is empty."""
    m, n = np.asarray(n_expected, dtype=float), np.asarray(n_actual, dtype=float)
    valid = (m > 0) & (n > 0)
    m, n = np.where(valid, m, 1.0), np.where(valid, n, 1.0)
    critical = np.sqrt(-np.log(alpha / 2) / 2) * np.sqrt((m + n) / (m * n))
    return _out(np.where(valid, critical, np.inf))


def ks_p_value(
    statistic: float | np.ndarray, n_expected: float | np.ndarray, n_actual: float | np.ndarray
) -> float | np.ndarray:
    """Asymptotic two-sample KS p-value (Kolmogorov distribution), NaN where a side is empty;
    informative only."""
    m, n = np.asarray(n_expected, dtype=float), np.asarray(n_actual, dtype=float)
    valid = (m > 0) & (n > 0)
    m, n = np.where(valid, m, 1.0), np.where(valid, n, 1.0)
    p = special.kolmogorov(statistic * np.sqrt(m * n / (m + n)))  # kstwobign.sf
    return _out(np.where(valid, p, np.nan))


def correlation_from_sums(n: float, sums: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """Pearson correlation matrix from n, per-feature sums and the cross-product matrix.

    The sums may be of values shifted by any constants (correlation does not see shifts), which
    keeps them well conditioned. Undefined entries (a constant feature) are NaN, and so are
    those whose products overflow (values near 1e154): unknown.
    """
    if n < 2:
        return np.full(cross.shape, np.nan)
    mean = sums / n
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        cov = cross / n - np.outer(mean, mean)
        cov[~np.isfinite(cov)] = np.nan
        sd = np.sqrt(np.clip(np.diag(cov), 0, None))
        corr = cov / np.outer(sd, sd)
    return np.clip(corr, -1.0, 1.0)


def largest_correlation_change(baseline: np.ndarray, current: np.ndarray) -> tuple[float, int, int]:
    """Largest |current - baseline| over feature pairs, and the pair (i < j): the first such
    pair in row order on a tie; NaN and (-1, -1) where no pair has a finite change."""
    i, j = np.triu_indices(baseline.shape[0], 1)
    change = np.abs(current[i, j] - baseline[i, j])
    finite = np.flatnonzero(np.isfinite(change))
    if len(finite) == 0:
        return math.nan, -1, -1
    best = finite[np.argmax(change[finite])]
    return float(change[best]), int(i[best]), int(j[best])
