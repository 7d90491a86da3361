"""prometheus_client Collector: model reports -> fresh metric families on every scrape.

The numbers live in the refreshers' reports and counters, and each scrape builds new families
from them (Prometheus' "Writing exporters"). The one thing kept between scrapes is each model's
report samples, and their text, for as long as that report object stands: a report is immutable
and replaced whenever the window's sums change, so the samples of an idle model are built and
formatted once (`exporter.exposition` serves the kept text).
"""

from __future__ import annotations

import math
import platform
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from exporter import __version__
from exporter.config import ModelConfig
from exporter.drift.feature_drift import DriftResult
from exporter.exposition import (
    LineFormat,
    RenderedFamily,
    Series,
    SeriesValues,
    go_float,
    sample_line,
)
from exporter.metric_catalog import CATALOG, PERFORMANCE_METRICS
from exporter.monitors import health
from exporter.refresher import ModelRefresher
from exporter.report import FairnessReport, FeatureReport, ModelReport
from exporter.rows import REJECT_REASONS
from exporter.service import MonitorService

# A cached report's samples by family: the families' own (info, stateset, histogram), the
# series and values of gauges and counters, and their text.
_Kept = dict[str, tuple[list[Sample], list[SeriesValues], str]]
# A family's samples added together, as one key: their name and label values in order.
_Run = tuple[str, tuple[tuple[str, ...], ...]]


class _Families:
    """One scrape's families by name, each with its samples' text (`LineFormat`); samples whose
    value is NaN or None are skipped.

    A gauge's or a counter's samples are kept as series and values (`SeriesValues`), made
    `Sample`s only if prometheus_client formats them (`RenderedFamily`). `add` only notes a
    sample; the family's samples noted since are formatted together when the families are
    extended, kept or read (`_flush`). `known`: the series of a model's previous report, by
    run of samples. A new report of the model has nearly all the same series (features, bins,
    segments) with new values, so a family whose samples have the labels they had reuses their
    series whole: each line is the kept text plus the value (1,800 series per model of 50
    features, one lookup per family). What this report has is in `seen`, for the next.
    """

    def __init__(self, known: dict[_Run, list[Series]] | None = None) -> None:
        self._families = {spec.name: spec.family() for spec in CATALOG}
        self._text: dict[str, list[str]] = {name: [] for name in self._families}
        # Per family, its samples' series and values in runs, in the order of the text: its own
        # (`_flush`) and each model's kept ones (`extend`).
        self._runs: dict[str, list[SeriesValues]] = {name: [] for name in self._families}
        # Per family, the labels and values `add` noted since the last `_flush`.
        self._pending: dict[str, tuple[list[tuple[str, ...]], list[float]]] = {}
        self._lines: dict[str, LineFormat] = {}
        self._known = known
        self.seen: dict[_Run, list[Series]] = {}

    def add(self, name: str, labels: list[str], value: float | bool | None) -> None:
        """A gauge's or a counter's sample."""
        if value is None:
            return
        value = float(value)
        if math.isnan(value):
            return
        pending = self._pending.get(name)
        if pending is None:
            pending = self._pending[name] = ([], [])
        pending[0].append(tuple(labels))
        pending[1].append(value)

    def _flush(self) -> None:
        """Format the samples `add` noted, a family at a time."""
        for name, (labels, values) in self._pending.items():
            run = (name, tuple(labels))
            series = (self._known.get(run) if self._known is not None else None) or [
                self._new_series(name, row, v) for row, v in zip(labels, values, strict=True)
            ]
            if self._known is not None:
                self.seen[run] = series
            self._runs[name].append((series, values))
            self._text[name].append(
                "".join([f"{s[2]}{go_float(v)}\n" for s, v in zip(series, values, strict=True)])
            )
        self._pending.clear()

    def _new_series(self, name: str, labels: tuple[str, ...], value: float) -> Series:
        """The series of a sample of the family: its name and labels as the family's own
        `add_metric` makes them (a counter's name ends in `_total`), its line's text."""
        samples = self._families[name].samples
        self._families[name].add_metric(labels, value)
        sample = samples.pop()
        line = self._lines.get(name)
        if line is None:  # one per family: its samples share name and label names
            line = self._lines[name] = LineFormat.of(sample)
        return sample.name, sample.labels, line.prefix(labels)

    def add_metric(self, name: str, *args: Any) -> None:
        """The family's own `add_metric` (info, stateset and histogram take more than a value),
        its new samples formatted."""
        family = self._families[name]
        before = len(family.samples)
        family.add_metric(*args)
        self._text[name].extend(sample_line(s) for s in family.samples[before:])

    def kept(self) -> _Kept:
        """The samples added and their text, by family: what a cached report contributes to
        later scrapes."""
        self._flush()
        return {
            name: (family.samples, self._runs[name], "".join(self._text[name]))
            for name, family in self._families.items()
            if family.samples or self._runs[name]
        }

    def extend(self, kept: _Kept) -> None:
        self._flush()  # samples added later come after these
        for name, (samples, runs, text) in kept.items():
            self._families[name].samples.extend(samples)
            self._runs[name].extend(runs)
            self._text[name].append(text)

    def __iter__(self) -> Iterator[RenderedFamily]:
        self._flush()
        return (
            RenderedFamily(family, "".join(self._text[name]), self._runs[name])
            for name, family in self._families.items()
            if family.samples or self._runs[name]
        )


