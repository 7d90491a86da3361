"""Fairness metrics across the groups of one protected attribute. Pure numpy.

The definitions follow Fairlearn's (`demographic_parity_difference` / `_ratio`,
`equalized_odds_difference`, `equal_opportunity_difference`): the spread between the best and
the worst group. Inputs are per-group values of the groups being compared (too-small groups
already left out); NaN is returned when fewer than two groups remain.
"""

from __future__ import annotations

import math

import numpy as np


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def difference(values: np.ndarray) -> float:
    """max - min over groups (Fairlearn's `between_groups` difference)."""
    v = _finite(values)
    return float(v.max() - v.min()) if len(v) >= 2 else math.nan


def ratio(values: np.ndarray) -> float:
    """min / max over groups (1 when all groups are equal; Fairlearn's `between_groups` ratio)."""
    v = _finite(values)
    if len(v) < 2:
        return math.nan
    return float(v.min() / v.max()) if v.max() > 0 else (1.0 if v.min() == 0 else math.nan)


def demographic_parity(selection_rates: np.ndarray) -> tuple[float, float]:
    """(difference, ratio) of the groups' selection rates."""
    return difference(selection_rates), ratio(selection_rates)


def equalized_odds_difference(tpr: np.ndarray, fpr: np.ndarray) -> float:
    """The larger of the true-positive-rate and false-positive-rate differences."""
    return max(difference(tpr), difference(fpr))


def error_ratio(errors: np.ndarray) -> float:
    """max / min of the groups' errors (RMSE or MAE): how much worse the worst group is served."""
    v = _finite(errors)
    if len(v) < 2:
        return math.nan
    return float(v.max() / v.min()) if v.min() > 0 else math.inf


def rates(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group true- and false-positive rates (NaN where a group has no positives/negatives)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (tp + fn), fp / (fp + tn)
