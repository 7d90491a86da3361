"""Each statistic against an independent implementation on the same rows.

scipy for KS, Wasserstein, chi-square, JS and KL; scikit-learn for performance; Fairlearn for
fairness. Binned statistics are checked within their documented binning bound; everything else
to 1e-9.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fairlearn import metrics as flm
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn import metrics as skm

from exporter.baseline import CategoricalReference, NumericReference
from exporter.config import parse_config
from exporter.drift import statistical as st
from exporter.report import build_report
from exporter.rows import parse_rows
from exporter.storage.prediction_store import LABEL, PREDICTION, SCORE, attribute_key, feature_key
from exporter.sufficient_stats import totals_of
from exporter.window import capture_baseline
from tests.conftest import CLASSIFIER_MODEL, REGRESSION_MODEL

SEEDS = range(6)


def _numeric_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    kind = seed % 3
    if kind == 0:
        return rng.normal(0, 1, 5000), rng.normal(
            rng.uniform(-0.5, 0.8), rng.uniform(0.7, 1.5), 2000
        )
    if kind == 1:
        return rng.lognormal(0, 0.6, 5000), rng.lognormal(0.2, 0.8, 1500)
    return rng.poisson(3, 5000).astype(float), rng.poisson(3.5, 2500).astype(float)  # ties


def _binned(
    baseline: np.ndarray, current: np.ndarray
) -> tuple[NumericReference, np.ndarray, float, float]:
    ref = NumericReference.capture(baseline)
    bins = ref.bin(current)
    counts = np.bincount(bins, minlength=ref.n_bins).astype(float)
    return (
        ref,
        counts,
        float(current[bins == 0].sum()),
        float(current[bins == ref.n_bins - 1].sum()),
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_ks_statistic_matches_scipy_within_the_bin_bound(seed: int) -> None:
    baseline, current = _numeric_pair(seed)
    ref, counts, _, _ = _binned(baseline, current)
    exact = stats.ks_2samp(baseline, current).statistic
    # The binned statistic is the exact KS of the binned data; the raw data's CDFs can move by
    # at most one bin's share inside a bin.
    bound = float(np.max(np.maximum(st.proportions(ref.counts), st.proportions(counts))))
    assert abs(st.ks_statistic(ref.counts, counts) - exact) <= bound + 1e-12


@pytest.mark.parametrize("seed", SEEDS)
def test_wasserstein_matches_scipy_within_the_bin_bound(seed: int) -> None:
    baseline, current = _numeric_pair(seed)
    ref, counts, below, above = _binned(baseline, current)
    ours = st.wasserstein_binned(ref.edges, ref.counts, counts, below, above)
    exact = stats.wasserstein_distance(baseline, current)
    assert abs(ours - exact) <= st.wasserstein_bin_bound(ref.edges, ref.counts, counts) + 1e-12


@pytest.mark.parametrize("seed", SEEDS)
def test_divergences_and_chi_square_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cats = [f"c{i}" for i in range(8)]
    baseline = rng.choice(cats, 4000, p=rng.dirichlet(np.ones(8)))
    current = rng.choice([*cats, "new"], 900, p=rng.dirichlet(np.ones(9)))
    ref = CategoricalReference.capture(baseline.astype(object))
    e, a = (
        ref.counts,
        np.bincount(ref.bin(current.astype(object)), minlength=ref.n_bins).astype(float),
    )
    statistic, p_value = st.chi_square(e, a)
    keep = (e > 0) | (a > 0)
    expected = stats.chi2_contingency(np.vstack([e[keep], a[keep]]), correction=False)
    assert statistic == pytest.approx(expected.statistic, rel=1e-9)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert st.js_distance(e, a) == pytest.approx(
        jensenshannon(e / e.sum(), a / a.sum(), base=2), rel=1e-9
    )
    es, as_ = st.smoothed(e), st.smoothed(a)
    assert st.kl_divergence(e, a) == pytest.approx(stats.entropy(as_, es), rel=1e-9)
    assert st.psi(e, a) == pytest.approx(stats.entropy(as_, es) + stats.entropy(es, as_), rel=1e-9)


def _frame(model_id: str, rng: np.random.Generator, n: int) -> pd.DataFrame:
    group = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    x1 = rng.normal(0, 1, n)
    x2 = x1 * 0.6 + rng.normal(0, 0.8, n)
    frame = {"id": np.arange(n), feature_key("x1"): x1, attribute_key("grp"): group}
    if model_id == "reg":
        y = 3 * x1 + rng.normal(0, 1, n) + (group == "c") * 1.5
        frame |= {
            feature_key("x2"): x2,
            feature_key("color"): rng.choice(["red", "blue"], n),
            "seg.tier": rng.choice(["gold", "silver"], n),
            LABEL: y,
            PREDICTION: y + rng.normal(0, 1 + (group == "b"), n),
        }
    else:
        p = 1 / (1 + np.exp(-(x1 + (group == "a"))))
        score = np.clip(p + rng.normal(0, 0.15, n), 0, 1)
        frame |= {
            feature_key("plan"): rng.choice(["free", "pro"], n),
            SCORE: score,
            PREDICTION: (score >= 0.5).astype(float),
            LABEL: (rng.random(n) < p).astype(float),
        }
    return pd.DataFrame(frame)


def _report(model_raw: dict, seed: int):
    model = parse_config({"models": [model_raw]}).models[0]
    rng = np.random.default_rng(seed)
    ts = pd.Series(np.zeros(3000))
    baseline = capture_baseline(
        model, parse_rows(_frame(model.model_id, rng, 3000), model, ts, "optional")[0]
    )
    frame = _frame(model.model_id, rng, 3000)
    rows = parse_rows(frame, model, ts, label="required")[0]
    totals = totals_of(model, baseline, rows)
    return build_report(model, baseline, totals), frame, baseline


FAIRNESS = {"protected_attributes": ["grp"], "fairness": {"min_group_size": 10}}


@pytest.mark.parametrize("seed", SEEDS)
def test_classifier_performance_and_fairness_match_sklearn_and_fairlearn(seed: int) -> None:
    report, frame, _ = _report(
        {**CLASSIFIER_MODEL, **FAIRNESS, "slices": [{"name": "low_x1", "where": "x1 < -1"}]}, seed
    )
    y, score, group = frame[LABEL].to_numpy(), frame[SCORE].to_numpy(), frame[attribute_key("grp")]
    y_pred = (score >= 0.5).astype(float)
    perf = report.performance["all"]
    assert perf["accuracy"] == pytest.approx(skm.accuracy_score(y, y_pred), rel=1e-9)
    assert perf["precision"] == pytest.approx(skm.precision_score(y, y_pred), rel=1e-9)
    assert perf["recall"] == pytest.approx(skm.recall_score(y, y_pred), rel=1e-9)
    assert perf["f1"] == pytest.approx(skm.f1_score(y, y_pred), rel=1e-9)
    assert perf["log_loss"] == pytest.approx(skm.log_loss(y, score), rel=1e-9)
    assert perf["brier_score"] == pytest.approx(skm.brier_score_loss(y, score), rel=1e-9)
    bins = np.minimum((score * 1000).astype(int), 999)
    pos, neg = np.bincount(bins[y == 1], minlength=1000), np.bincount(bins[y == 0], minlength=1000)
    assert (
        abs(perf["roc_auc"] - skm.roc_auc_score(y, score))
        <= 0.5 * np.sum(pos * neg) / (pos.sum() * neg.sum()) + 1e-12
    )
    in_slice = frame[feature_key("x1")].to_numpy() < -1
    assert report.performance["low_x1"]["recall"] == pytest.approx(
        skm.recall_score(y[in_slice], y_pred[in_slice]), rel=1e-9
    )

    fairness = report.fairness["grp"]
    assert fairness.demographic_parity_difference == pytest.approx(
        flm.demographic_parity_difference(y, y_pred, sensitive_features=group), rel=1e-9
    )
    assert fairness.demographic_parity_ratio == pytest.approx(
        flm.demographic_parity_ratio(y, y_pred, sensitive_features=group), rel=1e-9
    )
    assert fairness.equalized_odds_difference == pytest.approx(
        flm.equalized_odds_difference(y, y_pred, sensitive_features=group), rel=1e-9
    )
    assert fairness.equal_opportunity_difference == pytest.approx(
        flm.equal_opportunity_difference(y, y_pred, sensitive_features=group), rel=1e-9
    )
    frame_metrics = flm.MetricFrame(
        metrics={
            "selection_rate": flm.selection_rate,
            "tpr": flm.true_positive_rate,
            "fpr": flm.false_positive_rate,
            "count": flm.count,
        },
        y_true=y,
        y_pred=y_pred,
        sensitive_features=group,
    )
    for g, row in frame_metrics.by_group.iterrows():
        mine = fairness.groups[g]
        assert mine.predictions == row["count"]
        assert mine.selection_rate == pytest.approx(row["selection_rate"], rel=1e-9)
        assert mine.true_positive_rate == pytest.approx(row["tpr"], rel=1e-9)
        assert mine.false_positive_rate == pytest.approx(row["fpr"], rel=1e-9)
    assert fairness.violation == (fairness.demographic_parity_ratio < 0.8)


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_performance_fairness_and_correlation_match_references(seed: int) -> None:
    report, frame, baseline = _report(
        {
            **REGRESSION_MODEL,
            **FAIRNESS,
            "fairness": {"min_group_size": 10, "regression_cutoff": 1.0},
            "slices": [{"name": "big_x1", "where": "x1 > baseline.p90"}],
        },
        seed,
    )
    y, yhat, group = (
        frame[LABEL].to_numpy(),
        frame[PREDICTION].to_numpy(),
        frame[attribute_key("grp")],
    )
    perf = report.performance["all"]
    assert perf["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, yhat)), rel=1e-9)
    assert perf["mae"] == pytest.approx(skm.mean_absolute_error(y, yhat), rel=1e-9)
    assert perf["r2"] == pytest.approx(skm.r2_score(y, yhat), rel=1e-9)
    assert perf["mean_error"] == pytest.approx(np.mean(yhat - y), rel=1e-9)
    # The slice threshold: the 90th percentile of the baseline's CDF at its fine bin edges, which
    # lies within one fine bin of numpy's percentile of the raw baseline values.
    x1 = frame[feature_key("x1")].to_numpy()
    ref = baseline.features["x1"]
    cdf = np.concatenate([[0.0], np.cumsum(ref.counts[1:-1]) / ref.counts[1:-1].sum()])
    p90 = float(np.interp(0.9, cdf, ref.edges))
    raw = np.quantile(_baseline_x1(seed), [0.89, 0.9, 0.91])
    assert raw[0] <= p90 <= raw[2]
    in_slice = x1 > p90
    assert report.segment_counts["big_x1"] == in_slice.sum()
    assert report.performance["big_x1"]["rmse"] == pytest.approx(
        math.sqrt(skm.mean_squared_error(y[in_slice], yhat[in_slice])), rel=1e-9
    )

    fairness = report.fairness["grp"]
    selected = (yhat >= 1.0).astype(float)
    assert fairness.demographic_parity_difference == pytest.approx(
        flm.demographic_parity_difference(y, selected, sensitive_features=group), rel=1e-9
    )
    rmse = flm.MetricFrame(
        metrics=lambda t, p: math.sqrt(skm.mean_squared_error(t, p)),
        y_true=y,
        y_pred=yhat,
        sensitive_features=group,
    ).by_group
    for g, value in rmse.items():
        assert fairness.groups[g].rmse == pytest.approx(value, rel=1e-9)
    assert fairness.error_ratio == pytest.approx(rmse.max() / rmse.min(), rel=1e-9)
    means = pd.Series(yhat).groupby(group.to_numpy()).mean()
    assert fairness.mean_prediction_ratio == pytest.approx(means.min() / means.max(), rel=1e-9)

    current = np.corrcoef(x1, frame[feature_key("x2")].to_numpy())[0, 1]
    reference = baseline.correlation["matrix"][0][1]
    assert report.correlation.largest_change == pytest.approx(abs(current - reference), rel=1e-9)
    assert report.correlation.pair == ("x1", "x2")


def _baseline_x1(seed: int) -> np.ndarray:
    """The x1 values `_report` used for the baseline (the first draw of the same generator)."""
    return _frame("reg", np.random.default_rng(seed), 3000)[feature_key("x1")].to_numpy()
