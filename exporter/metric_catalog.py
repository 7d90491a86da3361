"""Every metric family the exporter exposes: name, type, labels and HELP text.

This is the metric contract (design.md) as code. The collector builds its families from these
specs and `model-monitor docs` renders the reference from them, so the docs cannot drift from
what /metrics serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)

Kind = Literal["gauge", "counter", "histogram", "info", "stateset"]

M = ("model_id",)
MF = ("model_id", "feature")
MS = ("model_id", "segment")
MA = ("model_id", "attribute")
MAG = ("model_id", "attribute", "group")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    group: str

    def family(self) -> Metric:
        """A fresh, empty family for one scrape."""
        if self.kind == "gauge":
            return GaugeMetricFamily(self.name, self.help, labels=self.labels)
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.help, labels=self.labels)
        if self.kind == "histogram":
            return HistogramMetricFamily(self.name, self.help, labels=self.labels)
        if self.kind == "info":
            return InfoMetricFamily(self.name, self.help, labels=self.labels)
        return StateSetMetricFamily(self.name, self.help, labels=self.labels)


def _drift(stat: str, text: str) -> list[MetricSpec]:
    return [
        MetricSpec(
            f"model_feature_{stat}",
            "gauge",
            f"{text} of an input feature, window vs baseline.",
            MF,
            "drift",
        ),
        MetricSpec(
            f"model_feature_{stat}_threshold",
            "gauge",
            f"Value model_feature_{stat} must exceed for a drift verdict: its configured threshold or, if larger, its no-drift quantile for the window's sample size; absent when not configured.",
            MF,
            "drift",
        ),
        MetricSpec(
            f"model_prediction_{stat}",
            "gauge",
            f"{text} of the model output, window vs baseline.",
            M,
            "drift",
        ),
    ]


PERFORMANCE_METRICS: dict[str, str] = {
    "rmse": "Root mean squared error",
    "mae": "Mean absolute error",
    "r2": "Coefficient of determination R²",
    "mean_error": "Mean of prediction minus actual (bias)",
    "roc_auc": "ROC AUC (score histogram of 1000 bins; ties within a bin count half)",
    "accuracy": "Accuracy at the configured threshold",
    "precision": "Precision at the configured threshold (0 when nothing is predicted positive)",
    "recall": "Recall at the configured threshold",
    "f1": "F1 score at the configured threshold",
    "log_loss": "Log loss in nats (probabilities clipped to [eps, 1-eps], eps = 2.2e-16 as in scikit-learn)",
    "brier_score": "Brier score: mean squared difference of probability and label",
}

ESTIMATED_METRICS: dict[str, str] = {
    "mae": "Regression: mean absolute error",
    "rmse": "Regression: root mean squared error",
    "roc_auc": "ROC AUC",
    "accuracy": "Accuracy at the configured threshold",
    "precision": "Precision at the configured threshold",
    "recall": "Recall at the configured threshold",
    "f1": "F1 score at the configured threshold",
}
MM = ("model_id", "metric")

CATALOG: tuple[MetricSpec, ...] = (
    *_drift(
        "psi",
        "Population stability index over 10 baseline-quantile bins plus 2 out-of-range bins (empty bins floored at 1e-4)",
    ),
    *_drift(
        "kl_divergence",
        "KL(window || baseline) in nats over the PSI bins (empty bins floored at 1e-4)",
    ),
    *_drift("js_distance", "Jensen-Shannon distance, base 2, over the PSI bins"),
    *_drift(
        "ks_statistic",
        "Kolmogorov-Smirnov statistic (largest CDF gap) on 100 baseline-quantile bins, numeric only",
    ),
    *_drift(
        "wasserstein_normalized",
        "Wasserstein-1 distance divided by the baseline standard deviation, from 100 baseline-quantile bins, numeric only",
    ),
    MetricSpec(
        "model_feature_ks_p_value",
        "gauge",
        "Asymptotic two-sample KS p-value of a numeric feature; informative only, never the verdict.",
        MF,
        "drift",
    ),
    MetricSpec(
        "model_feature_chi_square_statistic",
        "gauge",
        "Pearson chi-square statistic of a categorical feature's 2 x K table (baseline categories plus other, no Yates correction).",
        MF,
        "drift",
    ),
    MetricSpec(
        "model_feature_chi_square_p_value",
        "gauge",
        "P-value of the chi-square test of a categorical feature; informative only, never the verdict.",
        MF,
        "drift",
    ),
    MetricSpec(
        "model_feature_drift_detected",
        "gauge",
        "1 if the feature drifted (an effect size beyond its threshold and its no-drift quantile), 0 if not; absent below min_samples.",
        MF,
        "drift",
    ),
    MetricSpec(
        "model_prediction_drift_detected",
        "gauge",
        "1 if the model output drifted, 0 if not; absent below min_samples.",
        M,
        "drift",
    ),
    MetricSpec(
        "model_drifted_features",
        "gauge",
        "Number of features with a drift verdict of 1.",
        M,
        "drift",
    ),
    MetricSpec(
        "model_features_monitored", "gauge", "Number of input features monitored.", M, "drift"
    ),
    MetricSpec(
        "model_feature_bin_ratio",
        "gauge",
        "Share of a feature's values in one PSI bin, for the baseline and the current window. A numeric bin is named by the baseline percentiles it spans (p10-p20; below_baseline, above_baseline), the same across baselines; a categorical bin by its category.",
        ("model_id", "feature", "bin", "window"),
        "drift",
    ),
    MetricSpec(
        "model_feature_correlation_drift",
        "gauge",
        "Largest absolute change of a Pearson correlation between two numeric features, window vs baseline (the pair is named in the health report).",
        M,
        "drift",
    ),
    MetricSpec(
        "model_multivariate_reconstruction_error",
        "gauge",
        "Mean PCA reconstruction error of the window rows with every numeric feature present: distance of the standardised row from the baseline's principal subspace (docs/estimation.md).",
        M,
        "drift",
    ),
    MetricSpec(
        "model_multivariate_reconstruction_error_threshold",
        "gauge",
        "Bounds (bound=lower|upper) the window's mean reconstruction error must leave for a multivariate drift verdict: the baseline's mean error widened by its chunk-to-chunk spread at the window's size (multivariate.alpha), and by at least multivariate.min_relative_change.",
        ("model_id", "bound"),
        "drift",
    ),
    MetricSpec(
        "model_baseline_multivariate_reconstruction_error",
        "gauge",
        "Mean PCA reconstruction error of the baseline's own rows.",
        M,
        "drift",
    ),
    MetricSpec(
        "model_multivariate_drift_detected",
        "gauge",
        "1 if the numeric features moved together beyond the baseline's structure (reconstruction error outside its bounds), 0 if not; absent below min_samples complete rows or without two numeric features.",
        M,
        "drift",
    ),
    MetricSpec(
        "model_feature_missing_ratio",
        "gauge",
        "Share of window rows where the feature is null or NaN.",
        MF,
        "quality",
    ),
    MetricSpec(
        "model_feature_type_error_ratio",
        "gauge",
        "Share of window rows where a numeric feature holds a non-number (text, infinity).",
        MF,
        "quality",
    ),
    MetricSpec(
        "model_feature_out_of_range_ratio",
        "gauge",
        "Share of present values outside the configured valid_range, or else the baseline's [min, max].",
        MF,
        "quality",
    ),
    MetricSpec(
        "model_feature_new_category_ratio",
        "gauge",
        "Share of present values of a categorical feature never seen in the baseline.",
        MF,
        "quality",
    ),
    *(
        MetricSpec(
            f"model_performance_{name}",
            "gauge",
            f"{text}, on labelled predictions of the performance window.",
            MS,
            "performance",
        )
        for name, text in PERFORMANCE_METRICS.items()
    ),
    *(
        MetricSpec(
            f"model_baseline_performance_{name}",
            "gauge",
            f"{text}, on the baseline.",
            MS,
            "performance",
        )
        for name, text in PERFORMANCE_METRICS.items()
    ),
    MetricSpec(
        "model_performance_degradation_ratio",
        "gauge",
        "Relative change of an overall metric vs the baseline in its bad direction (0.1 = 10% worse; 0 if better).",
        ("model_id", "metric"),
        "performance",
    ),
    MetricSpec(
        "model_performance_degraded",
        "gauge",
        "1 if the overall metric is worse than the baseline beyond sampling noise (performance.alpha, Bonferroni over the metrics; docs/statistics.md), 0 otherwise. Findings, retraining and the alert rules count a degradation ratio only where this is 1.",
        ("model_id", "metric"),
        "performance",
    ),
    *(
        MetricSpec(
            f"model_estimated_performance_{name}",
            "gauge",
            f"{text}, estimated without labels over the drift window: for a classifier from the scores and the baseline's calibration map (CBPE), for a regression from the baseline's models of the expected loss (DLE); docs/estimation.md.",
            M,
            "estimation",
        )
        for name, text in ESTIMATED_METRICS.items()
    ),
    *(
        MetricSpec(
            f"model_estimated_performance_{name}_standard_error",
            "gauge",
            f"Sampling band of model_estimated_performance_{name}: the standard error the realised value would have on a window of this size and expected class balance.",
            M,
            "estimation",
        )
        for name in ESTIMATED_METRICS
    ),
    MetricSpec(
        "model_estimated_performance_degradation_ratio",
        "gauge",
        "Relative change of an estimated metric vs the baseline's realised value in its bad direction (0.1 = 10% worse; 0 if better).",
        MM,
        "estimation",
    ),
    MetricSpec(
        "model_estimated_performance_degraded",
        "gauge",
        "1 if the estimated metric is worse than the baseline beyond its sampling band (performance.alpha, Bonferroni over the metrics), 0 otherwise: a drop seen before any label of it arrives.",
        MM,
        "estimation",
    ),
    MetricSpec(
        "model_estimated_performance_accuracy_gap",
        "gauge",
        "Classifier: realised minus estimated accuracy on the labelled predictions of the performance window; near 0 while the calibration map holds.",
        M,
        "estimation",
    ),
    MetricSpec(
        "model_estimated_performance_mae_gap",
        "gauge",
        "Regression: realised minus estimated MAE on the labelled predictions of the performance window, in the target's unit; near 0 while the loss models hold.",
        M,
        "estimation",
    ),
    MetricSpec(
        "model_estimated_performance_disagreement",
        "gauge",
        "1 if the realised metric departs from its estimate on the same rows by more than estimation.max_disagreement (accuracy) or estimation.max_relative_disagreement (MAE) and beyond sampling noise: the model's outputs no longer mean what they did (concept drift); 0 if not; absent below min_labeled labels.",
        MM,
        "estimation",
    ),
    MetricSpec(
        "model_segment_labeled_predictions",
        "gauge",
        "Labelled predictions of a segment in the performance window.",
        MS,
        "performance",
    ),
    MetricSpec(
        "model_fairness_demographic_parity_difference",
        "gauge",
        "Largest minus smallest selection rate over the compared groups of a protected attribute (drift window).",
        MA,
        "fairness",
    ),
    MetricSpec(
        "model_fairness_demographic_parity_ratio",
        "gauge",
        "Smallest over largest selection rate over the compared groups (drift window).",
        MA,
        "fairness",
    ),
    MetricSpec(
        "model_fairness_equalized_odds_difference",
        "gauge",
        "Classifier: the larger of the true- and false-positive-rate spreads over groups (performance window).",
        MA,
        "fairness",
    ),
    MetricSpec(
        "model_fairness_equal_opportunity_difference",
        "gauge",
        "Classifier: the true-positive-rate spread over groups (performance window).",
        MA,
        "fairness",
    ),
    MetricSpec(
        "model_fairness_error_ratio",
        "gauge",
        "Regression: largest over smallest group RMSE (performance window).",
        MA,
        "fairness",
    ),
    MetricSpec(
        "model_fairness_mean_prediction_ratio",
        "gauge",
        "Smallest over largest group mean output (drift window).",
        MA,
        "fairness",
    ),
    MetricSpec(
        "model_fairness_residual_bias",
        "gauge",
        "Regression: the largest gap between a group's mean error (prediction - actual) and the other groups', in residual standard deviations (performance window; groups with fairness.min_group_size labels).",
        MA,
        "fairness",
    ),
    MetricSpec(
        "model_fairness_violation",
        "gauge",
        "1 if a gap is beyond its threshold and beyond sampling noise (fairness.alpha): the parity ratio (demographic parity, else mean prediction) below the four-fifths line; for regression also a residual bias above fairness.max_residual_bias or an error ratio above fairness.max_error_ratio. 0 if not; absent with fewer than two comparable groups.",
        MA,
        "fairness",
    ),
    MetricSpec(
        "model_fairness_excluded_groups",
        "gauge",
        "Listed groups left out of the comparison for having fewer than fairness.min_group_size predictions.",
        MA,
        "fairness",
    ),
    MetricSpec(
        "model_group_predictions",
        "gauge",
        "Predictions of a group in the drift window (group `other` pools unlisted values).",
        MAG,
        "fairness",
    ),
    MetricSpec(
        "model_group_selection_rate",
        "gauge",
        "Share of a group's predictions that are positive (classifier) or at/above fairness.regression_cutoff.",
        MAG,
        "fairness",
    ),
    MetricSpec(
        "model_group_mean_prediction",
        "gauge",
        "Mean output (score or regression value) of a group.",
        MAG,
        "fairness",
    ),
    MetricSpec(
        "model_group_labeled_predictions",
        "gauge",
        "Labelled predictions of a group in the performance window.",
        MAG,
        "fairness",
    ),
    MetricSpec(
        "model_group_true_positive_rate",
        "gauge",
        "Classifier: true-positive rate of a group.",
        MAG,
        "fairness",
    ),
    MetricSpec(
        "model_group_false_positive_rate",
        "gauge",
        "Classifier: false-positive rate of a group.",
        MAG,
        "fairness",
    ),
    MetricSpec("model_group_rmse", "gauge", "Regression: RMSE of a group.", MAG, "fairness"),
    MetricSpec("model_group_mae", "gauge", "Regression: MAE of a group.", MAG, "fairness"),
    MetricSpec(
        "model_group_mean_error",
        "gauge",
        "Regression: mean of prediction - actual over a group's labelled predictions (its bias; negative: scored below its outcomes).",
        MAG,
        "fairness",
    ),
    MetricSpec(
        "model_prediction_latency_seconds",
        "histogram",
        "Inference latency logged with each prediction ingested since the exporter started.",
        M,
        "traffic",
    ),
    MetricSpec(
        "model_predictions",
        "counter",
        "Predictions ingested since the exporter started (the start-up rebuild is not counted).",
        M,
        "traffic",
    ),
    MetricSpec(
        "model_labels",
        "counter",
        "Labels ingested since the exporter started (the start-up rebuild is not counted).",
        M,
        "traffic",
    ),
    MetricSpec(
        "model_window_predictions",
        "gauge",
        "Predictions in the drift window: what drift and data quality stand on.",
        M,
        "traffic",
    ),
    MetricSpec(
        "model_window_labeled_predictions",
        "gauge",
        "Labelled predictions in the performance window: what performance stands on.",
        M,
        "traffic",
    ),
    MetricSpec(
        "model_performance_window_predictions",
        "gauge",
        "All predictions in the performance window, labelled or not.",
        M,
        "traffic",
    ),
    MetricSpec(
        "model_label_coverage_ratio",
        "gauge",
        "Labelled share of the predictions in the performance window.",
        M,
        "traffic",
    ),
    MetricSpec(
        "model_health_status",
        "stateset",
        "Health of the model: healthy, warning (a medium finding) or critical (a high finding); the findings are in /api/v1/models/<id>/health.",
        M,
        "health",
    ),
    MetricSpec(
        "model_retraining_recommended",
        "gauge",
        "1 if the retraining triggers recommend retraining now (docs/retraining.md), else 0.",
        M,
        "health",
    ),
    MetricSpec(
        "model_retraining_urgency",
        "gauge",
        "Urgency of retraining: 0 none, 1 low, 2 medium, 3 high.",
        M,
        "health",
    ),
    MetricSpec(
        "model_alert_threshold_ratio",
        "gauge",
        "A ratio threshold from the model's config that alert rules and dashboards compare with (threshold: min_label_coverage, volume_drop_ratio, rejected_ratio, missing_ratio, type_error_ratio, out_of_range_ratio, new_category_ratio, degradation_warning, degradation_critical, four_fifths).",
        ("model_id", "threshold"),
        "health",
    ),
    MetricSpec(
        "model_alert_threshold_seconds",
        "gauge",
        "A duration threshold from the model's config that alert rules and dashboards compare with (threshold: latency_p99).",
        ("model_id", "threshold"),
        "health",
    ),
    MetricSpec(
        "model_baseline",
        "info",
        "The baseline in use: version, capture time and source.",
        M,
        "exporter",
    ),
    MetricSpec(
        "model_monitor_up",
        "gauge",
        "1 if the last read of the model's predictions succeeded (a window rebuild reading the store counts), 0 if the store failed, timed out or hung (the last good numbers are still served); absent before the first read.",
        M,
        "exporter",
    ),
    MetricSpec(
        "model_monitor_source_up",
        "gauge",
        "1 if the last read of a source (predictions, labels) succeeded, 0 if it failed (labels are down whenever predictions are: they are joined to them).",
        ("model_id", "source"),
        "exporter",
    ),
    MetricSpec(
        "model_monitor_last_refresh_timestamp_seconds",
        "gauge",
        "Unix time of the last successful refresh; how stale the numbers are.",
        M,
        "exporter",
    ),
    MetricSpec(
        "model_monitor_rebuilding",
        "gauge",
        "1 while the model's window is being built from the store (start-up, new baseline): a deploy, not an outage. At start-up its model_ numbers appear when it is 0; after a new baseline the last good ones are served meanwhile.",
        M,
        "exporter",
    ),
    MetricSpec(
        "model_monitor_late_rows",
        "counter",
        "Rows found behind the read position by reconciliation (committed late or inserted with an old time) and counted, by stream: predictions, and labels when they are read by their arrival column.",
        ("model_id", "stream"),
        "exporter",
    ),
    MetricSpec(
        "model_monitor_unreadable_rows",
        "gauge",
        "Rows the store holds inside the window that no read returns, found at the last whole-window reconciliation among the newest rows and those just before the window (by the column's own order) and missing at two checks in a row: a time column whose rows sort apart from their times (mixed text layouts or UTC offsets). Above 0 the window is incomplete and the model's health is critical. Absent until the first reconciliation.",
        ("model_id", "stream"),
        "exporter",
    ),
    MetricSpec(
        "model_monitor_reconciliations",
        "counter",
        "Completed whole-window reconciliations: the store's row counts per bucket compared with the rows counted.",
        M,
        "exporter",
    ),
    MetricSpec(
        "model_monitor_last_reconciliation_timestamp_seconds",
        "gauge",
        "Unix time of the last whole-window reconciliation; every row in the window up to then is counted exactly once.",
        M,
        "exporter",
    ),
    MetricSpec(
        "model_monitor_refresh_duration_seconds",
        "gauge",
        "Duration of the last refresh.",
        M,
        "exporter",
    ),
    MetricSpec(
        "model_monitor_ingest_lag_seconds",
        "gauge",
        "Age of the oldest row a refresh left unread when it reached exporter.max_read_seconds (0 when caught up): how far the model's numbers trail the store.",
        M,
        "exporter",
    ),
    MetricSpec(
        "model_monitor_refresh_errors",
        "counter",
        "Refreshes that failed to read the store.",
        M,
        "exporter",
    ),
    MetricSpec(
        "model_monitor_rows_rejected",
        "counter",
        "Rows not folded into the window, each counted once under one reason: invalid_timestamp, invalid_prediction, invalid_label, label_unknown_prediction, label_of_rejected_prediction, expired, future_timestamp.",
        ("model_id", "reason"),
        "exporter",
    ),
    MetricSpec("model_monitor_build", "info", "Version of the exporter.", (), "exporter"),
    MetricSpec(
        "model_monitor_shard",
        "info",
        "The share of the configured models this exporter monitors (serve --shard I/N): shard I of N; absent when it monitors them all.",
        (),
        "exporter",
    ),
)


def exposed_names(spec: MetricSpec) -> list[str]:
    """Sample names the spec produces on /metrics."""
    if spec.kind == "counter":
        return [f"{spec.name}_total"]
    if spec.kind == "info":
        return [f"{spec.name}_info"]
    if spec.kind == "histogram":
        return [f"{spec.name}_bucket", f"{spec.name}_sum", f"{spec.name}_count"]
    return [spec.name]
