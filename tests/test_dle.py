"""Regression performance before labels (DLE) against independent computations: the loss models
refitted from scratch with scikit-learn on the same reference, the realised MAE and RMSE of
simulated windows whose labels are held back, and a stored loss model that is not what it
claims to be refused rather than run."""

from __future__ import annotations

import base64
import dataclasses
import functools
import os
import threading

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import mean_absolute_error, root_mean_squared_error
from threadpoolctl import ThreadpoolController

from exporter.baseline import Baseline, loss_inputs
from exporter.performance import PerformanceEstimator
from exporter.performance.loss_model import SMALL_BATCH, LossModel, _fast, _Ranks, _threads
from exporter.report import report_of
from exporter.simulator import AD_SCORE, ad_score_batch, reference_model
from exporter.sufficient_stats import fold_drift, fold_performance, performance_layout
from exporter.window import ModelWindow, capture_baseline

MODEL = reference_model(AD_SCORE, min_samples=200, min_labeled=30)


def rows_of(batch, labels: bool = True):
    return batch.rows(MODEL, labels)


@pytest.fixture(scope="module")
def reference():
    return ad_score_batch(np.random.default_rng(1), 30_000, "stable")


@pytest.fixture(scope="module")
def baseline(reference) -> Baseline:
    return capture_baseline(MODEL, rows_of(reference))


def test_estimates_are_the_mean_expected_losses_of_models_refitted_from_scratch(
    baseline, reference
) -> None:
    rows = rows_of(reference)
    x = loss_inputs(MODEL, baseline.features, rows)
    error = reference.prediction - reference.actual
    settings = {
        "max_iter": 50,
        "learning_rate": 0.2,
        "max_leaf_nodes": 15,
        "min_samples_leaf": 50,
        "l2_regularization": 1.0,
        "categorical_features": [4, 5],
        "early_stopping": False,
        "random_state": 0,
    }
    absolute = HistGradientBoostingRegressor(**settings).fit(x, np.abs(error))
    squared = HistGradientBoostingRegressor(**settings).fit(x, error**2)
    window = ad_score_batch(np.random.default_rng(2), 4000, "covariate_shift")
    report = report_of(MODEL, baseline, rows_of(window, False))
    assert report.window_labeled == 0
    w = loss_inputs(MODEL, baseline.features, rows_of(window, False))
    assert report.estimated.values["mae"] == pytest.approx(
        np.clip(absolute.predict(w), 0, None).mean(), rel=1e-9
    )
    assert report.estimated.values["rmse"] == pytest.approx(
        np.sqrt(np.clip(squared.predict(w), 0, None).mean()), rel=1e-9
    )
    # Once labelled, a row's check against its label uses the absolute model's estimate alone.
    labelled = rows_of(window)
    layout = performance_layout(MODEL, baseline)
    sums = fold_performance(layout, MODEL, baseline, labelled, np.zeros(4000, dtype=np.int64))
    expected = np.clip(absolute.predict(w), 0, None)
    gap = np.abs(window.prediction - window.actual) - expected
    assert layout.scalar(sums.matrix[0], "dle_abs") == pytest.approx(expected.sum(), rel=1e-9)
    assert layout.scalar(sums.matrix[0], "dle_gap2") == pytest.approx(np.sum(gap**2), rel=1e-9)


@pytest.mark.parametrize("scenario", ["stable", "covariate_shift"])
def test_estimates_track_realised_errors_under_covariate_shift(baseline, scenario) -> None:
    """Windows of 5,000 rows: estimated RMSE and MAE within 10% of the realised values
    (scikit-learn on the held-back labels) in at least 18 of 20."""
    rng = np.random.default_rng({"stable": 3, "covariate_shift": 4}[scenario])
    within = 0
    for _ in range(20):
        batch = ad_score_batch(rng, 5000, scenario)
        estimated = report_of(MODEL, baseline, rows_of(batch, False)).estimated.values
        rmse = root_mean_squared_error(batch.actual, batch.prediction)
        mae = mean_absolute_error(batch.actual, batch.prediction)
        within += (
            abs(estimated["rmse"] / rmse - 1) <= 0.1 and abs(estimated["mae"] / mae - 1) <= 0.1
        )
    assert within >= 18


def test_a_shift_to_hard_cases_is_a_drop_seen_before_labels(baseline) -> None:
    rng = np.random.default_rng(5)
    shifted = report_of(
        MODEL,
        baseline,
        rows_of(ad_score_batch(rng, 5000, "covariate_shift"), False),
    ).estimated
    assert shifted.degradation_significant["rmse"] and shifted.degradation["rmse"] > 0.25
    for _ in range(10):
        stable = report_of(
            MODEL,
            baseline,
            rows_of(ad_score_batch(rng, 5000, "stable"), False),
        ).estimated
        assert not any(stable.degradation_significant.values())