def _drift_samples(out: _Families, prefix: str, labels: list[str], drift: DriftResult) -> None:
    for stat in ("psi", "kl_divergence", "js_distance", "ks_statistic", "wasserstein_normalized"):
        out.add(f"{prefix}_{stat}", labels, getattr(drift, stat))
    out.add(f"{prefix}_drift_detected", labels, drift.detected)


def _feature_samples(out: _Families, labels: list[str], feature: FeatureReport) -> None:
    quality = feature.quality
    out.add("model_feature_missing_ratio", labels, quality.missing_ratio)
    out.add("model_feature_type_error_ratio", labels, quality.type_error_ratio)
    out.add("model_feature_out_of_range_ratio", labels, quality.out_of_range_ratio)
    out.add("model_feature_new_category_ratio", labels, quality.new_category_ratio)
    drift = feature.drift
    if drift is None:
        return
    _drift_samples(out, "model_feature", labels, drift)
    out.add("model_feature_ks_p_value", labels, drift.ks_p_value)
    out.add("model_feature_chi_square_statistic", labels, drift.chi_square)
    out.add("model_feature_chi_square_p_value", labels, drift.chi_square_p_value)
    for stat, threshold in drift.thresholds.items():
        out.add(f"model_feature_{stat}_threshold", labels, threshold)
    for bin_name, base, cur in zip(
        drift.bins, drift.baseline_ratio, drift.current_ratio, strict=True
    ):
        out.add("model_feature_bin_ratio", [*labels, bin_name, "baseline"], base)
        out.add("model_feature_bin_ratio", [*labels, bin_name, "current"], cur)


def _fairness_samples(out: _Families, m: str, fairness: FairnessReport) -> None:
    """Numbers of the groups that have predictions in the window; none without any."""
    groups = {g: r for g, r in fairness.groups.items() if r.predictions > 0}
    if not groups:
        return
    labels = [m, fairness.attribute]
    for stat in (
        "demographic_parity_difference",
        "demographic_parity_ratio",
        "equalized_odds_difference",
        "equal_opportunity_difference",
        "error_ratio",
        "mean_prediction_ratio",
        "residual_bias",
        "violation",
    ):
        out.add(f"model_fairness_{stat}", labels, getattr(fairness, stat))
    out.add("model_fairness_excluded_groups", labels, len(fairness.excluded))
    for group, report in groups.items():
        for stat, value in (
            ("predictions", report.predictions),
            ("labeled_predictions", report.labeled),
            ("selection_rate", report.selection_rate),
            ("mean_prediction", report.mean_prediction),
            ("true_positive_rate", report.true_positive_rate),
            ("false_positive_rate", report.false_positive_rate),
            ("rmse", report.rmse),
            ("mae", report.mae),
            ("mean_error", report.mean_error),
        ):
            out.add(f"model_group_{stat}", [*labels, group], value)


