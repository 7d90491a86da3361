"""Window totals + baseline + config -> the numbers of one model. Pure.

Everything the collector, the JSON API and the Python API show comes out of `build_report`, so
the same window gives the same numbers everywhere. Adding a metric is one pure function in
`drift/`, `performance/` or `fairness/`, one field here and one line in the collector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from exporter.baseline import Baseline, CategoricalReference, NumericReference
from exporter.config import ModelConfig
from exporter.drift import statistical as st
from exporter.performance import metrics as pm
from exporter.sufficient_stats import ALL, PREDICTION, Layout, Totals, segment_groups


@dataclass(frozen=True)
class DriftResult:
    """Drift of one distribution, window vs baseline."""

    psi: float
    kl_divergence: float
    js_distance: float
    ks_statistic: float | None  # numeric distributions only
    psi_threshold: float  # effective: max(configured, no-drift quantile for n, m)
    detected: bool | None  # None: too few rows for a verdict
    rows: int  # window values the comparison stands on
    bins: tuple[str, ...]  # names of the PSI bins
    baseline_ratio: tuple[float, ...]  # share of each PSI bin, baseline
    current_ratio: tuple[float, ...]  # share of each PSI bin, window


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
    drift: DriftResult | None  # None without a baseline


@dataclass(frozen=True)
class ModelReport:
    model_id: str
    kind: str
    window_predictions: int
    window_labeled: int
    performance_window_predictions: int
    features: dict[str, FeatureReport]
    prediction_drift: DriftResult | None
    performance: dict[str, dict[str, float]]  # segment -> metric -> value
    segment_counts: dict[str, int]  # segment -> labelled predictions
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


def _numeric_bin_names(ref: NumericReference) -> tuple[str, ...]:
    """PSI bins named by their upper edge, like Prometheus `le`, with the out-of-range ends."""
    fine_upper = np.concatenate([[ref.edges[0]], ref.edges[1:], [math.inf]])
    names = []
    for b in range(ref.n_psi_bins):
        if b == 0:
            names.append("below_baseline")
        elif b == ref.n_psi_bins - 1:
            names.append("above_baseline")
        else:
            names.append(f"le_{fine_upper[np.flatnonzero(ref.psi_bins == b).max()]:.6g}")
    return tuple(names)


def ks_null_quantile(n: float, m: float, alpha: float) -> float:
    """Asymptotic two-sample KS critical value: sqrt(-ln(alpha/2)/2) * sqrt((n+m)/(n*m))."""
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


def compare(
    ref: NumericReference | CategoricalReference,
    current_fine: np.ndarray,
    model: ModelConfig,
    feature: str,
    alpha: float,
) -> DriftResult:
    """All drift statistics of one distribution and the sample-size-aware verdict."""
    thresholds = model.thresholds_for(feature) if feature in model.features else model.thresholds
    if isinstance(ref, NumericReference):
        expected = np.bincount(ref.psi_bins, weights=ref.counts, minlength=ref.n_psi_bins)
        actual = np.bincount(ref.psi_bins, weights=current_fine, minlength=ref.n_psi_bins)
        ks = st.ks_statistic(ref.counts, current_fine)
        names = _numeric_bin_names(ref)
    else:
        expected, actual, ks = ref.counts, current_fine, None
        names = (*ref.categories, "other")
    n, m = float(actual.sum()), float(expected.sum())
    values = {
        "psi": st.psi(expected, actual),
        "kl_divergence": st.kl_divergence(expected, actual),
        "js_distance": st.js_distance(expected, actual),
    }
    bins = st.occupied_bins(expected, actual)
    psi_q = st.psi_null_quantile(m, n, bins, alpha)
    # KL ~ PSI/2 and JS divergence (bits) ~ PSI/(8 ln 2) near no drift (docs/statistics.md).
    null = {
        "psi": psi_q,
        "kl_divergence": psi_q / 2,
        "js_distance": math.sqrt(psi_q / (8 * math.log(2))),
    }
    if ks is not None:
        values["ks_statistic"] = ks
        null["ks_statistic"] = ks_null_quantile(n, m, alpha) if n > 0 else math.inf
    detected: bool | None = None
    if n >= model.min_samples:
        detected = any(
            values[metric] > max(limit, null[metric])
            for metric, limit in thresholds.model_dump().items()
            if limit is not None and metric in values
        )
    return DriftResult(
        psi=values["psi"],
        kl_divergence=values["kl_divergence"],
        js_distance=values["js_distance"],
        ks_statistic=ks,
        psi_threshold=max(thresholds.psi if thresholds.psi is not None else math.inf, psi_q),
        detected=detected,
        rows=int(n),
        bins=names,
        baseline_ratio=tuple(st.proportions(expected).tolist()),
        current_ratio=tuple(st.proportions(actual).tolist()),
    )


def _ratio(count: float, total: float) -> float:
    return count / total if total > 0 else math.nan


def feature_report(
    model: ModelConfig,
    baseline: Baseline | None,
    layout: Layout,
    vector: np.ndarray,
    name: str,
    alpha: float,
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
        drift = compare(
            baseline.features[name], layout.read(vector, "bins", name), model, name, alpha
        )
    return FeatureReport(name, ftype, quality, drift)


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


def build_report(model: ModelConfig, baseline: Baseline | None, totals: Totals) -> ModelReport:
    dl, dv = totals.drift_layout, totals.drift
    pl, pv = totals.performance_layout, totals.performance
    alpha = model.drift_alpha / (len(model.features) + 1)  # Bonferroni over features + output
    features = {n: feature_report(model, baseline, dl, dv, n, alpha) for n in model.features}
    prediction = None
    if baseline is not None:
        prediction = compare(
            baseline.prediction, dl.read(dv, "bins", PREDICTION), model, PREDICTION, alpha
        )
    performance = performance_by_segment(model, pl, pv, model.min_labeled)
    groups = [ALL] + [g for names in segment_groups(model, baseline).values() for g in names]
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
        performance=performance,
        segment_counts={g: int(pl.scalar(pv, "n", g)) for g in groups},
        baseline_performance=base_perf,
        degradation={
            metric: pm.degradation_ratio(metric, value, base_overall[metric])
            for metric, value in overall.items()
            if metric in base_overall and metric in pm.DIRECTION
        },
    )