def test_concept_drift_makes_realised_mae_and_its_estimate_disagree(baseline) -> None:
    rng = np.random.default_rng(6)
    for scenario, expected in (
        ("stable", False),
        ("covariate_shift", False),
        ("performance_drop", True),
    ):
        for _ in range(5):
            batch = ad_score_batch(rng, 3000, scenario)
            report = report_of(MODEL, baseline, rows_of(batch))
            gap = report.estimated.disagreement
            assert gap.metric == "mae"
            realised = mean_absolute_error(batch.actual, batch.prediction)
            expected_mae = baseline.loss_model.predict(
                loss_inputs(MODEL, baseline.features, rows_of(batch))
            )[0].mean()
            assert gap.gap == pytest.approx(realised - expected_mae, rel=1e-9)
            assert gap.disagrees is expected, (scenario, gap)


def test_loss_model_survives_json(baseline) -> None:
    again = Baseline.from_json(baseline.to_json())
    x = loss_inputs(
        MODEL, baseline.features, rows_of(ad_score_batch(np.random.default_rng(7), 50, "drift"))
    )
    for ours, theirs in zip(
        again.loss_model.predict(x), baseline.loss_model.predict(x), strict=True
    ):
        np.testing.assert_array_equal(ours, theirs)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kinds=st.lists(
        st.sampled_from(["numeric", "codes", "codes_with_gaps"]), min_size=2, max_size=6
    ),
    missing=st.sampled_from([0.0, 0.1]),
)
def test_our_preprocessing_predicts_what_scikit_learn_does(seed, kinds, missing) -> None:
    """`_Ranks` stands in for scikit-learn's ColumnTransformer at predict time: on codes seen,
    unseen (negative, beyond the range, in a gap), missing in training or only at predict time,
    and numeric columns with NaN, the predictions are scikit-learn's, bit for bit."""
    rng = np.random.default_rng(seed)
    n = 600
    x = np.empty((n, len(kinds)))
    for j, kind in enumerate(kinds):
        if kind == "numeric":
            x[:, j] = rng.normal(size=n)
        else:
            codes = rng.integers(0, 6, n) * (2 if kind == "codes_with_gaps" else 1)
            x[:, j] = codes.astype(float)
    x[rng.random(x.shape) < missing] = np.nan
    y = np.nansum(x, axis=1) + rng.normal(size=n)
    categorical = [j for j, kind in enumerate(kinds) if kind != "numeric"]
    model = HistGradientBoostingRegressor(
        max_iter=10, min_samples_leaf=20, categorical_features=categorical or None
    ).fit(x, y)
    fast = _fast(model)
    assert isinstance(fast._preprocessor, _Ranks) == bool(categorical)
    probe = rng.integers(-2, 14, size=(300, len(kinds))).astype(float)
    probe[rng.random(probe.shape) < 0.1] = np.nan
    np.testing.assert_array_equal(fast.predict(probe), model.predict(probe))
    np.testing.assert_array_equal(fast.predict(x), model.predict(x))


def test_a_captured_loss_model_predicts_through_our_preprocessing(baseline) -> None:
    """The fast path is taken for the loss models a baseline capture fits (a scikit-learn whose
    preprocessor is shaped otherwise would fall back to its own path, and fail this)."""
    for predictor in baseline.loss_model._predictors:
        assert isinstance(predictor._preprocessor, _Ranks)


def _openmp_threads() -> int:
    """The OpenMP thread count a parallel region started on this thread would get."""
    return ThreadpoolController().select(user_api="openmp").info()[0]["num_threads"]


@pytest.mark.skipif(os.cpu_count() == 1, reason="one core: OpenMP's default is one thread")
def test_a_small_batch_predicts_on_the_calling_thread_alone() -> None:
    """A scrape's batch runs its trees on one OpenMP thread, a cold start's on the default
    team, and the limit is the calling thread's own: a refresh running at the same time on
    another thread keeps the default. (The numbers do not change: the first test compares a
    4,000-row window, predicted under the limit, with scikit-learn's own predict.)"""
    default = _openmp_threads()
    assert default > 1
    seen: list[int] = []
    with _threads(200):
        assert _openmp_threads() == 1
        other = threading.Thread(target=lambda: seen.append(_openmp_threads()))
        other.start()
        other.join()
    assert seen == [default]
    with _threads(SMALL_BATCH):
        assert _openmp_threads() == default
    assert _openmp_threads() == default


