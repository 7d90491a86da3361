"""Property tests (hypothesis) of the statistics core: identities, signs, symmetry, merging."""

from __future__ import annotations

import dataclasses
import math
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp
from scipy import stats

from exporter import baseline, sufficient_stats
from exporter import significance as sig
from exporter.baseline import CategoricalReference, NumericReference
from exporter.config import DriftThresholds, parse_config
from exporter.drift import statistical as st
from exporter.drift.binning import EdgeCounter, EdgeCounters
from exporter.drift.feature_drift import Comparison, compare, compare_all
from exporter.report import build_report
from exporter.rows import parse_rows
from exporter.storage.prediction_store import (
    LABEL,
    PREDICTION,
    attribute_key,
    feature_key,
    segment_key,
)
from exporter.sufficient_stats import (
    Totals,
    drift_layout,
    fold_drift,
    fold_performance,
    performance_layout,
)
from exporter.window import capture_baseline
from tests.conftest import REGRESSION_MODEL
from tests.test_window_exactness import flatten

counts = hnp.arrays(
    np.float64, hs.integers(2, 30), elements=hs.integers(0, 1000).map(float)
).filter(lambda a: a.sum() > 0)


SETTINGS = settings(max_examples=200, deadline=None)


@SETTINGS
@given(counts)
def test_divergences_vanish_on_identical_distributions(a: np.ndarray) -> None:
    for divergence in (st.psi, st.kl_divergence, st.js_distance, st.ks_statistic):
        assert divergence(a, a) == pytest.approx(0.0, abs=1e-12)
    # The same shape at another sample size is the same distribution.
    assert st.psi(a, 3 * a) == pytest.approx(0.0, abs=1e-12)
    edges = np.arange(len(a) - 1, dtype=float)
    assert st.wasserstein_binned(edges, a, a) == pytest.approx(0.0, abs=1e-12)


@SETTINGS
@given(hs.data())
def test_divergences_are_non_negative_and_symmetric_where_defined(data: hs.DataObject) -> None:
    a = data.draw(counts)
    b = data.draw(
        hnp.arrays(np.float64, len(a), elements=hs.integers(0, 1000).map(float)).filter(
            lambda x: x.sum() > 0
        )
    )
    for divergence in (st.psi, st.kl_divergence, st.js_distance, st.ks_statistic):
        assert divergence(a, b) >= -1e-12
    assert st.psi(a, b) == pytest.approx(st.psi(b, a), rel=1e-9, abs=1e-12)
    assert st.js_distance(a, b) == pytest.approx(st.js_distance(b, a), rel=1e-9, abs=1e-12)
    assert st.ks_statistic(a, b) == pytest.approx(st.ks_statistic(b, a), abs=1e-12)
    assert 0.0 <= st.js_distance(a, b) <= 1.0 + 1e-12
    # Wasserstein on baseline-shaped counts: nothing outside the edges (the baseline's own range).
    inner_a, inner_b = a.copy(), b.copy()
    inner_a[[0, -1]] = inner_b[[0, -1]] = 0
    if inner_a.sum() > 0 and inner_b.sum() > 0:
        edges = np.cumsum(
            data.draw(hnp.arrays(np.float64, len(a) - 1, elements=hs.floats(0.01, 10)))
        )
        w = st.wasserstein_binned(edges, inner_a, inner_b)
        assert w >= 0
        assert w == pytest.approx(
            st.wasserstein_binned(edges, inner_b, inner_a), rel=1e-9, abs=1e-12
        )
    statistic, p_value = st.chi_square(a, b)
    assert statistic >= 0 and 0 <= p_value <= 1


def _rows(model, rng: np.random.Generator, n: int):
    tier = rng.choice(["gold", "silver", "bronze"], n)
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            PREDICTION: rng.normal(10, 3, n),
            LABEL: rng.normal(10, 3, n),
            feature_key("x1"): np.where(rng.random(n) < 0.05, np.nan, rng.normal(0, 1, n)),
            feature_key("x2"): rng.exponential(2, n),
            feature_key("color"): rng.choice(["red", "green", "blue", "mauve", None], n),
            segment_key("tier"): tier,
            attribute_key("tier"): tier,
        }
    )
    return parse_rows(frame, model, pd.Series(np.zeros(n)), label="optional")[0]


