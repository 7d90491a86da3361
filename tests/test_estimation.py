"""Performance before labels (CBPE) against independent computations: the calibration map
against scikit-learn's IsotonicRegression, the estimated metrics against scikit-learn's metrics
on the expected labels (each row once as a positive weighted by p and once as a negative
weighted by 1 - p), the realised-vs-estimated gap against its exact variance, and the estimates
against the realised values of simulated windows whose labels are held back."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from exporter.baseline import Baseline
from exporter.monitors import health
from exporter.performance import PerformanceEstimator
from exporter.performance.estimation import Calibration, expected_calibration_error
from exporter.report import ModelReport, report_of
from exporter.simulator import ACCOUNT_HEALTH, account_health_batch, reference_model
from exporter.sufficient_stats import SCORE_BINS, totals_of, totals_of_chunks
from exporter.window import capture_baseline

MODEL = reference_model(ACCOUNT_HEALTH, min_samples=100, min_labeled=30)


def rows_of(batch, labels: bool = True):
    return batch.rows(MODEL, labels)


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    """A 30,000-row labelled reference of the simulated account-health classifier."""
    return capture_baseline(
        MODEL, rows_of(account_health_batch(np.random.default_rng(11), 30_000, "stable"))
    )


@settings(max_examples=60, deadline=None)
@given(
    hs.lists(
        hs.tuples(hs.integers(0, 40), hs.booleans()), min_size=2, max_size=300
    ),  # coarse scores: many ties
    hs.lists(hs.floats(-0.5, 1.5, allow_nan=False), min_size=1, max_size=50),
)
def test_calibration_map_is_scikit_learns_isotonic_regression(pairs, queries) -> None:
    score = np.array([s / 40 for s, _ in pairs])
    label = np.array([float(y) for _, y in pairs])
    ours = Calibration.fit(score, label)
    theirs = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(score, label)
    probe = np.concatenate([score, np.array(queries)])
    np.testing.assert_allclose(ours(probe), theirs.predict(probe), atol=1e-12)
    np.testing.assert_array_equal(Calibration.from_json(ours.to_json())(probe), ours(probe))


def test_expected_calibration_error_by_hand() -> None:
    # Bin [0.1, 0.2): scores 0.1, 0.1 (mean 0.1), labels 0, 1 (rate 0.5): gap 0.4 x 2 rows.
    # Bin [0.9, 1.0]: scores 0.9, 1.0 (mean 0.95), labels 1, 1: gap 0.05 x 2 rows.
    score = np.array([0.1, 0.1, 0.9, 1.0])
    label = np.array([0.0, 1.0, 1.0, 1.0])
    assert expected_calibration_error(score, score, label) == pytest.approx((0.8 + 0.1) / 4)


def test_calibration_is_checked_and_kept_with_the_baseline(baseline) -> None:
    calibration = baseline.calibration
    assert calibration is not None and calibration.rows == 30_000
    # The simulator's scores are over-confident by design: the map fixes that in sample.
    assert calibration.error_before > 0.03 > calibration.error_after
    curve = calibration.reliability
    assert sum(b["rows"] for b in curve) == 30_000
    top = curve[-1]
    assert top["positive_rate"] < top["mean_score"]  # over-confident at the top
    again = Baseline.from_json(baseline.to_json())
    assert again.calibration is not None
    np.testing.assert_array_equal(again.calibration.scores, calibration.scores)


def test_estimates_are_the_metrics_of_the_expected_labels(baseline) -> None:
    """Every row once as a positive of weight p and once as a negative of weight 1 - p: the
    metrics of that weighted data set are the expectations CBPE sums up."""
    batch = account_health_batch(np.random.default_rng(3), 4000, "covariate_shift")
    report = report_of(MODEL, baseline, rows_of(batch, False))
    assert report.window_labeled == 0  # no label used
    estimated = report.estimated.values
    p = IsotonicRegression(out_of_bounds="clip").fit(*_reference_pairs()).predict(batch.score)
    y = np.concatenate([np.ones(len(p)), np.zeros(len(p))])
    weight = np.concatenate([p, 1 - p])
    predicted = np.tile(batch.score >= 0.5, 2)
    for name, metric in (
        ("accuracy", accuracy_score),
        ("precision", precision_score),
        ("recall", recall_score),
        ("f1", f1_score),
    ):
        assert estimated[name] == pytest.approx(
            metric(y, predicted, sample_weight=weight), abs=1e-9
        ), name
    # ROC AUC on the 1000-bin score histogram: scores at their bin's floor are tied as ours are.
    binned = np.tile(np.minimum(np.floor(batch.score * SCORE_BINS), SCORE_BINS - 1), 2)
    assert estimated["roc_auc"] == pytest.approx(
        roc_auc_score(y, binned, sample_weight=weight), abs=1e-9
    )


def _reference_pairs() -> tuple[np.ndarray, np.ndarray]:
    ref = account_health_batch(np.random.default_rng(11), 30_000, "stable")
    return ref.score, ref.actual


def test_estimate_sums_merge(baseline) -> None:
    rows = rows_of(account_health_batch(np.random.default_rng(4), 3000, "drift"), False)
    whole = totals_of(MODEL, baseline, rows)
    parts = totals_of_chunks(
        MODEL, baseline, [rows.take(np.arange(len(rows)) % 3 == k) for k in range(3)]
    )
    np.testing.assert_allclose(parts.drift, whole.drift, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("scenario", ["stable", "covariate_shift", "drift"])
def test_estimates_track_realised_performance_when_calibration_holds(baseline, scenario) -> None:
    """Windows of 5,000 rows whose labels the estimator never sees: ROC AUC and accuracy within
    0.02 of the realised values (scikit-learn on the held-back labels) in at least 18 of 20."""
    rng = np.random.default_rng({"stable": 21, "covariate_shift": 22, "drift": 23}[scenario])
    within = 0
    for _ in range(20):
        batch = account_health_batch(rng, 5000, scenario)
        report = report_of(MODEL, baseline, rows_of(batch, False))
        estimated = report.estimated.values
        auc = roc_auc_score(batch.actual, batch.score)
        accuracy = accuracy_score(batch.actual, batch.score >= 0.5)
        within += (
            abs(estimated["roc_auc"] - auc) <= 0.02
            and abs(estimated["accuracy"] - accuracy) <= 0.02
        )
    assert within >= 18


def test_covariate_shift_is_a_drop_seen_before_labels_and_stable_is_not(baseline) -> None:
    rng = np.random.default_rng(5)
    shifted = _unlabelled_shift(baseline, rng)
    realised = roc_auc_score(*_held_back(rng, "covariate_shift"))
    assert realised < baseline.performance["all"]["roc_auc"] - 0.04  # the drop is real
    assert shifted.estimated.degradation_significant["roc_auc"]
    for _ in range(10):
        stable = report_of(
            MODEL,
            baseline,
            rows_of(account_health_batch(rng, 5000, "stable"), False),
        )
        assert not any(stable.estimated.degradation_significant.values())


def _unlabelled_shift(baseline: Baseline, rng: np.random.Generator) -> ModelReport:
    """The report of a covariate-shifted window of 5,000 rows whose labels have not come."""
    return report_of(
        MODEL, baseline, rows_of(account_health_batch(rng, 5000, "covariate_shift"), False)
    )


def _held_back(rng: np.random.Generator, scenario: str) -> tuple[np.ndarray, np.ndarray]:
    batch = account_health_batch(rng, 20_000, scenario)
    return batch.actual, batch.score


def test_concept_drift_makes_realised_and_estimate_disagree(baseline) -> None:
    """The gap's variance is exact under the estimate's assumption: stable windows stay within
    it; concept drift (the scores no longer mean what they did) does not."""
    rng = np.random.default_rng(6)
    for scenario, expected in (
        ("stable", False),
        ("covariate_shift", False),
        ("performance_drop", True),
    ):
        for _ in range(5):
            batch = account_health_batch(rng, 3000, scenario)
            report = report_of(MODEL, baseline, rows_of(batch))
            gap = report.estimated.disagreement
            realised = accuracy_score(batch.actual, batch.score >= 0.5)
            assert gap.gap == pytest.approx(realised - _expected_accuracy(baseline, batch.score))
            assert gap.disagrees is expected, (scenario, gap)


def _expected_accuracy(baseline: Baseline, score: np.ndarray) -> float:
    p = baseline.calibration(score)
    return float(np.mean(np.where(score >= 0.5, p, 1 - p)))


def test_no_estimate_without_enough_reference_labels() -> None:
    batch = account_health_batch(np.random.default_rng(7), 400, "stable")
    assert capture_baseline(MODEL, rows_of(batch)).calibration is None  # < 500 labels
    with pytest.raises(ValueError, match="at least 500 labels"):
        PerformanceEstimator(batch.score, batch.actual)


def test_notebook_api_gives_the_windows_numbers(baseline) -> None:
    ref = account_health_batch(np.random.default_rng(11), 30_000, "stable")
    estimator = PerformanceEstimator(ref.score, ref.actual)
    batch = account_health_batch(np.random.default_rng(8), 5000, "covariate_shift")
    out = estimator.estimate(batch.score)
    report = report_of(MODEL, baseline, rows_of(batch, False))
    assert out["estimated"] == pytest.approx(report.estimated.values, abs=1e-12)
    assert "roc_auc" in out["degraded_metrics"]
    labelled = estimator.estimate(batch.score, batch.actual)
    assert labelled["realised"]["accuracy"] == pytest.approx(
        accuracy_score(batch.actual, batch.score >= 0.5)
    )
    assert labelled["disagreement"]["disagrees"] is False
    assert estimator.calibration["method"] == "isotonic"


def test_findings_and_health_json_carry_the_estimate(baseline) -> None:
    rng = np.random.default_rng(12)
    shifted = _unlabelled_shift(baseline, rng)
    found = {f.type: f for f in health.findings(MODEL, shifted)}
    worst = max(shifted.estimated.degraded.values())
    assert found["estimated_performance_degradation"].severity == (
        "high" if worst >= MODEL.performance.degradation_critical else "medium"
    )
    assert "performance_degradation" not in found  # no label: nothing realised
    body = health.health_json(MODEL, shifted, list(found.values()))
    assert body["metrics"]["performance"]["estimated"]["values"] == pytest.approx(
        shifted.estimated.values
    )
    drifted = report_of(
        MODEL,
        baseline,
        rows_of(account_health_batch(rng, 3000, "performance_drop")),
    )
    found = {f.type for f in health.findings(MODEL, drifted)}
    assert "estimate_disagreement" in found