def _report_samples(out: _Families, report: ModelReport) -> None:
    m = report.model_id
    for name, feature in report.features.items():
        _feature_samples(out, [m, name], feature)
    if report.prediction_drift is not None:
        _drift_samples(out, "model_prediction", [m], report.prediction_drift)
    if any(f.drift is not None for f in report.features.values()):
        out.add("model_drifted_features", [m], len(report.drifted_features))
    out.add("model_features_monitored", [m], len(report.features))
    if report.correlation is not None:
        out.add("model_feature_correlation_drift", [m], report.correlation.largest_change)
    for segment, values in report.performance.items():
        for metric in PERFORMANCE_METRICS:
            out.add(f"model_performance_{metric}", [m, segment], values.get(metric))
    for segment, values in report.baseline_performance.items():
        for metric in PERFORMANCE_METRICS:
            out.add(f"model_baseline_performance_{metric}", [m, segment], values.get(metric))
    for metric, ratio in report.degradation.items():
        out.add("model_performance_degradation_ratio", [m, metric], ratio)
    for metric, significant in report.degradation_significant.items():
        out.add("model_performance_degraded", [m, metric], significant)
    _estimation_samples(out, m, report)
    multivariate = report.multivariate
    if multivariate is not None:
        out.add("model_multivariate_reconstruction_error", [m], multivariate.error)
        out.add(
            "model_baseline_multivariate_reconstruction_error", [m], multivariate.reference_error
        )
        for bound in ("lower", "upper"):
            out.add(
                "model_multivariate_reconstruction_error_threshold",
                [m, bound],
                getattr(multivariate, bound),
            )
        out.add("model_multivariate_drift_detected", [m], multivariate.detected)
    for segment, count in report.segment_counts.items():
        out.add("model_segment_labeled_predictions", [m, segment], count)
    for fairness in report.fairness.values():
        _fairness_samples(out, m, fairness)
    out.add("model_window_predictions", [m], report.window_predictions)
    out.add("model_window_labeled_predictions", [m], report.window_labeled)
    out.add("model_performance_window_predictions", [m], report.performance_window_predictions)
    out.add("model_label_coverage_ratio", [m], report.label_coverage)


def _estimation_samples(out: _Families, m: str, report: ModelReport) -> None:
    estimated = report.estimated
    if estimated is None:
        return
    for metric, value in estimated.values.items():
        out.add(f"model_estimated_performance_{metric}", [m], value)
    for metric, error in estimated.standard_errors.items():
        out.add(f"model_estimated_performance_{metric}_standard_error", [m], error)
    for metric, ratio in estimated.degradation.items():
        out.add("model_estimated_performance_degradation_ratio", [m, metric], ratio)
    for metric, significant in estimated.degradation_significant.items():
        out.add("model_estimated_performance_degraded", [m, metric], significant)
    gap = estimated.disagreement
    if gap is not None:
        out.add(f"model_estimated_performance_{gap.metric}_gap", [m], gap.gap)
        out.add("model_estimated_performance_disagreement", [m, gap.metric], gap.disagrees)


def alert_thresholds(model: ModelConfig) -> dict[str, float]:
    """Every threshold the alert rules use, straight from the model's config."""
    return {
        **model.alerts.model_dump(),
        **model.quality.model_dump(),
        "degradation_warning": model.performance.degradation_warning,
        "degradation_critical": model.performance.degradation_critical,
        "four_fifths": model.fairness.four_fifths,
    }