@settings(max_examples=40, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), buckets=hs.integers(1, 12))
def test_merging_buckets_equals_computing_on_all_rows(seed: int, buckets: int) -> None:
    model = parse_config(
        {
            "models": [
                {
                    **REGRESSION_MODEL,
                    "protected_attributes": ["tier"],
                    "slices": [{"name": "big_x2", "where": "x2 > baseline.p90"}],
                }
            ]
        }
    ).models[0]
    rng = np.random.default_rng(seed)
    baseline = capture_baseline(model, _rows(model, rng, 500))
    rows = _rows(model, rng, 300)
    split = rng.integers(0, buckets, len(rows))  # any assignment of rows to buckets
    dl, pl = drift_layout(model, baseline), performance_layout(model, baseline)
    merged = Totals(
        dl,
        fold_drift(dl, model, baseline, rows, split).matrix.sum(axis=0),
        pl,
        fold_performance(pl, model, baseline, rows, split).matrix.sum(axis=0),
    )
    together = np.zeros(len(rows), dtype=np.int64)  # every row in one bucket
    whole = Totals(
        dl,
        fold_drift(dl, model, baseline, rows, together).matrix[0],
        pl,
        fold_performance(pl, model, baseline, rows, together).matrix[0],
    )
    np.testing.assert_allclose(merged.drift, whole.drift, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(merged.performance, whole.performance, rtol=1e-12, atol=1e-9)
    a = flatten(dataclasses.asdict(build_report(model, baseline, merged)))
    b = flatten(dataclasses.asdict(build_report(model, baseline, whole)))
    assert a.keys() == b.keys()
    for key, value in b.items():
        expected = (
            pytest.approx(value, rel=1e-9, abs=1e-9, nan_ok=True)
            if isinstance(value, float)
            else value
        )
        assert a[key] == expected, key


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, hs.integers(5, 400), elements=hs.floats(-1e6, 1e6)))
def test_baseline_bins_hold_every_baseline_value(values: np.ndarray) -> None:
    ref = NumericReference.capture(values)
    assert ref.counts.sum() == len(values)
    assert ref.counts[0] == 0 and ref.counts[-1] == 0
    assert np.all(np.diff(ref.psi_bins) >= 0)
    # The values are binned a chunk at a time (few MB of temporaries at any length): chunks of
    # 7 give the counts of one pass, each value counted once, the last short chunk included.
    with mock.patch.object(baseline, "CHUNK", 7):
        chunked = NumericReference.capture(values)
    assert np.array_equal(chunked.counts, np.bincount(ref.bin(values), minlength=ref.n_bins))


samples = hnp.arrays(
    np.float64, hs.integers(3, 60), elements=hs.floats(-1e3, 1e3, allow_nan=False)
).filter(lambda a: np.ptp(a) > 1e-3)


def _sums(x: np.ndarray) -> tuple[float, float, float]:
    return float(x.sum()), float((x * x).sum()), float(len(x))


@given(samples)
def test_mean_standard_error_is_scipys(x: np.ndarray) -> None:
    assert sig.mean_se(*_sums(x)) == pytest.approx(stats.sem(x), rel=1e-6)


@given(samples, samples)
def test_mean_gap_at_zero_margin_is_welchs_t(a: np.ndarray, b: np.ndarray) -> None:
    """With no margin the statistic is |Welch's t| (scipy); a margin lowers it by margin / se."""
    welch = abs(stats.ttest_ind(b, a, equal_var=False).statistic)
    assert sig.mean_gap_beyond(_sums(a), _sums(b), 0.0) == pytest.approx(welch, rel=1e-6)
    se = np.hypot(a.std(ddof=1) / np.sqrt(len(a)), b.std(ddof=1) / np.sqrt(len(b)))
    assert sig.mean_gap_beyond(_sums(a), _sums(b), 1.0) == pytest.approx(
        welch - 1.0 / se, rel=1e-6, abs=1e-9
    )


