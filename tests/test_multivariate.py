"""Multivariate drift against independent computations: reconstruction errors against
scikit-learn's StandardScaler + PCA, the reference errors against scikit-learn fits that leave
each chunk out, the reference against the error of new rows, the verdict's false-alarm rate on
stationary windows, and its power on a change of correlation that no univariate verdict sees."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from exporter.baseline import Baseline
from exporter.drift import multivariate as mv
from exporter.monitors import health
from exporter.report import report_of
from exporter.simulator import AD_SCORE, ad_score_batch, reference_model
from exporter.window import capture_baseline

MODEL = reference_model(AD_SCORE, min_samples=200)


def rows_of(batch):
    return batch.rows(MODEL, labels=False)


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    return capture_baseline(
        MODEL, rows_of(ad_score_batch(np.random.default_rng(1), 10_000, "stable"))
    )


@settings(max_examples=40, deadline=None)
@given(
    hs.integers(2, 6),
    hs.floats(0.3, 0.95),
    hs.integers(0, 2**32 - 1),
)
def test_errors_are_scikit_learns_reconstruction_distances(k, share, seed) -> None:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(k, k))
    x = rng.normal(size=(600, k)) @ mixing * rng.uniform(0.1, 100, k) + rng.normal(0, 50, k)
    pca = mv.fit(tuple(f"f{i}" for i in range(k)), list(x.T), share)
    scaler = StandardScaler().fit(x)
    chosen = PCA(n_components=share, svd_solver="full").fit(scaler.transform(x)).n_components_
    assert len(pca.components) == min(chosen, k - 1)  # one component always left out
    reference = PCA(n_components=len(pca.components), svd_solver="full").fit(scaler.transform(x))
    probe = rng.normal(size=(50, k)) @ mixing * 2
    z = scaler.transform(probe)
    expected = np.linalg.norm(z - reference.inverse_transform(reference.transform(z)), axis=1)
    np.testing.assert_allclose(pca.errors(probe), expected, rtol=1e-6, atol=1e-9)
    assert pca.explained == pytest.approx(np.sum(reference.explained_variance_ratio_))


@settings(max_examples=25, deadline=None)
@given(hs.integers(2, 6), hs.integers(200, 700), hs.floats(0.3, 0.95), hs.integers(0, 2**32 - 1))
def test_reference_errors_are_each_chunks_errors_under_the_other_chunks_fit(
    k, n, share, seed
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k)) @ rng.normal(size=(k, k)) + rng.normal(0, 5, k)
    x[rng.random((n, k)) < 0.02] = np.nan  # rows with a gap are left out of the chunks
    pca = mv.fit(tuple(f"f{i}" for i in range(k)), list(x.T), share)
    complete = x[np.isfinite(x).all(axis=1)]
    if len(complete) < mv.MIN_ROWS:
        assert pca is None
        return
    q = len(pca.components)
    chunks = np.array_split(complete, mv.CHUNKS)
    errors = []
    for c, chunk in enumerate(chunks):
        rest = np.concatenate(chunks[:c] + chunks[c + 1 :])
        scaler = StandardScaler().fit(rest)
        reference = PCA(n_components=q, svd_solver="full").fit(scaler.transform(rest))
        z = scaler.transform(chunk)
        errors.append(
            np.linalg.norm(z - reference.inverse_transform(reference.transform(z)), axis=1)
        )
    every = np.concatenate(errors)
    assert pca.error_mean == pytest.approx(every.mean(), rel=1e-6)
    assert pca.error_std == pytest.approx(every.std(), rel=1e-6)
    assert pca.chunk_std == pytest.approx(np.std([e.mean() for e in errors], ddof=1), rel=1e-6)


def test_a_wide_model_on_a_small_reference_expects_the_error_of_new_rows() -> None:
    """1,000 reference rows of 45 independent features (the many-models benchmark's models):
    fitted to those rows, the components explain them 11% better than any new row, so an
    in-sample reference put every stationary window beyond the 10% band."""
    rng = np.random.default_rng(6)
    k = 45
    pca = mv.fit(tuple(f"f{i}" for i in range(k)), list(rng.normal(size=(1000, k)).T), 0.65)
    new_rows = pca.errors(rng.normal(size=(200_000, k))).mean()
    assert pca.error_mean == pytest.approx(new_rows, rel=0.03)
    windows = [pca.errors(rng.normal(size=(2000, k))) for _ in range(50)]
    fired = sum(mv.verdict(pca, 2000, w.sum(), 0.1, 0.005).detected for w in windows)
    assert fired <= 1


def test_two_features_keep_one_component_and_collinear_ones_fire_only_when_broken() -> None:
    """Two independent features explain 65% only with both components, which would leave every
    row's error rounding noise (a verdict of noise against noise fired); one is left out. An
    exactly collinear feature leaves the reference's errors noise too: stationary windows must
    not fire on it, a broken collinearity must."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3000, 2))
    two = mv.fit(("a", "b"), list(x.T), 0.65)
    assert len(two.components) == 1 and two.explained < 0.65
    collinear = np.column_stack([x, x.sum(axis=1)])
    three = mv.fit(("a", "b", "c"), list(collinear.T), 0.99)
    assert len(three.components) == 2 and three.error_mean < 1e-12

    def fired(pca, windows) -> int:
        return sum(
            mv.verdict(pca, len(w), pca.errors(w).sum(), 0.1, 0.005).detected for w in windows
        )

    fresh = [rng.normal(size=(500, 2)) for _ in range(40)]
    assert fired(two, fresh) <= 1
    assert fired(three, [np.column_stack([w, w.sum(axis=1)]) for w in fresh]) == 0
    assert fired(three, [np.column_stack([w, rng.normal(size=500)]) for w in fresh]) == 40


def test_fit_is_reproducible_and_survives_json() -> None:
    x = np.random.default_rng(2).normal(size=(1000, 4))
    first = mv.fit(("a", "b", "c", "d"), list(x.T), 0.65)
    second = mv.fit(("a", "b", "c", "d"), list(x.T), 0.65)
    np.testing.assert_array_equal(first.components, second.components)
    again = mv.Pca.from_json(first.to_json())
    np.testing.assert_array_equal(again.errors(x[:10]), first.errors(x[:10]))


def test_rows_with_a_missing_value_are_left_out_and_too_few_give_nothing() -> None:
    x = np.random.default_rng(3).normal(size=(400, 3))
    x[::2, 1] = np.nan
    pca = mv.fit(("a", "b", "c"), list(x.T), 0.65)
    assert pca.rows == 200
    assert mv.fit(("a", "b", "c"), list(x[:300].T), 0.65) is None  # 150 complete rows
    assert mv.fit(("a",), [x[:, 0]], 0.65) is None  # one feature: nothing to relate


def test_verdict_band_by_hand() -> None:
    pca = mv.Pca(
        ("a", "b"), np.zeros(2), np.ones(2), np.eye(2)[:1], 0.5, 10_000, 1.0, 0.5, 500, 0.03
    )
    # se = sqrt(max(0.03^2 * 500 / 2000, 0.5^2 / 2000) + 0.5^2 / 10000) = sqrt(2.25e-4 + 2.5e-5)
    se = np.sqrt(0.03**2 * 500 / 2000 + 0.5**2 / 10_000)
    z = 2.807033768  # two-sided 0.005
    half = max(z * se, 0.1)
    result = mv.verdict(pca, 2000, 2000 * 1.05, 0.1, 0.005)
    assert (result.lower, result.upper) == pytest.approx((1 - half, 1 + half))
    assert not result.detected
    assert mv.verdict(pca, 2000, 2000 * 1.2, 0.1, 0.005).detected
    assert mv.verdict(pca, 2000, 2000 * 0.8, 0.1, 0.005).detected  # either way


def test_stationary_windows_rarely_fire(baseline) -> None:
    rng = np.random.default_rng(4)
    fired = sum(
        report_of(
            MODEL,
            baseline,
            rows_of(ad_score_batch(rng, 2000, "stable")),
        ).multivariate.detected
        for _ in range(100)
    )
    assert fired <= 1


def test_a_flipped_correlation_fires_where_no_univariate_verdict_does(baseline) -> None:
    rng = np.random.default_rng(5)
    fired = univariate = 0
    for _ in range(40):
        report = report_of(
            MODEL,
            baseline,
            rows_of(ad_score_batch(rng, 2000, "correlation_change")),
        )
        fired += report.multivariate.detected
        univariate += bool(report.drifted_features)  # marginals did not move
    assert fired >= 38
    assert univariate == 0
    found = health.findings(MODEL, report)
    assert "multivariate_drift" in {f.type for f in found}
    body = health.health_json(MODEL, report, found)
    assert body["metrics"]["drift"]["multivariate"]["error"] == report.multivariate.error
