"""Window totals + baseline + config -> the numbers of one model. Pure.

Everything the collector, the JSON API and the Python API show comes out of `build_report`, so
the same window gives the same numbers everywhere. The maths lives in `drift/`, `performance/`
and `fairness/`; this module only reads the window's sums and hands them over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from exporter import significance as sig
from exporter.baseline import Baseline, Reference
from exporter.config import DriftThresholds, ModelConfig
from exporter.drift import multivariate as mv
from exporter.drift import statistical as st
from exporter.drift.feature_drift import Comparison, DriftResult, compare_all, configured_limits
from exporter.fairness import metrics as fm
from exporter.performance import estimation as est
from exporter.performance import loss_model as dle
from exporter.performance import metrics as pm
from exporter.rows import ALL, OTHER, Rows
from exporter.sufficient_stats import (
    ESTIMATED_CELLS,
    PREDICTION,
    Layout,
    Totals,
    estimates,
    model_groups,
    multivariate,
    totals_of,
)


@dataclass(frozen=True)
class QualityResult:
    missing_ratio: float
    type_error_ratio: float | None  # numeric only
    out_of_range_ratio: float | None  # numeric only
    new_category_ratio: float | None  # categorical only


@dataclass(frozen=True)
class FeatureReport:
    name: str
    type: str
    quality: QualityResult
    drift: DriftResult | None  # None without a baseline or below min_samples values


@dataclass(frozen=True)
class CorrelationDrift:
    largest_change: float  # max |corr_window - corr_baseline| over numeric feature pairs
    pair: tuple[str, str]
    rows: int  # window rows with every numeric feature present


@dataclass(frozen=True)
class GroupReport:
    predictions: int  # in the drift window
    selection_rate: float | None  # None when "selected" is undefined (regression without cut-off)
    mean_prediction: float
    labeled: int  # in the performance window
    true_positive_rate: float | None  # classifier
    false_positive_rate: float | None  # classifier
    rmse: float | None  # regression
    mae: float | None  # regression
    mean_error: float | None  # regression: mean of prediction - actual (the group's bias)


@dataclass(frozen=True)
class FairnessReport:
    attribute: str
    groups: dict[str, GroupReport]
    compared: tuple[str, ...]  # groups large enough to compare (never "other")
    excluded: tuple[str, ...]  # listed groups below fairness.min_group_size predictions
    demographic_parity_difference: float | None
    demographic_parity_ratio: float | None
    equalized_odds_difference: float | None
    equal_opportunity_difference: float | None
    error_ratio: float | None  # regression: max/min group RMSE
    mean_prediction_ratio: float  # min/max group mean output
    # regression: largest |group mean error - other groups' mean error| / residual sd
    residual_bias: float | None
    # A gap beyond its threshold and beyond sampling noise (fairness.alpha): parity ratio below
    # the four-fifths line; for regression also residual bias or error ratio. None: < 2 groups.
    violation: bool | None
    reasons: tuple[str, ...] = ()  # which gaps make the violation


@dataclass(frozen=True)
class EstimatedPerformance:
    """Performance of the whole drift window estimated without labels (CBPE for a classifier,
    DLE for a regression), and, once labels arrive, how the estimate compares with them."""

    rows: int
    values: dict[str, float]  # metric -> estimate
    standard_errors: dict[str, float]  # metric -> sampling band (one standard error)
    degradation: dict[str, float]  # metric -> ratio vs the baseline's realised value
    degradation_significant: dict[str, bool]  # worse than baseline beyond the band
    disagreement: est.Disagreement | None  # realised vs estimated on the labelled rows

    @property
    def degraded(self) -> dict[str, float]:
        return significant_only(self.degradation, self.degradation_significant)


def significant_only(
    degradation: dict[str, float], significant: dict[str, bool]
) -> dict[str, float]:
    """Degradation ratios of the metrics that are worse beyond sampling noise."""
    return {m: r for m, r in degradation.items() if math.isfinite(r) and significant.get(m)}


@dataclass(frozen=True)
class ModelReport:
    model_id: str
    kind: str
    window_predictions: int
    window_labeled: int
    performance_window_predictions: int
    features: dict[str, FeatureReport]
    prediction_drift: DriftResult | None
    correlation: CorrelationDrift | None
    performance: dict[str, dict[str, float]]  # segment or slice -> metric -> value
    segment_counts: dict[str, int]  # segment or slice -> labelled predictions
    fairness: dict[str, FairnessReport] = field(default_factory=dict)
    baseline_performance: dict[str, dict[str, float]] = field(default_factory=dict)
    degradation: dict[str, float] = field(default_factory=dict)  # metric -> ratio, overall
    # metric -> worse than baseline beyond sampling noise (performance.alpha), overall
    degradation_significant: dict[str, bool] = field(default_factory=dict)
    estimated: EstimatedPerformance | None = None  # before labels (docs/estimation.md)
    multivariate: mv.MultivariateDrift | None = None

    @property
    def degraded(self) -> dict[str, float]:
        return significant_only(self.degradation, self.degradation_significant)

    @property
    def label_coverage(self) -> float:
        if self.performance_window_predictions <= 0:
            return math.nan
        return min(1.0, self.window_labeled / self.performance_window_predictions)

    @property
    def drifted_features(self) -> list[str]:
        return [n for n, f in self.features.items() if f.drift is not None and f.drift.detected]


def _ratio(count: float, total: float) -> float:
    return count / total if total > 0 else math.nan


def per_test_alpha(model: ModelConfig) -> float:
    """The family-wise drift_alpha split (Bonferroni) over every test a window gets: each
    configured statistic of each feature and of the output."""
    statistics = max(
        len(configured_limits(model.thresholds_for(f))) for f in [*model.features, None]
    )
    return model.drift_alpha / ((len(model.features) + 1) * max(statistics, 1))


def feature_report(
    model: ModelConfig,
    baseline: Baseline | None,
    layout: Layout,
    vector: np.ndarray,
    name: str,
    drift: DriftResult | None,
) -> FeatureReport:
    """Quality of one feature, with its drift (`drifts`)."""
    rows = layout.scalar(vector, "rows")
    ftype = model.features[name].type
    missing = layout.scalar(vector, "missing", name)
    present = rows - missing
    numeric = ftype == "numeric"
    quality = QualityResult(
        missing_ratio=_ratio(missing, rows),
        type_error_ratio=_ratio(layout.scalar(vector, "type_error", name), rows)
        if numeric
        else None,
        out_of_range_ratio=_ratio(layout.scalar(vector, "out_of_range", name), present)
        if numeric
        else None,
        new_category_ratio=(
            None
            if numeric or baseline is None
            else _ratio(layout.scalar(vector, "new_category", name), present)
        ),
    )
    return FeatureReport(name, ftype, quality, drift)


def _comparison(
    model: ModelConfig,
    ref: Reference,
    layout: Layout,
    vector: np.ndarray,
    key: str,
    thresholds: DriftThresholds,
) -> Comparison | None:
    """What the drift of one distribution is computed from; None (absent, never a number from
    nothing) below min_samples."""
    current = layout.read(vector, "bins", key)
    if current.sum() < model.min_samples:
        return None
    if ("below_sum", key) not in layout:
        return Comparison(ref, current, thresholds)
    below, above = layout.scalar(vector, "below_sum", key), layout.scalar(vector, "above_sum", key)
    return Comparison(ref, current, thresholds, below, above)


def drifts(
    model: ModelConfig, baseline: Baseline | None, layout: Layout, vector: np.ndarray
) -> dict[str | None, DriftResult]:
    """Drift of every feature (by name) and of the output (None, as in `thresholds_for`) that
    has min_samples values, computed together (`compare_all`) at the per-test level
    (`per_test_alpha`)."""
    if baseline is None:
        return {}
    wanted: dict[str | None, Comparison | None] = {
        name: _comparison(
            model, baseline.features[name], layout, vector, name, model.thresholds_for(name)
        )
        for name in model.features
    }
    wanted[None] = _comparison(
        model, baseline.prediction, layout, vector, PREDICTION, model.thresholds
    )
    items = {key: item for key, item in wanted.items() if item is not None}
    results = compare_all(list(items.values()), model.min_samples, per_test_alpha(model))
    return dict(zip(items, results, strict=True))


def correlation_drift(
    model: ModelConfig, baseline: Baseline | None, layout: Layout, vector: np.ndarray
) -> CorrelationDrift | None:
    if baseline is None or ("corr_n",) not in layout or not baseline.correlation:
        return None
    if layout.scalar(vector, "corr_n") < model.min_samples:
        return None
    names = model.numeric_features
    k = len(names)
    current = st.correlation_from_sums(
        layout.scalar(vector, "corr_n"),
        layout.read(vector, "corr_sum"),
        layout.read(vector, "corr_cross").reshape(k, k),
    )
    order = [baseline.correlation["features"].index(n) for n in names]
    reference = np.asarray(baseline.correlation["matrix"])[np.ix_(order, order)]
    change, i, j = st.largest_correlation_change(reference, current)
    if i < 0:
        return None
    return CorrelationDrift(change, (names[i], names[j]), int(layout.scalar(vector, "corr_n")))


def performance_by_segment(
    model: ModelConfig, layout: Layout, vector: np.ndarray, min_labeled: int
) -> dict[str, dict[str, float]]:
    """Metrics of each group with at least `min_labeled` labelled predictions ({} otherwise)."""
    out: dict[str, dict[str, float]] = {}
    for group in layout.names("n"):

        def s(stat: str, g: str = group) -> float:
            return layout.scalar(vector, stat, g)

        if s("n") < min_labeled:
            out[group] = {}
        elif model.kind == "regression":
            out[group] = pm.regression(s("n"), s("err"), s("err2"), s("abs_err"), s("y"), s("y2"))
        else:
            out[group] = pm.classification(
                s("tp"),
                s("fp"),
                s("fn"),
                s("tn"),
                s("log_loss"),
                s("brier"),
                layout.read(vector, "score_pos", group),
                layout.read(vector, "score_neg", group),
            )
    return out


def degradation_verdicts(
    model: ModelConfig,
    layout: Layout,
    vector: np.ndarray,
    overall: dict[str, float],
    baseline: dict[str, float],
) -> dict[str, bool]:
    """Which overall metrics are worse than the baseline beyond sampling noise: by more than
    the critical z (performance.alpha, Bonferroni over the metrics compared) times their
    standard error in this window."""

    def s(stat: str) -> float:
        return layout.scalar(vector, stat, ALL)

    if not overall:
        return {}
    if model.kind == "regression":
        errors = pm.regression_standard_errors(
            s("n"), s("err2"), s("err4"), s("abs_err"), s("y"), s("y2")
        )
    else:
        errors = pm.classification_standard_errors(
            overall,
            s("tp"),
            s("fp"),
            s("fn"),
            s("tn"),
            (s("log_loss"), s("log_loss2")),
            (s("brier"), s("brier2")),
        )
    return worse_than_baseline(model, overall, baseline, errors)


def worse_than_baseline(
    model: ModelConfig,
    values: dict[str, float],
    baseline: dict[str, float],
    errors: dict[str, float],
) -> dict[str, bool]:
    """Per metric with a value, a baseline and a standard error: worse than the baseline by
    more than the critical z (performance.alpha, Bonferroni over the metrics compared) times
    the error. Realised and estimated performance get the same verdict."""
    compared = [m for m in errors if m in baseline and m in values]
    z = sig.critical_z(model.performance.alpha, len(compared))
    return {m: pm.worse_beyond_noise(m, values[m], baseline[m], errors[m], z) for m in compared}


def degradation_ratios(values: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """Relative change vs the baseline in the bad direction, per metric both have."""
    return {
        m: pm.degradation_ratio(m, v, baseline[m])
        for m, v in values.items()
        if m in baseline and m in pm.DIRECTION
    }


def _group_report(model: ModelConfig, totals: Totals, attribute: str, group: str) -> GroupReport:
    dl, dv, pl, pv = (
        totals.drift_layout,
        totals.drift,
        totals.performance_layout,
        totals.performance,
    )

    def d(stat: str) -> float:
        return dl.scalar(dv, stat, attribute, group)

    def p(stat: str) -> float:
        return pl.scalar(pv, stat, attribute, group)

    n = d("fair_n")
    chosen = model.kind == "binary_classification" or model.fairness.regression_cutoff is not None
    report = {
        "predictions": int(n),
        "selection_rate": _ratio(d("fair_selected"), n) if chosen else None,
        "mean_prediction": _ratio(d("fair_output"), n),
    }
    if model.kind == "regression":
        labeled = p("fair_n")
        return GroupReport(
            **report,
            labeled=int(labeled),
            true_positive_rate=None,
            false_positive_rate=None,
            rmse=math.sqrt(_ratio(p("fair_err2"), labeled)) if labeled else math.nan,
            mae=_ratio(p("fair_abs_err"), labeled),
            mean_error=_ratio(p("fair_err"), labeled),
        )
    tpr, fpr = fm.rates(*(np.array([p(f"fair_{k}")]) for k in ("tp", "fp", "fn", "tn")))
    labeled = sum(p(f"fair_{k}") for k in ("tp", "fp", "fn", "tn"))
    return GroupReport(
        **report,
        labeled=int(labeled),
        true_positive_rate=float(tpr[0]),
        false_positive_rate=float(fpr[0]),
        rmse=None,
        mae=None,
        mean_error=None,
    )


def fairness_report(
    model: ModelConfig, totals: Totals, attribute: str, groups: list[str]
) -> FairnessReport:
    reports = {g: _group_report(model, totals, attribute, g) for g in groups}
    minimum = model.fairness.min_group_size
    listed = [g for g in groups if g != OTHER]
    compared = [g for g in listed if reports[g].predictions >= minimum]
    labelled = [g for g in compared if reports[g].labeled >= minimum]

    def values(attr: str, among: list[str]) -> np.ndarray:
        return np.array([getattr(reports[g], attr) for g in among], dtype=float)

    dp_diff = dp_ratio = eo = eop = err = bias = None
    if reports[groups[0]].selection_rate is not None:
        dp_diff, dp_ratio = fm.demographic_parity(values("selection_rate", compared))
    if model.kind == "binary_classification":
        eo = fm.equalized_odds_difference(
            values("true_positive_rate", labelled), values("false_positive_rate", labelled)
        )
        eop = fm.difference(values("true_positive_rate", labelled))
    else:
        err = fm.error_ratio(values("rmse", labelled))
    mean_ratio = fm.ratio(values("mean_prediction", compared))
    gaps = _parity_gap(model, totals, attribute, compared, dp_ratio, mean_ratio)
    if model.kind == "regression":
        bias, biased = _residual_bias(model, totals, attribute, groups, labelled)
        gaps += biased + _error_gap(model, totals, attribute, labelled, err)
    parity = dp_ratio if dp_ratio is not None else mean_ratio
    undecided = len(compared) < 2 or (math.isnan(parity) and not labelled)
    return FairnessReport(
        attribute=attribute,
        groups=reports,
        compared=tuple(compared),
        excluded=tuple(g for g in listed if g not in compared),
        demographic_parity_difference=dp_diff,
        demographic_parity_ratio=dp_ratio,
        equalized_odds_difference=eo,
        equal_opportunity_difference=eop,
        error_ratio=err,
        mean_prediction_ratio=mean_ratio,
        residual_bias=bias,
        violation=None if undecided else bool(gaps),
        reasons=tuple(gaps),
    )


def _parity_gap(
    model: ModelConfig,
    totals: Totals,
    attribute: str,
    compared: list[str],
    dp_ratio: float | None,
    mean_ratio: float,
) -> list[str]:
    """The parity ratio of the least and the most favoured group is below the four-fifths
    line beyond chance (Farrington-Manning's score test on selection rates, the delta method on
    the log ratio of mean outputs)."""
    dl, dv = totals.drift_layout, totals.drift
    fairness = model.fairness

    def d(stat: str, group: str) -> float:
        return dl.scalar(dv, stat, attribute, group)

    ratio = dp_ratio if dp_ratio is not None else mean_ratio
    if len(compared) < 2 or not ratio < fairness.four_fifths:
        return []
    stat = "fair_selected" if dp_ratio is not None else "fair_output"
    by_rate = sorted(compared, key=lambda g: d(stat, g) / d("fair_n", g))
    low, high = by_rate[0], by_rate[-1]
    if dp_ratio is not None:
        z = sig.rate_ratio_below(
            d(stat, low), d("fair_n", low), d(stat, high), d("fair_n", high), fairness.four_fifths
        )
    else:
        keys = ("fair_output", "fair_output2", "fair_n")
        z = sig.mean_ratio_below(
            tuple(d(k, low) for k in keys),
            tuple(d(k, high) for k in keys),
            fairness.four_fifths,
        )
    significant = z > sig.critical_z(fairness.alpha, sig.pairs(len(compared)))
    return [f"parity ratio {ratio:.2f} ({low} vs {high})"] if significant else []


def _residual_bias(
    model: ModelConfig, totals: Totals, attribute: str, groups: list[str], labelled: list[str]
) -> tuple[float | None, list[str]]:
    """Regression: each labelled group's mean error against the rest's, in residual standard
    deviations; a gap beyond `fairness.max_residual_bias` beyond chance (Welch, either sign,
    Bonferroni over the groups) is a violation. Returns the largest gap and the violations."""
    pl, pv = totals.performance_layout, totals.performance

    def p(stat: str, group: str) -> float:
        return pl.scalar(pv, stat, attribute, group)

    keys = ("fair_err", "fair_err2", "fair_n")
    total = [sum(p(k, g) for g in groups) for k in keys]
    n = total[2]
    if not labelled or n < 2:
        return None, []
    spread = math.sqrt(max(0.0, total[1] / n - (total[0] / n) ** 2))
    if spread == 0:
        return None, []
    margin = model.fairness.max_residual_bias
    critical = sig.critical_z(model.fairness.alpha, 2 * len(labelled))  # either sign, each group
    gaps: list[float] = []  # none without a group to set against the rest: absent, not 0
    found = []
    for group in labelled:
        own = tuple(p(k, group) for k in keys)
        rest = tuple(t - o for t, o in zip(total, own, strict=True))
        if rest[2] < 2:
            continue
        gap = (own[0] / own[2] - rest[0] / rest[2]) / spread
        gaps.append(abs(gap))
        if sig.mean_gap_beyond(rest, own, margin * spread) > critical:
            found.append(f"residual bias {gap:+.2f} sd ({group})")
    return max(gaps, default=None), found


def _error_gap(
    model: ModelConfig, totals: Totals, attribute: str, labelled: list[str], ratio: float | None
) -> list[str]:
    """Regression: the worst-served group's RMSE is above `fairness.max_error_ratio` times the
    best-served one's beyond chance (log RMSE ratio, delta method)."""
    pl, pv = totals.performance_layout, totals.performance

    def p(stat: str, group: str) -> float:
        return pl.scalar(pv, stat, attribute, group)

    if ratio is None or not ratio > model.fairness.max_error_ratio or len(labelled) < 2:
        return []
    rms = {g: p("fair_err2", g) / p("fair_n", g) for g in labelled}
    best, worst = min(labelled, key=rms.__getitem__), max(labelled, key=rms.__getitem__)
    keys = ("fair_err2", "fair_err4", "fair_n")
    z = sig.rms_ratio_above(
        tuple(p(k, worst) for k in keys),
        tuple(p(k, best) for k in keys),
        model.fairness.max_error_ratio,
    )
    if z > sig.critical_z(model.fairness.alpha, sig.pairs(len(labelled))):
        return [f"error ratio {ratio:.2f} ({worst} vs {best})"]
    return []


