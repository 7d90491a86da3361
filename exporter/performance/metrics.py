"""Performance metrics from sufficient statistics. Pure numpy, no I/O.

Regression sums are shifted by a constant (the baseline label mean) so that the total sum of
squares is not a difference of two huge numbers. Classification keeps confusion counts at the
configured threshold and per-class score histograms, from which ROC AUC is computed with ties
inside a bin counted as half (the bound on the gap to the exact AUC: docs/statistics.md).
"""

from __future__ import annotations

import math

import numpy as np

from exporter import significance as sig


def regression(
    n: float, err: float, err2: float, abs_err: float, y: float, y2: float
) -> dict[str, float]:
    """RMSE, MAE, R² and mean error (prediction minus actual) of `n` labelled predictions.

    `y` and `y2` are the sums of (actual - c) and (actual - c)² for any constant c.
    """
    if n <= 0:
        return {}
    total_ss = y2 - y * y / n
    return {
        "rmse": math.sqrt(err2 / n),
        "mae": abs_err / n,
        "r2": 1.0 - err2 / total_ss if total_ss > 0 else math.nan,
        "mean_error": err / n,
    }


def _ratio(num: float, den: float) -> float:
    """scikit-learn's zero_division=0 convention."""
    return num / den if den > 0 else 0.0


def roc_auc(pos_hist: np.ndarray, neg_hist: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative, ties (same bin) as half."""
    positives, negatives = pos_hist.sum(), neg_hist.sum()
    if positives == 0 or negatives == 0:
        return math.nan
    below = np.cumsum(neg_hist) - neg_hist
    return float(np.sum(pos_hist * (below + 0.5 * neg_hist)) / (positives * negatives))


def confusion_metrics(tp: float, fp: float, fn: float, tn: float) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of a confusion matrix (counts or expectations)."""
    n = tp + fp + fn + tn
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
    }


def classification(
    tp: float,
    fp: float,
    fn: float,
    tn: float,
    log_loss: float,
    brier: float,
    pos_hist: np.ndarray,
    neg_hist: np.ndarray,
) -> dict[str, float]:
    n = tp + fp + fn + tn
    if n <= 0:
        return {}
    return {
        **confusion_metrics(tp, fp, fn, tn),
        "log_loss": log_loss / n,
        "brier_score": brier / n,
        "roc_auc": roc_auc(pos_hist, neg_hist),
    }


def regression_standard_errors(
    n: float, err2: float, err4: float, abs_err: float, y: float, y2: float
) -> dict[str, float]:
    """Sampling standard errors of RMSE, MAE and R² (delta method from the same sums plus the
    sum of fourth powers of the errors)."""
    if n < 2:
        return {}
    mse_se = sig.mean_se(err2, err4, n)
    mse, var_y = err2 / n, (y2 - y * y / n) / n
    return {
        "rmse": mse_se / (2 * math.sqrt(mse)) if mse > 0 else math.inf,
        "mae": sig.mean_se(abs_err, err2, n),
        "r2": mse_se / var_y if var_y > 0 else math.inf,
    }


def confusion_standard_errors(
    values: dict[str, float], tp: float, fp: float, fn: float, tn: float
) -> dict[str, float]:
    """Binomial standard errors of the rates (F1 as the share tp / (tp + (fp + fn) / 2)) and
    Hanley-McNeil's of ROC AUC, for a window of these (possibly expected) class counts."""
    return {
        "accuracy": sig.proportion_se(values["accuracy"], tp + fp + fn + tn),
        "precision": sig.proportion_se(values["precision"], tp + fp),
        "recall": sig.proportion_se(values["recall"], tp + fn),
        "f1": sig.proportion_se(values["f1"], tp + (fp + fn) / 2),
        "roc_auc": sig.auc_se(values["roc_auc"], tp + fn, fp + tn),
    }


def classification_standard_errors(
    values: dict[str, float],
    tp: float,
    fp: float,
    fn: float,
    tn: float,
    log_loss: tuple[float, float],
    brier: tuple[float, float],
) -> dict[str, float]:
    """Sampling standard errors of the metrics in `values`: `confusion_standard_errors`, and
    sample means for the losses (`log_loss`, `brier`: sum and sum of squares)."""
    n = tp + fp + fn + tn
    if n < 2:
        return {}
    return {
        **confusion_standard_errors(values, tp, fp, fn, tn),
        "log_loss": sig.mean_se(*log_loss, n),
        "brier_score": sig.mean_se(*brier, n),
    }


# For each metric: +1 if larger is better, -1 if smaller is better.
DIRECTION = {
    "rmse": -1,
    "mae": -1,
    "r2": 1,
    "roc_auc": 1,
    "accuracy": 1,
    "precision": 1,
    "recall": 1,
    "f1": 1,
    "log_loss": -1,
    "brier_score": -1,
}


def degradation_ratio(metric: str, current: float, baseline: float) -> float:
    """Relative change in the bad direction: 0.1 means 10% worse than baseline, never negative."""
    if (
        metric not in DIRECTION
        or not math.isfinite(current)
        or not math.isfinite(baseline)
        or baseline == 0
    ):
        return math.nan
    return max(0.0, -DIRECTION[metric] * (current - baseline) / abs(baseline))


def worse_beyond_noise(
    metric: str, current: float, baseline: float, standard_error: float, z: float
) -> bool:
    """The window's value is worse than the baseline's by more than `z` standard errors of the
    window's estimate (the baseline, many times larger, is taken as exact)."""
    gap = -DIRECTION[metric] * (current - baseline)
    return math.isfinite(gap) and gap > z * standard_error