@given(hs.integers(0, 500), hs.integers(30, 1000), hs.integers(1, 500))
def test_rate_ratio_statistic_falls_as_the_low_rate_rises(x: int, n: int, more: int) -> None:
    """The score test: more selections in the low group is less evidence of a gap, an empty
    group included; a ratio exactly on the line is no evidence at all."""
    x = min(x, n - 1)
    low = sig.rate_ratio_below(x, n, 500, 1000, 0.8)
    higher = sig.rate_ratio_below(min(n, x + more), n, 500, 1000, 0.8)
    assert higher < low
    assert sig.rate_ratio_below(400, 1000, 500, 1000, 0.8) == pytest.approx(0.0, abs=1e-12)


def test_an_empty_group_against_a_half_selected_one_is_a_gap() -> None:
    """0 of 30 selected against 250 of 500: far below four fifths, beyond chance."""
    assert sig.rate_ratio_below(0, 30, 250, 500, 0.8) > sig.critical_z(0.005, 12)


def test_critical_values_are_normal_quantiles() -> None:
    assert sig.critical_z(0.05, 1) == pytest.approx(stats.norm.ppf(0.95))
    assert sig.critical_z(0.05, 10) == pytest.approx(stats.norm.ppf(1 - 0.005))
    assert sig.pairs(4) == 12  # ordered pairs: the data pick which group is lowest


def test_auc_standard_error_matches_hanley_and_mcneil() -> None:
    """Hanley & McNeil (1982), their worked example: A = 0.7, 50 of each class -> SE 0.0522."""
    assert sig.auc_se(0.7, 50, 50) == pytest.approx(0.0522, abs=5e-4)


@given(
    hs.integers(2, 200),
    hs.floats(1e-6, 0.5),
    hs.floats(1.0, 1e7),
    hs.floats(1.0, 1e7),
    hs.floats(0.0, 3.0),
    hs.integers(1, 60),
)
def test_null_quantiles_and_p_values_are_scipy_distributions(
    bins: int, alpha: float, m: float, n: float, d: float, comparisons: int
) -> None:
    """The verdicts' quantiles and p-values call scipy's special functions directly (the
    distribution objects' dispatch cost 0.1 ms a call, 150 calls a report): the same numbers as
    scipy.stats' chi-square, Kolmogorov and normal distributions, arguments in the right order."""
    assert st.psi_null_quantile(m, n, bins, alpha) == pytest.approx(
        stats.chi2.isf(alpha, bins - 1) * (1 / m + 1 / n), rel=1e-12
    )
    assert st.ks_p_value(d, m, n) == pytest.approx(
        stats.kstwobign.sf(d * math.sqrt(m * n / (m + n))), rel=1e-12, abs=1e-300
    )
    assert sig.critical_z(alpha, comparisons) == pytest.approx(
        stats.norm.isf(alpha / comparisons), rel=1e-12
    )
    counts = np.arange(1.0, bins + 1.0)
    assert st.chi_square(counts, counts[::-1])[1] == pytest.approx(
        stats.chi2_contingency(np.vstack([counts, counts[::-1]]), correction=False)[1],
        rel=1e-9,
        abs=1e-300,
    )


@settings(max_examples=300, deadline=None)
@given(
    sample=hnp.arrays(
        float,
        hs.integers(2, 400),
        elements=hs.one_of(
            hs.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False),
            hs.integers(-50, 50).map(float),  # ties: few distinct values, crowded edges
            hs.floats(-1e300, 1e300),  # ranges near the floats' own resolution and limits
        ),
    ),
    extra=hnp.arrays(float, hs.integers(0, 50), elements=hs.floats(allow_nan=False)),
)
def test_edge_counter_is_searchsorted(sample: np.ndarray, extra: np.ndarray) -> None:
    """The grid's count is numpy's binary search's, on quantile edges as a baseline makes them,
    for the edges themselves, their neighbouring floats, values beyond them and infinities."""
    edges = np.unique(np.quantile(sample, np.linspace(0.0, 1.0, 101)))
    x = np.concatenate(
        [
            sample,
            edges,
            np.nextafter(edges, -np.inf),
            np.nextafter(edges, np.inf),
            extra,
            [-np.inf, np.inf],
        ]
    )
    expected = np.searchsorted(edges, x, side="right")
    assert np.array_equal(EdgeCounters.of([edges]).count(x[None, :])[0], expected)