def estimated_performance(
    model: ModelConfig, baseline: Baseline | None, totals: Totals
) -> EstimatedPerformance | None:
    """CBPE (classifier) or DLE (regression) over the drift window; None without a calibration
    map or loss models, or below min_samples rows."""
    dl, dv = totals.drift_layout, totals.drift
    if not estimates(model, baseline):
        return None
    assert baseline is not None
    rows = dl.scalar(dv, "rows")
    if rows < model.min_samples:
        return None
    if model.kind == "regression":
        values = dle.estimate(rows, dl.scalar(dv, "dle_abs"), dl.scalar(dv, "dle_sq"))
        errors = dle.standard_errors(values, rows)
    else:
        tp, fp, fn, tn = (dl.scalar(dv, cell) for cell in ESTIMATED_CELLS)
        values = est.estimate(tp, fp, fn, tn, dl.read(dv, "est_pos"), dl.read(dv, "est_neg"))
        errors = est.standard_errors(values, tp, fp, fn, tn)
    base = baseline.performance.get(ALL, {})
    return EstimatedPerformance(
        rows=int(rows),
        values=values,
        standard_errors=errors,
        degradation=degradation_ratios(values, base),
        degradation_significant=worse_than_baseline(model, values, base, errors),
        disagreement=_estimate_disagreement(model, totals.performance_layout, totals.performance),
    )


