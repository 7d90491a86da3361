"""Classifier performance before the labels arrive: confidence-based estimation (CBPE).

NannyML's method, made streaming. At baseline capture a calibration map is learned from the
labelled reference: isotonic regression of the label on the score, so `calibrated(s)` is the
observed positive rate among reference rows scored like `s`. If the window's rows are scored by
a model whose calibration still holds (covariate shift, not concept drift), a row with score `s`
is positive with probability `p = calibrated(s)`, and every confusion cell has an expectation
that is a plain sum over the rows: TP = sum of p over the rows predicted positive, FP = sum of
1 - p over them, and so on; the score histograms weighted by p and 1 - p give the expected ROC
AUC. Sums merge by addition, so the estimate lives in the window's buckets like everything else.

Pure numpy and scipy; the folding is `sufficient_stats`, the verdicts `report`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import isotonic_regression

from exporter.performance import metrics as pm

RELIABILITY_BINS = 10  # equal-width score bins of the reliability curve


@dataclass(frozen=True)
class Calibration:
    """A monotone map score -> probability of class 1, piecewise linear between knots.

    The knots are the first and last score of each block of isotonic regression, as
    scikit-learn's `IsotonicRegression` keeps them; scores outside the reference's range take
    the end values (`out_of_bounds="clip"`).
    """

    scores: np.ndarray
    probabilities: np.ndarray
    rows: int  # labelled reference rows it was learned from
    error_before: float  # expected calibration error of the raw scores on the reference
    error_after: float  # and of the map, in sample (near 0: the map is the reference's own)
    reliability: tuple[dict[str, float], ...] = ()  # the raw scores' reliability curve

    def __call__(self, score: np.ndarray) -> np.ndarray:
        return np.interp(score, self.scores, self.probabilities)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "isotonic",
            "scores": self.scores.tolist(),
            "probabilities": self.probabilities.tolist(),
            "rows": self.rows,
            "error_before": self.error_before,
            "error_after": self.error_after,
            "reliability": list(self.reliability),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        return cls(
            np.asarray(data["scores"], dtype=float),
            np.asarray(data["probabilities"], dtype=float),
            int(data["rows"]),
            float(data["error_before"]),
            float(data["error_after"]),
            tuple(data.get("reliability", ())),
        )

    @classmethod
    def fit(cls, score: np.ndarray, label: np.ndarray) -> Calibration:
        """Isotonic (increasing) regression of the 0/1 label on the score."""
        order = np.argsort(score, kind="stable")
        x, y = score[order], label[order].astype(float)
        unique, first, counts = np.unique(x, return_index=True, return_counts=True)
        # Ties first: one point per distinct score, its mean label weighted by its count.
        means = np.add.reduceat(y, first) / counts
        fitted = isotonic_regression(means, weights=counts.astype(float), increasing=True).x
        # Keep the first and last knot of every run of equal fitted values.
        keep = np.ones(len(fitted), dtype=bool)
        if len(fitted) > 2:
            same = (fitted[1:-1] == fitted[:-2]) & (fitted[1:-1] == fitted[2:])
            keep[1:-1] = ~same
        knots, probabilities = unique[keep], fitted[keep]
        calibrated = np.interp(score, knots, probabilities)
        return cls(
            knots,
            probabilities,
            len(x),
            expected_calibration_error(score, score, label),
            expected_calibration_error(score, calibrated, label),
            reliability(score, calibrated, label),
        )


def reliability(
    score: np.ndarray, probability: np.ndarray, label: np.ndarray
) -> tuple[dict[str, float], ...]:
    """The reliability curve: per equal-width score bin, its rows, mean score, positive rate
    and mean calibrated probability."""
    bins = np.minimum((score * RELIABILITY_BINS).astype(int), RELIABILITY_BINS - 1)
    return tuple(
        {
            "low": b / RELIABILITY_BINS,
            "rows": float(mask.sum()),
            "mean_score": float(score[mask].mean()),
            "positive_rate": float(label[mask].mean()),
            "calibrated": float(probability[mask].mean()),
        }
        for b in range(RELIABILITY_BINS)
        if (mask := bins == b).any()
    )


def expected_calibration_error(
    score: np.ndarray, probability: np.ndarray, label: np.ndarray
) -> float:
    """ECE over RELIABILITY_BINS equal-width bins of `score`: the row-weighted mean of
    |mean probability - positive rate| per bin."""
    bins = np.minimum((score * RELIABILITY_BINS).astype(int), RELIABILITY_BINS - 1)
    prob = np.bincount(bins, weights=probability, minlength=RELIABILITY_BINS)
    positive = np.bincount(bins, weights=label.astype(float), minlength=RELIABILITY_BINS)
    return float(np.abs(prob - positive).sum() / max(len(score), 1))


def estimate(
    tp: float, fp: float, fn: float, tn: float, pos_hist: np.ndarray, neg_hist: np.ndarray
) -> dict[str, float]:
    """The metrics of the expected confusion matrix and of the expected score histograms of
    the two classes: the realised metrics' own formulas, on expectations."""
    if tp + fp + fn + tn <= 0:
        return {}
    return {"roc_auc": pm.roc_auc(pos_hist, neg_hist), **pm.confusion_metrics(tp, fp, fn, tn)}


def standard_errors(
    values: dict[str, float], tp: float, fp: float, fn: float, tn: float
) -> dict[str, float]:
    """The sampling band of each estimate: the standard error the realised metric would have
    on a window of this size and expected class balance (as NannyML's sampling error)."""
    if tp + fp + fn + tn < 2 or not values:
        return {}
    return pm.confusion_standard_errors(values, tp, fp, fn, tn)


@dataclass(frozen=True)
class Disagreement:
    """A realised metric vs its estimate on the same labelled rows."""

    metric: str  # accuracy (classifier) or mae (regression)
    gap: float  # realised - estimated
    standard_error: float  # of the gap under the estimate's assumption
    disagrees: bool


def disagreement(
    metric: str,
    n: float,
    realised: float,
    expected: float,
    variance: float,
    max_gap: float,
    z: float,
) -> Disagreement | None:
    """`realised` and `expected` are sums over `n` labelled rows (correct predictions and their
    expectation; absolute errors and theirs), `variance` the variance of their difference. Under
    the estimate's assumption the difference has mean 0: a gap beyond `max_gap` and beyond `z`
    standard errors says the assumption no longer holds."""
    if n <= 0:
        return None
    gap = (realised - expected) / n
    se = math.sqrt(max(variance, 0.0)) / n
    return Disagreement(metric, gap, se, abs(gap) > max_gap and abs(gap) > z * se)