def test_edge_counter_serves_the_usual_baselines() -> None:
    """The grid is used (not binary search) for bell-shaped and integer-valued features."""
    rng = np.random.default_rng(0)
    for sample in (rng.normal(size=10_000), rng.integers(0, 30, 10_000).astype(float)):
        edges = np.unique(np.quantile(sample, np.linspace(0.0, 1.0, 101)))[1:-1]
        assert EdgeCounter.of(edges) is not None


@settings(max_examples=60, deadline=None)
@given(hs.data())
def test_drift_of_a_stack_is_the_drift_of_each_distribution_alone(data: hs.DataObject) -> None:
    """`compare_all` computes numeric distributions of one bin layout as one stack: each one's
    result is what it gets compared alone, and its statistics are the 1-D ones on its own PSI
    bins (checked against scipy above). Mixed in: other layouts (tied values), a constant
    feature (no Wasserstein), categorical ones (two of as many categories, stacked), windows
    below min_samples and thin ones whose null quantiles are simulated."""
    rng = np.random.default_rng(data.draw(hs.integers(0, 2**32 - 1)))
    refs = [
        NumericReference.capture(rng.normal(size=500)),
        NumericReference.capture(rng.normal(3, 2, size=800)),
        NumericReference.capture(rng.integers(0, 5, size=300).astype(float)),  # ties
        NumericReference.capture(rng.integers(0, 5, size=300).astype(float)),  # other shares
        NumericReference.capture(np.full(50, 7.0)),  # constant
        CategoricalReference(
            ("a", "b", "c"), np.array([50.0, 30.0, 0.0, 20.0]), frozenset("abc"), 0
        ),
        # As many categories as the one above (a stack with it), other names and shares.
        CategoricalReference(
            ("x", "y", "z"), np.array([5.0, 300.0, 40.0, 0.0]), frozenset("xyz"), 0
        ),
        CategoricalReference(("p", "q"), np.array([10.0, 90.0, 0.0]), frozenset("pq"), 0),
    ]
    items = []
    for ref in data.draw(hs.lists(hs.sampled_from(refs), min_size=1, max_size=8)):
        total = data.draw(hs.sampled_from([0, 40, 300, 2500, 10_000]))
        current = rng.multinomial(total, rng.dirichlet(np.ones(ref.n_bins))).astype(float)
        sums = rng.normal(size=2) * current[[0, -1]] if isinstance(ref, NumericReference) else ()
        items.append(Comparison(ref, current, DriftThresholds(), *sums))
    alpha = data.draw(hs.floats(1e-5, 0.1))
    together = compare_all(items, 100, alpha)
    assert len(together) == len(items)
    for item, result in zip(items, together, strict=True):
        alone = compare(
            item.ref, item.current, item.thresholds, 100, alpha, item.below_sum, item.above_sum
        )
        assert result.triggered == alone.triggered and result.detected == alone.detected
        for name in ("psi", "ks_statistic", "wasserstein_normalized", "chi_square", "ks_p_value"):
            value, reference = getattr(result, name), getattr(alone, name)
            assert (value is None) == (reference is None), name
            if value is not None:
                assert value == pytest.approx(reference, rel=1e-12, nan_ok=True), name
        assert result.thresholds == pytest.approx(alone.thresholds, rel=1e-12)
        assert result.bins == alone.bins and result.rows == alone.rows
        assert result.current_ratio == pytest.approx(alone.current_ratio, rel=1e-12)
        assert result.baseline_ratio == pytest.approx(alone.baseline_ratio, rel=1e-12)
        if isinstance(item.ref, NumericReference):
            expected = np.bincount(item.ref.psi_bins, weights=item.ref.counts)
            actual = np.bincount(item.ref.psi_bins, weights=item.current)
            assert result.psi == pytest.approx(st.psi(expected, actual), rel=1e-12)
            assert result.js_distance == pytest.approx(st.js_distance(expected, actual), rel=1e-12)
            assert result.ks_statistic == pytest.approx(
                st.ks_statistic(item.ref.counts, item.current), rel=1e-12, abs=1e-15
            )
            assert (result.wasserstein_normalized is None) == (item.ref.std == 0)
        else:
            assert result.chi_square == pytest.approx(
                st.chi_square(item.ref.counts, item.current)[0]
            )