def _estimate_disagreement(
    model: ModelConfig, layout: Layout, vector: np.ndarray
) -> est.Disagreement | None:
    """Realised vs estimated on the labelled rows of the performance window: accuracy (its
    variance exact under CBPE) or MAE (the sample variance of |error| - expected)."""
    n = layout.scalar(vector, "n", ALL)
    if n < model.min_labeled:
        return None
    z = sig.critical_z(model.performance.alpha / 2, 1)
    if model.kind == "regression":
        realised, expected = layout.scalar(vector, "abs_err", ALL), layout.scalar(vector, "dle_abs")
        gap = realised - expected
        return est.disagreement(
            "mae",
            n,
            realised,
            expected,
            max(layout.scalar(vector, "dle_gap2") - gap * gap / n, 0.0),
            model.estimation.max_relative_disagreement * expected / n,
            z,
        )
    return est.disagreement(
        "accuracy",
        n,
        layout.scalar(vector, "tp", ALL) + layout.scalar(vector, "tn", ALL),
        layout.scalar(vector, "est_correct"),
        layout.scalar(vector, "est_var"),
        model.estimation.max_disagreement,
        z,
    )


def multivariate_drift(
    model: ModelConfig, baseline: Baseline | None, layout: Layout, vector: np.ndarray
) -> mv.MultivariateDrift | None:
    """The PCA verdict of the drift window; None without components or below min_samples."""
    pca = multivariate(model, baseline)
    if pca is None or ("mv_n",) not in layout:
        return None
    n = layout.scalar(vector, "mv_n")
    if n < model.min_samples:
        return None
    settings = model.multivariate
    return mv.verdict(
        pca, n, layout.scalar(vector, "mv_err"), settings.min_relative_change, settings.alpha
    )


