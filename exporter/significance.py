"""Is a gap bigger than chance? Large-sample z statistics for the verdicts. Pure.

A window of a few hundred labelled rows shows a precision 12% below baseline, or a group's
selection rate at 0.7 of another's, by chance alone. A performance verdict needs the window to
be worse than the baseline beyond chance; a fairness verdict needs the gap to be beyond its
line (four-fifths, residual bias, error ratio) beyond chance. Each z below is compared with
`critical_z` for the family of comparisons made (Bonferroni). docs/statistics.md ("Verdicts and
sampling noise") gives the reasoning.
"""

from __future__ import annotations

import math

from scipy import special


def critical_z(alpha: float, comparisons: int) -> float:
    """One-sided critical value at family-wise level `alpha` over `comparisons` tests."""
    return float(-special.ndtri(alpha / max(1, comparisons)))  # norm.isf, without its dispatch


def pairs(groups: int) -> int:
    """Comparisons made when the extreme two of `groups` groups are compared: each ordered
    pair, since which group comes out lowest is itself decided by the data."""
    return groups * (groups - 1)


def _mean_var(total: float, sq: float, n: float) -> tuple[float, float]:
    """Sample mean and unbiased variance from a sum and a sum of squares (n >= 2)."""
    mean = total / n
    return mean, max(0.0, sq / n - mean * mean) * n / (n - 1)


def rate_ratio_below(
    x_low: float, n_low: float, x_high: float, n_high: float, line: float
) -> float:
    """z of "the ratio of two proportions, low / high, is below `line`": Farrington and
    Manning's (1990) score test of p_low = line * p_high, whose variance comes from the rates
    restricted to that null, so an empty group (0 of 30 selected) is strong evidence rather than
    an undefined log. Positive: below the line."""
    if n_low <= 0 or n_high <= 0:
        return 0.0
    total = n_low + n_high
    a = total * line
    b = -(line * n_low + x_low + n_high + line * x_high)
    c = x_low + x_high
    p_high = (-b - math.sqrt(max(0.0, b * b - 4 * a * c))) / (2 * a)
    p_low = line * p_high
    var = p_low * (1 - p_low) / n_low + line * line * p_high * (1 - p_high) / n_high
    gap = line * x_high / n_high - x_low / n_low
    if var <= 0:
        return math.inf if gap > 0 else 0.0
    return gap / math.sqrt(var)


def mean_ratio_below(
    low: tuple[float, float, float], high: tuple[float, float, float], line: float
) -> float:
    """z of "the ratio of two positive means, low / high, is below `line`" (log ratio, delta
    method). Each sample is (sum, sum of squares, n). 0 when the means are not positive."""
    if low[2] < 2 or high[2] < 2:
        return 0.0
    (m_low, v_low), (m_high, v_high) = _mean_var(*low), _mean_var(*high)
    if m_low <= 0 or m_high <= 0:
        return 0.0
    se = math.sqrt(v_low / (low[2] * m_low**2) + v_high / (high[2] * m_high**2))
    gap = math.log(line) - math.log(m_low / m_high)
    return gap / se if se > 0 else (math.inf if gap > 0 else 0.0)


def mean_gap_beyond(
    rest: tuple[float, float, float], own: tuple[float, float, float], margin: float
) -> float:
    """z of "|mean(own) - mean(rest)| exceeds `margin`" (Welch's standard error). Each sample
    is (sum, sum of squares, n)."""
    if rest[2] < 2 or own[2] < 2:
        return 0.0
    (m_rest, v_rest), (m_own, v_own) = _mean_var(*rest), _mean_var(*own)
    se = math.sqrt(v_rest / rest[2] + v_own / own[2])
    gap = abs(m_own - m_rest) - margin
    return gap / se if se > 0 else (math.inf if gap > 0 else 0.0)


def rms_ratio_above(
    high: tuple[float, float, float], low: tuple[float, float, float], line: float
) -> float:
    """z of "rms(high) / rms(low) is above `line`", each sample given as (sum of squares, sum
    of fourth powers, n); log ratio with `log_rms_se`."""
    if high[0] <= 0 or low[0] <= 0:
        return 0.0
    se = math.hypot(log_rms_se(*high), log_rms_se(*low))
    gap = 0.5 * math.log((high[0] / high[2]) / (low[0] / low[2])) - math.log(line)
    return gap / se if se > 0 else (math.inf if gap > 0 else 0.0)


def log_rms_se(sq: float, fourth: float, n: float) -> float:
    """Standard error of log(root mean square) of a sample from its sums of x² and x⁴ (delta
    method, no normality assumed: heavy-tailed errors widen it)."""
    if n < 2 or sq <= 0:
        return math.inf
    m2, m4 = sq / n, fourth / n
    return 0.5 * math.sqrt(max(0.0, m4 / (m2 * m2) - 1.0) / n)


def mean_se(total: float, sq: float, n: float) -> float:
    """Standard error of a sample mean from its sum and sum of squares."""
    if n < 2:
        return math.inf
    mean = total / n
    return math.sqrt(max(0.0, sq / n - mean * mean) / (n - 1))


def proportion_se(p: float, n: float) -> float:
    return math.sqrt(p * (1 - p) / n) if n > 0 else math.inf


def auc_se(auc: float, positives: float, negatives: float) -> float:
    """Hanley & McNeil (1982) standard error of a ROC AUC."""
    if positives <= 0 or negatives <= 0 or not math.isfinite(auc):
        return math.inf
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)
    ) / (positives * negatives)
    return math.sqrt(max(0.0, var))