@pytest.mark.parametrize(
    "payload",
    [functools.partial(os.getcwd), HistGradientBoostingRegressor().__class__.__mro__[0]],
    ids=["a function call", "a class, not a model"],
)
def test_a_stored_loss_model_that_is_not_one_is_refused(baseline, payload) -> None:
    data = baseline.loss_model.to_json()
    data["absolute_error"] = base64.b64encode(sio.dumps(payload)).decode()
    with pytest.raises(ValueError, match="loss model"):
        LossModel.from_json(data)


def test_notebook_api_gives_the_windows_numbers(baseline, reference) -> None:
    data = pd.DataFrame(reference.features)
    estimator = PerformanceEstimator.for_regression(
        data, reference.prediction, reference.actual, categorical_features=["placement", "device"]
    )
    assert estimator.calibration is None
    batch = ad_score_batch(np.random.default_rng(8), 5000, "covariate_shift")
    out = estimator.estimate(batch.prediction, data=pd.DataFrame(batch.features))
    report = report_of(MODEL, baseline, rows_of(batch, False))
    assert out["estimated"] == pytest.approx(report.estimated.values, rel=1e-12)
    assert "rmse" in out["degraded_metrics"]
    labelled = estimator.estimate(batch.prediction, batch.actual, pd.DataFrame(batch.features))
    assert labelled["realised"]["mae"] == pytest.approx(
        mean_absolute_error(batch.actual, batch.prediction)
    )
    assert labelled["disagreement"]["metric"] == "mae"
    assert labelled["disagreement"]["disagrees"] is False


def test_a_window_folds_each_rows_losses_once_as_two_separate_folds_would(baseline) -> None:
    """Labels read with their predictions: the window predicts the rows' expected losses once
    for both folds; the sums equal those of the two folds computing their own."""
    batch = ad_score_batch(np.random.default_rng(9), 3000, "covariate_shift")
    rows = rows_of(batch)
    now = 1_800_000_000.0
    rows = dataclasses.replace(rows, ts=np.linspace(now - 500, now - 1, len(rows)))
    window = ModelWindow(MODEL, baseline, [0.1])
    window.add_predictions(rows, now)
    totals = window.totals(now)
    drift_ids = window.drift.bucket_of(rows.ts)
    perf_ids = window.performance.bucket_of(rows.ts)
    drift = fold_drift(totals.drift_layout, MODEL, baseline, rows, drift_ids)
    performance = fold_performance(totals.performance_layout, MODEL, baseline, rows, perf_ids)
    np.testing.assert_allclose(totals.drift, drift.matrix.sum(axis=0), rtol=1e-12)
    expected = performance.matrix.sum(axis=0)
    expected[totals.performance_layout["predictions",]] = len(rows)
    np.testing.assert_allclose(totals.performance, expected, rtol=1e-12)
    assert totals.drift_layout.scalar(totals.drift, "dle_abs") > 0


def test_a_deferred_batch_reaches_the_rings_whole_and_bit_for_bit_as_folded_at_once(
    baseline,
) -> None:
    """A long read's large pages have their losses predicted on the worker thread while the
    next page is read: the rings hold nothing of such a batch until it settles, and then
    exactly what folding it at once gives (DLE's cells included), memo and counters too."""
    now = 1_800_000_000.0
    pages = []
    for seed in (10, 11):
        rows = rows_of(
            ad_score_batch(np.random.default_rng(seed), SMALL_BATCH + 500, "covariate_shift")
        )
        labels = rows.label.copy()
        labels[::3] = np.nan  # some labelled, some not yet
        pages.append(
            dataclasses.replace(
                rows,
                ts=np.sort(np.random.default_rng(seed).uniform(now - 3000, now - 1, len(rows))),
                label=labels,
                key=np.arange(len(rows), dtype=np.uint64) + np.uint64(seed * 100_000),
            )
        )
    at_once, deferred = (ModelWindow(MODEL, baseline, [0.1]) for _ in range(2))
    for rows in pages:
        at_once.add_predictions(rows, now)
    deferred.add_predictions(pages[0], now, defer=True)
    assert not deferred.drift.values.any() and not deferred.performance.values.any()
    deferred.add_predictions(pages[1], now, defer=True)  # the first page lands now
    deferred.settle()
    for ring in ("drift", "performance"):
        np.testing.assert_array_equal(getattr(deferred, ring).values, getattr(at_once, ring).values)
        np.testing.assert_array_equal(getattr(deferred, ring).ids, getattr(at_once, ring).ids)
    assert deferred.drift_layout.scalar(deferred.totals(now).drift, "dle_abs") > 0
    keys = np.concatenate([p.key for p in pages])
    buckets = np.concatenate([deferred.performance.bucket_of(p.ts) for p in pages])
    np.testing.assert_array_equal(
        deferred.memo.take(buckets, keys), at_once.memo.take(buckets, keys)
    )
    assert (deferred.predictions_total, deferred.labels_total) == (
        at_once.predictions_total,
        at_once.labels_total,
    )