def build_report(model: ModelConfig, baseline: Baseline | None, totals: Totals) -> ModelReport:
    dl, dv = totals.drift_layout, totals.drift
    pl, pv = totals.performance_layout, totals.performance
    drift = drifts(model, baseline, dl, dv)
    features = {n: feature_report(model, baseline, dl, dv, n, drift.get(n)) for n in model.features}
    performance = performance_by_segment(model, pl, pv, model.min_labeled)
    groups = model_groups(model, baseline)
    base_perf = baseline.performance if baseline is not None else {}
    overall, base_overall = performance.get(ALL, {}), base_perf.get(ALL, {})
    return ModelReport(
        model_id=model.model_id,
        kind=model.kind,
        window_predictions=int(dl.scalar(dv, "rows")),
        window_labeled=int(pl.scalar(pv, "n", ALL)),
        performance_window_predictions=int(pl.scalar(pv, "predictions")),
        features=features,
        prediction_drift=drift.get(None),
        correlation=correlation_drift(model, baseline, dl, dv),
        performance=performance,
        segment_counts={g: int(pl.scalar(pv, "n", g)) for g in groups.performance},
        fairness={a: fairness_report(model, totals, a, gs) for a, gs in groups.fairness.items()},
        baseline_performance=base_perf,
        degradation=degradation_ratios(overall, base_overall),
        degradation_significant=degradation_verdicts(model, pl, pv, overall, base_overall),
        estimated=estimated_performance(model, baseline, totals),
        multivariate=multivariate_drift(model, baseline, dl, dv),
    )


def report_of(model: ModelConfig, baseline: Baseline | None, rows: Rows) -> ModelReport:
    """The report of `rows` as one window (a batch job's or notebook's): labelled rows count
    for performance, all of them for drift and estimation."""
    return build_report(model, baseline, totals_of(model, baseline, rows))
