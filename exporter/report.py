"""Window totals + baseline + config -> the numbers of one model. Pure.

Everything the collector, the JSON API and the Python API show comes out of `build_report`, so
the same window gives the same numbers everywhere. The maths lives in `drift/`, `performance/`
and `fairness/`; this module only reads the window's sums and hands them over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from exporter.baseline import OTHER, Baseline, Reference
from exporter.config import DriftThresholds, ModelConfig
from exporter.drift import statistical as st
from exporter.drift.feature_drift import DriftResult, compare
from exporter.fairness import metrics as fm
from exporter.performance import metrics as pm
from exporter.sufficient_stats import (
    ALL,
    PREDICTION,
    Layout,
    Totals,
    model_groups,
    numeric_names,
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
    violation: bool | None  # parity ratio below the four-fifths line; None: fewer than 2 groups


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
        sum(v is not None for v in model.thresholds_for(f).model_dump().values())
        for f in [*model.features, None]
    )
    return model.drift_alpha / ((len(model.features) + 1) * max(statistics, 1))


def feature_report(
    model: ModelConfig, baseline: Baseline | None, layout: Layout, vector: np.ndarray, name: str
) -> FeatureReport:
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
    drift = None
    if baseline is not None:
        drift = _drift(
            model, baseline.features[name], layout, vector, name, model.thresholds_for(name)
        )
    return FeatureReport(name, ftype, quality, drift)


def _drift(
    model: ModelConfig,
    ref: Reference,
    layout: Layout,
    vector: np.ndarray,
    key: str,
    thresholds: DriftThresholds,
) -> DriftResult | None:
    """Drift of one distribution; None (absent, never a number from nothing) below min_samples."""
    current = layout.read(vector, "bins", key)
    if current.sum() < model.min_samples:
        return None
    sums = {}
    if ("below_sum", key) in layout:
        sums = {
            "below_sum": layout.scalar(vector, "below_sum", key),
            "above_sum": layout.scalar(vector, "above_sum", key),
        }
    return compare(
        ref,
        current,
        thresholds,
        model.min_samples,
        per_test_alpha(model),
        **sums,
    )


def correlation_drift(
    model: ModelConfig, baseline: Baseline | None, layout: Layout, vector: np.ndarray
) -> CorrelationDrift | None:
    if baseline is None or ("corr_n",) not in layout or not baseline.correlation:
        return None
    if layout.scalar(vector, "corr_n") < model.min_samples:
        return None
    names = numeric_names(model)
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

    dp_diff = dp_ratio = eo = eop = err = None
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
    parity = dp_ratio if dp_ratio is not None else mean_ratio
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
        violation=None if math.isnan(parity) else parity < model.fairness.four_fifths,
    )


def build_report(model: ModelConfig, baseline: Baseline | None, totals: Totals) -> ModelReport:
    dl, dv = totals.drift_layout, totals.drift
    pl, pv = totals.performance_layout, totals.performance
    features = {n: feature_report(model, baseline, dl, dv, n) for n in model.features}
    prediction = None
    if baseline is not None:
        prediction = _drift(model, baseline.prediction, dl, dv, PREDICTION, model.thresholds)
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
        prediction_drift=prediction,
        correlation=correlation_drift(model, baseline, dl, dv),
        performance=performance,
        segment_counts={g: int(pl.scalar(pv, "n", g)) for g in groups.performance},
        fairness={a: fairness_report(model, totals, a, gs) for a, gs in groups.fairness.items()},
        baseline_performance=base_perf,
        degradation={
            metric: pm.degradation_ratio(metric, value, base_overall[metric])
            for metric, value in overall.items()
            if metric in base_overall and metric in pm.DIRECTION
        },
    )