@SETTINGS
@given(
    hnp.arrays(
        float,
        hs.tuples(hs.integers(0, 8), hs.integers(0, 8)).map(lambda t: (2, t[0], t[0])),
        elements=hs.one_of(hs.sampled_from([0.0, 0.5, -0.5, math.nan]), hs.floats(-1, 1)),
    )
)
def test_largest_correlation_change_is_the_first_largest_finite_pair(pair: np.ndarray) -> None:
    """Against a plain loop over the pairs i < j in row order: ties go to the first pair, pairs
    with an unknown (NaN) correlation on either side never win."""
    baseline, current = pair
    best, where = math.nan, (-1, -1)
    for i in range(len(baseline)):
        for j in range(i + 1, len(baseline)):
            change = abs(current[i, j] - baseline[i, j])
            if math.isfinite(change) and (math.isnan(best) or change > best):
                best, where = change, (i, j)
    got, i, j = st.largest_correlation_change(baseline, current)
    assert (i, j) == where
    assert got == best or (math.isnan(got) and math.isnan(best))


@settings(max_examples=150, deadline=None)
@given(
    sets=hs.lists(
        hnp.arrays(
            float,
            hs.integers(0, 120),
            elements=hs.one_of(
                hs.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False),
                hs.integers(-20, 20).map(float),
                hs.floats(-1e300, 1e300),
            ),
        ),
        min_size=1,
        max_size=6,
    ),
    seed=hs.integers(0, 2**32 - 1),
)
def test_edge_counters_count_each_column_as_searchsorted(sets: list, seed: int) -> None:
    """Several edge sets at once, gridded or not (empty, one edge, a range the grid cannot
    serve), each row of values against its own set: the edges, their neighbours, infinities."""
    rng = np.random.default_rng(seed)
    edge_sets = [np.unique(s) for s in sets]
    counters = EdgeCounters.of(edge_sets)
    columns = []
    for edges in edge_sets:
        pool = np.concatenate(
            [edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf), [-np.inf, np.inf, 0]]
        )
        columns.append(rng.choice(pool, 60))
    x = np.stack(columns)
    expected = np.stack([np.searchsorted(e, x[j], side="right") for j, e in enumerate(edge_sets)])
    assert np.array_equal(counters.count(x), expected)


