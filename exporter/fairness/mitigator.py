"""Bias mitigation computed from the data, each strategy with its expected effect. Pure numpy.

- Post-processing: per-group decision thresholds that give every group the same selection rate
  (demographic parity) or the same true-positive rate (equal opportunity), in the spirit of
  Fairlearn's ThresholdOptimizer (deterministic thresholds, no randomisation).
- Pre-processing for retraining: reweighing (Kamiran & Calders, 2012), sample weights
  w(g, y) = P(g) P(y) / P(g, y) that make the label independent of the group in the weighted data.
"""

from __future__ import annotations

import numpy as np

from exporter.fairness import metrics as fm


def _threshold_for_rate(scores: np.ndarray, rate: float) -> float:
    """The threshold t whose share of scores >= t comes as close to `rate` as the data allows."""
    ordered = np.sort(scores)[::-1]
    k = round(rate * len(ordered))
    if k <= 0:
        return float(np.nextafter(ordered[0], np.inf))
    return float(ordered[min(k, len(ordered)) - 1])


def parity_thresholds(scores: np.ndarray, groups: np.ndarray, threshold: float) -> dict[str, float]:
    """Per-group thresholds giving each group the overall selection rate at `threshold`."""
    target = float(np.mean(scores >= threshold))
    return {str(g): _threshold_for_rate(scores[groups == g], target) for g in np.unique(groups)}


def opportunity_thresholds(
    scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, threshold: float
) -> dict[str, float]:
    """Per-group thresholds giving each group the overall true-positive rate at `threshold`."""
    positive = labels == 1
    target = float(np.mean(scores[positive] >= threshold))
    return {
        str(g): _threshold_for_rate(scores[(groups == g) & positive], target)
        for g in np.unique(groups)
        if np.any((groups == g) & positive)
    }


def apply_thresholds(
    scores: np.ndarray, groups: np.ndarray, thresholds: dict[str, float], default: float
) -> np.ndarray:
    cut = np.array([thresholds.get(str(g), default) for g in groups])
    return scores >= cut


def parity_after(
    scores: np.ndarray, groups: np.ndarray, thresholds: dict[str, float], default: float
) -> tuple[float, float]:
    """(difference, ratio) of demographic parity once the thresholds are applied."""
    selected = apply_thresholds(scores, groups, thresholds, default)
    rates = np.array([selected[groups == g].mean() for g in np.unique(groups)])
    return fm.demographic_parity(rates)


def reweighing(groups: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Kamiran-Calders weights per row: P(g) P(y) / P(g, y)."""
    weights = np.ones(len(labels))
    n = len(labels)
    for g in np.unique(groups):
        in_group = groups == g
        for y in np.unique(labels):
            cell = in_group & (labels == y)
            if cell.any():
                weights[cell] = (in_group.sum() / n) * ((labels == y).sum() / n) / (cell.sum() / n)
    return weights
