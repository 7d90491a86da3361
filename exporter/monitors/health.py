"""Model health: a report's numbers -> findings, a status, and the seed's JSON shape. Pure.

Severity of a finding: `high` makes the model `critical`, `medium` makes it `warning`, `low` is
informational (the model stays `healthy`). The rules, in the order they are checked, are listed in
docs/retraining.md next to the retraining triggers that build on them.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from exporter.config import ModelConfig
from exporter.report import EstimatedPerformance, ModelReport
from exporter.rows import ALL

STATUSES = ("healthy", "warning", "critical")
SEVERITY_STATUS = {"high": "critical", "medium": "warning", "low": "healthy"}
DRIFT_HIGH_SHARE = 0.3  # at least this share of the features drifting is a high-severity finding
CORRELATION_FINDING = 0.2  # a correlation moving by more than this is worth a (low) finding


@dataclass(frozen=True)
class Finding:
    type: str
    severity: str  # low | medium | high
    description: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "severity": self.severity, "description": self.description}


def _names(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def findings(model: ModelConfig, report: ModelReport) -> list[Finding]:
    out: list[Finding] = []
    drifted = report.drifted_features
    if drifted:
        share = len(drifted) / len(report.features)
        out.append(
            Finding(
                "data_drift",
                "high" if share >= DRIFT_HIGH_SHARE else "medium",
                f"Data drift detected in {len(drifted)} features: {_names(drifted)}",
            )
        )
    if report.prediction_drift is not None and report.prediction_drift.detected:
        out.append(
            Finding(
                "prediction_drift",
                "medium",
                f"The output distribution drifted (PSI {report.prediction_drift.psi:.3f})",
            )
        )
    out.extend(_degradation(model, report.degraded, report.performance.get(ALL, {}), report))
    estimated = report.estimated
    if estimated is not None:
        out.extend(_degradation(model, estimated.degraded, estimated.values, report, "estimated_"))
        gap = estimated.disagreement
        if gap is not None and gap.disagrees:
            out.append(
                Finding(
                    "estimate_disagreement",
                    "medium",
                    f"Realised {gap.metric} differs from the estimate for the same rows by "
                    f"{gap.gap:+.3g}: the model's outputs no longer mean what they did "
                    "(concept drift?)",
                )
            )
    if report.multivariate is not None and report.multivariate.detected:
        mv = report.multivariate
        out.append(
            Finding(
                "multivariate_drift",
                "medium",
                f"The numeric features moved together: PCA reconstruction error {mv.error:.3f} "
                f"vs {mv.reference_error:.3f} in the baseline",
            )
        )
    for attribute, fairness in report.fairness.items():
        if fairness.violation:
            out.append(
                Finding(
                    "fairness_violation",
                    "high",
                    f"Unequal treatment across {attribute} groups beyond chance: "
                    + "; ".join(fairness.reasons),
                )
            )
    limits = model.quality
    for name, feature in report.features.items():
        problems = [
            f"{label} {value:.1%}"
            for label, value, limit in (
                ("missing", feature.quality.missing_ratio, limits.missing_ratio),
                ("type errors", feature.quality.type_error_ratio, limits.type_error_ratio),
                ("out of range", feature.quality.out_of_range_ratio, limits.out_of_range_ratio),
                ("new categories", feature.quality.new_category_ratio, limits.new_category_ratio),
            )
            if value is not None and math.isfinite(value) and value > limit
        ]
        if problems:
            out.append(Finding("data_quality", "medium", f"{name}: {', '.join(problems)}"))
    if report.correlation is not None and report.correlation.largest_change > CORRELATION_FINDING:
        a, b = report.correlation.pair
        out.append(
            Finding(
                "correlation_drift",
                "low",
                f"Correlation of {a} and {b} moved by {report.correlation.largest_change:.2f}",
            )
        )
    if report.window_predictions < model.min_samples:
        out.append(
            Finding(
                "insufficient_data",
                "low",
                f"{report.window_predictions} predictions in the drift window, fewer than "
                f"{model.min_samples}: no drift verdict",
            )
        )
    if report.window_labeled < model.min_labeled:
        out.append(
            Finding(
                "insufficient_labels",
                "low",
                f"{report.window_labeled} labelled predictions, fewer than {model.min_labeled}: "
                "no performance numbers",
            )
        )
    return out


def _degradation(
    model: ModelConfig,
    degraded: dict[str, float],
    values: dict[str, float],
    report: ModelReport,
    kind: str = "",
) -> list[Finding]:
    """The worst metric worse than baseline beyond noise, if by the warning share or more;
    `kind` "estimated_" for the estimate before labels."""
    worst = max(degraded.items(), key=lambda item: item[1], default=None)
    if worst is None or worst[1] < model.performance.degradation_warning:
        return []
    metric, ratio = worst
    severity = "high" if ratio >= model.performance.degradation_critical else "medium"
    base = report.baseline_performance[ALL][metric]
    what = f"{'estimated ' if kind else ''}{metric}"
    return [
        Finding(
            f"{kind}performance_degradation",
            severity,
            f"{what} is {ratio:.0%} worse than baseline ({values[metric]:.4g} vs {base:.4g})",
        )
    ]


def store_findings(unreadable_rows: dict[str, int]) -> list[Finding]:
    """Rows the store holds for the model that the exporter cannot read make every number
    incomplete: a model is never reported healthy on a window that silently misses rows."""
    return [
        Finding(
            "unreadable_rows",
            "high",
            f"The store holds {count} {stream} rows inside the window that the exporter cannot "
            "read (their time sorts outside the range it reads); the numbers leave them out",
        )
        for stream, count in unreadable_rows.items()
        if count
    ]


def status_of(found: list[Finding]) -> str:
    worst = max((STATUSES.index(SEVERITY_STATUS[f.severity]) for f in found), default=0)
    return STATUSES[worst]


def json_safe(value: Any) -> Any:
    """JSON has no NaN: undefined numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _estimated_json(estimated: EstimatedPerformance | None) -> dict[str, Any] | None:
    if estimated is None:
        return None
    gap = estimated.disagreement
    return {
        "rows": estimated.rows,
        "values": estimated.values,
        "standard_errors": estimated.standard_errors,
        "degradation": estimated.degradation,
        "degraded": estimated.degradation_significant,
        "disagreement": None if gap is None else vars(gap),
    }