def _status_samples(out: _Families, refresher: ModelRefresher) -> None:
    m = refresher.model.model_id
    for name, value in alert_thresholds(refresher.model).items():
        if name.endswith("_seconds"):
            out.add("model_alert_threshold_seconds", [m, name.removesuffix("_seconds")], value)
        else:
            out.add("model_alert_threshold_ratio", [m, name], value)
    status = refresher.status
    out.add("model_monitor_up", [m], status.up)
    out.add("model_monitor_rebuilding", [m], refresher.rebuilding)
    for source, up in status.source_up.items():
        out.add("model_monitor_source_up", [m, source], up)
    # Only streams read by position are reconciled; labels read with their predictions are not.
    for stream in ("predictions", "labels") if refresher.labels_by_arrival else ("predictions",):
        out.add("model_monitor_late_rows", [m, stream], status.late_rows.get(stream, 0))
    for stream, unreadable in status.unreadable_rows.items():
        out.add("model_monitor_unreadable_rows", [m, stream], unreadable)
    out.add("model_monitor_reconciliations", [m], status.reconciliations_total)
    out.add("model_monitor_last_reconciliation_timestamp_seconds", [m], status.last_reconciliation)
    out.add("model_monitor_last_refresh_timestamp_seconds", [m], status.last_success)
    out.add("model_monitor_refresh_duration_seconds", [m], status.last_duration)
    out.add("model_monitor_ingest_lag_seconds", [m], status.lag_seconds)
    out.add("model_monitor_refresh_errors", [m], status.errors_total)
    for reason in REJECT_REASONS:  # every reason, zeros included, so rate() works from the start
        out.add("model_monitor_rows_rejected", [m, reason], status.rejected.get(reason, 0))
    window = refresher.window
    if window is not None:
        out.add("model_predictions", [m], window.predictions_total)
        out.add("model_labels", [m], window.labels_total)
        if refresher.model.source.latency_column:
            out.add_metric(
                "model_prediction_latency_seconds",
                [m],
                window.latency.cumulative(),
                window.latency.sum,
            )
    baseline = refresher.baseline
    if baseline is not None:
        out.add_metric(
            "model_baseline",
            [m],
            {
                "version": str(baseline.version),
                "created_at": baseline.created_at or "",
                "source": baseline.source or "",
            },
        )


def _verdict_samples(out: _Families, refresher: ModelRefresher) -> None:
    m = refresher.model.model_id
    status = health.status_of(refresher.findings)
    out.add_metric("model_health_status", [m], {s: s == status for s in health.STATUSES})
    if refresher.decision is not None:
        out.add("model_retraining_recommended", [m], refresher.decision.should_retrain)
        out.add("model_retraining_urgency", [m], refresher.decision.urgency_level)


class ModelCollector(Collector):
    """Reports what the refreshers hold; refreshing is the caller's (the app's) business, so
    that a scrape's deadline decides how long it waits for fresh numbers."""

    def __init__(self, service: MonitorService) -> None:
        self.service = service
        # model -> (report, its samples); status samples, which change, are built every time.
        self._cached: dict[str, tuple[ModelReport, _Kept]] = {}
        self._series: dict[str, dict[_Run, list[Series]]] = {}  # model -> its report's

    def describe(self) -> Iterator[Metric]:
        """Every family of the catalog, empty: what lets the registry answer `name[]` filters
        without collecting, and what registering checks for clashes."""
        for spec in CATALOG:
            yield spec.family()

    def collect(self) -> Iterator[Metric]:
        out = _Families()
        out.add_metric(
            "model_monitor_build",
            [],
            {
                "version": __version__,
                "python_version": platform.python_version(),
            },
        )
        if self.service.shard is not None:
            shard = self.service.shard
            out.add_metric(
                "model_monitor_shard", [], {"shard": str(shard.index), "shards": str(shard.count)}
            )
        for refresher in self.service.refreshers.values():
            _status_samples(out, refresher)
            if refresher.report is not None:
                out.extend(self._samples_of(refresher.model.model_id, refresher.report))
                _verdict_samples(out, refresher)
        yield from out

    def _samples_of(self, model_id: str, report: ModelReport) -> _Kept:
        cached = self._cached.get(model_id)
        if cached is not None and cached[0] is report:
            return cached[1]
        built = _Families(self._series.get(model_id, {}))
        _report_samples(built, report)
        kept = built.kept()
        self._cached[model_id] = (report, kept)
        self._series[model_id] = built.seen  # this report's series only: bounded by them
        return kept