@settings(max_examples=40, deadline=None)
@given(
    seed=hs.integers(0, 2**32 - 1),
    features=hs.integers(1, 5),
    block=hs.integers(1, 40),
    spread=hs.integers(1, 60),
)
def test_numeric_fold_counts_each_feature_as_it_would_alone(
    seed: int, features: int, block: int, spread: int
) -> None:
    """All numeric features folded at once, in row blocks of any size and over any number of
    buckets, give each feature and bucket the counts and sums numpy gives it on its own:
    missing, type errors, out of range (configured or the baseline's), fine bins (values on the
    edges included) and tail sums."""
    rng = np.random.default_rng(seed)
    names = [f"n{j}" for j in range(features)]
    ranged = {n: (-1.0, 1.0) for n in names[::2]}
    model = parse_config(
        {
            "models": [
                {
                    **REGRESSION_MODEL,
                    "features": {
                        n: {
                            "type": "numeric",
                            **({"valid_range": list(ranged[n])} if n in ranged else {}),
                        }
                        for n in names
                    },
                    "segments": [],
                }
            ]
        }
    ).models[0]
    kinds = [rng.normal(size=400), rng.integers(0, 4, 400).astype(float), np.full(400, 2.5)]
    reference = {n: kinds[j % 3] * (j + 1) for j, n in enumerate(names)}
    baseline = capture_baseline(model, _numeric_rows(model, reference, rng))
    live = {}
    for n in names:
        edges = baseline.features[n].edges
        pool = np.concatenate([edges, rng.normal(0, 3 * (1 + np.abs(edges).max()), 50)])
        values = rng.choice(pool, 300).astype(object)
        values[rng.random(300) < 0.1] = None
        values[rng.random(300) < 0.05] = "not a number"
        live[n] = values
    rows = _numeric_rows(model, live, rng)
    buckets = rng.integers(0, spread, len(rows))
    layout = drift_layout(model, baseline)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sufficient_stats, "CELLS", block * features)  # blocks of `block` rows
        matrix = fold_drift(layout, model, baseline, rows, buckets).matrix
    for n in names:
        ref = baseline.features[n]
        raw = pd.to_numeric(pd.Series(live[n]), errors="coerce").to_numpy(float)
        missing = pd.Series(live[n]).isna().to_numpy()
        wrong = ~missing & np.isnan(raw)
        x = np.where(np.isnan(raw), 0.0, raw)
        bins = np.searchsorted(ref.edges[1:-1], x, side="right") + 1
        bins[x < ref.edges[0]] = 0
        bins[x > ref.edges[-1]] = len(ref.edges)
        lo, hi = ranged.get(n, (ref.edges[0], ref.edges[-1]))
        finite = ~np.isnan(raw)
        for b, row in zip(np.unique(buckets), matrix, strict=True):
            here = buckets == b
            assert layout.scalar(row, "missing", n) == np.sum(here & missing)
            assert layout.scalar(row, "type_error", n) == np.sum(here & wrong)
            out = finite & ((x < lo) | (x > hi))
            assert layout.scalar(row, "out_of_range", n) == np.sum(here & out)
            expected = np.bincount(bins[here & finite], minlength=ref.n_bins)
            np.testing.assert_array_equal(layout.read(row, "bins", n), expected)
            below, above = here & finite & (bins == 0), here & finite & (bins == ref.n_bins - 1)
            assert layout.scalar(row, "below_sum", n) == pytest.approx(x[below].sum(), rel=1e-12)
            assert layout.scalar(row, "above_sum", n) == pytest.approx(x[above].sum(), rel=1e-12)


def _numeric_rows(model, columns: dict[str, np.ndarray], rng: np.random.Generator):
    """Rows of a regression model whose features are all numeric, from their raw values."""
    n = len(next(iter(columns.values())))
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            PREDICTION: rng.normal(10, 3, n),
            LABEL: rng.normal(10, 3, n),
            **{feature_key(name): values for name, values in columns.items()},
            attribute_key("tier"): np.full(n, "gold"),
        }
    )
    return parse_rows(frame, model, pd.Series(np.zeros(n)), label="optional")[0]


@settings(max_examples=100, deadline=None)
@given(
    seed=hs.integers(0, 2**32 - 1),
    rows=hs.integers(0, 300),
    width=hs.integers(1, 12),
    spread=hs.integers(1, 40),
)
def test_columns_counted_together_are_each_columns_sums_per_bucket(
    seed: int, rows: int, width: int, spread: int
) -> None:
    """`Accumulator.count_columns` (the correlation sums of every feature in one call) gives
    each bucket and column the sum of that column over the bucket's masked rows: exactly what
    counting the column alone gives (the same additions in the same order), and to 1e-9 what
    numpy sums per bucket."""
    rng = np.random.default_rng(seed)
    layout = sufficient_stats.Layout()
    layout.add("other", width=3)
    layout.add("sums", width=width)
    buckets = rng.integers(0, spread, rows)
    values = rng.normal(scale=rng.choice([1e-3, 1.0, 1e6]), size=(rows, width))
    mask = rng.random(rows) < 0.8
    together = sufficient_stats.Accumulator(layout, buckets)
    together.count_columns(("sums",), values, mask)
    alone = sufficient_stats.Accumulator(layout, buckets)
    for j in range(width):
        alone.count(("sums",), j, mask=mask, weights=values[:, j])
    assert np.array_equal(together.matrix, alone.matrix)
    part = layout["sums",]
    for row, bucket in enumerate(together.buckets):
        expected = values[(buckets == bucket) & mask].sum(axis=0)
        np.testing.assert_allclose(together.matrix[row, part], expected, rtol=1e-9, atol=1e-9)
    assert not together.matrix[:, : part.start].any()  # nothing outside the statistic's cells