def health_json(
    model: ModelConfig,
    report: ModelReport,
    found: list[Finding],
    retraining: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    """The seed's health report: model_id, timestamp, status, findings, metrics (drift,
    performance with overall and segments), plus data quality, fairness and retraining."""
    at = at or dt.datetime.now(dt.UTC)
    feature_metrics: dict[str, dict[str, Any] | None] = {}
    for name, feature in report.features.items():
        if feature.drift is None:  # no baseline, or too few values: unknown, not a number
            feature_metrics[name] = None
            continue
        d = feature.drift
        feature_metrics[name] = {
            "kl_divergence": d.kl_divergence,
            "psi": d.psi,
            "js_divergence": d.js_distance,
            "ks_statistic": d.ks_statistic,
            "wasserstein_normalized": d.wasserstein_normalized,
            "drift_detected": d.detected,
            "rows": d.rows,
        }
    segments = {
        name: {**values, "count": report.segment_counts.get(name, 0)}
        for name, values in report.performance.items()
        if name != ALL
    }
    body = {
        "model_id": report.model_id,
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": status_of(found),
        "findings": [f.to_json() for f in found],
        "metrics": {
            "drift": {
                "drift_detected": bool(report.drifted_features),
                "drifted_features": report.drifted_features,
                "feature_metrics": feature_metrics,
                "prediction": None
                if report.prediction_drift is None
                else {
                    "psi": report.prediction_drift.psi,
                    "js_divergence": report.prediction_drift.js_distance,
                    "drift_detected": report.prediction_drift.detected,
                },
                "correlation": None
                if report.correlation is None
                else {
                    "largest_change": report.correlation.largest_change,
                    "pair": list(report.correlation.pair),
                },
                "multivariate": None if report.multivariate is None else vars(report.multivariate),
            },
            "performance": {
                "overall": report.performance.get(ALL, {}),
                "segments": segments,
                "baseline": report.baseline_performance.get(ALL, {}),
                "degradation": report.degradation,
                "degraded": report.degradation_significant,
                "estimated": _estimated_json(report.estimated),
            },
            "data_quality": {
                name: {k: v for k, v in vars(f.quality).items() if v is not None}
                for name, f in report.features.items()
            },
            "fairness": {
                attribute: {
                    "demographic_parity_difference": f.demographic_parity_difference,
                    "demographic_parity_ratio": f.demographic_parity_ratio,
                    "equalized_odds_difference": f.equalized_odds_difference,
                    "equal_opportunity_difference": f.equal_opportunity_difference,
                    "error_ratio": f.error_ratio,
                    "mean_prediction_ratio": f.mean_prediction_ratio,
                    "residual_bias": f.residual_bias,
                    "violation": f.violation,
                    "reasons": list(f.reasons),
                    "excluded_groups": list(f.excluded),
                    "groups": {g: vars(r) for g, r in f.groups.items()},
                }
                for attribute, f in report.fairness.items()
            },
            "window": {
                "predictions": report.window_predictions,
                "labeled": report.window_labeled,
                "label_coverage": report.label_coverage,
            },
        },
    }
    if retraining is not None:
        body["retraining"] = retraining
    return json_safe(body)
