"""Retraining decisions from explicit, configurable triggers (the seed's guideline 11).

`decide` is pure and is what both the exporter (for `model_retraining_*`) and the seed's
`RetrainingScheduler.schedule_retraining` call. Triggers and defaults: docs/retraining.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from exporter.config import Config, ConfigError, ModelConfig, load_config
from exporter.report import ModelReport
from exporter.storage.audit import last_action, record
from exporter.storage.engine import create_engine

URGENCIES = ("none", "low", "medium", "high")
RETRAINED_ACTION = "model_retrained"
DECISION_ACTION = "retraining_decision"


@dataclass(frozen=True)
class Evidence:
    """What a decision stands on; built from a window report or from the seed's result dicts."""

    features: list[str]
    drifted_features: list[str]
    prediction_drift: bool = False
    degradation: dict[str, float] = field(
        default_factory=dict
    )  # metric -> ratio in the bad direction
    fairness_violations: list[str] = field(default_factory=list)
    label_coverage: float = math.nan
    # Before labels: metric -> estimated ratio in the bad direction (CBPE, beyond noise)
    estimated_degradation: dict[str, float] = field(default_factory=dict)
    estimate_disagrees: bool = False  # realised and estimated differ: concept drift
    multivariate_drift: bool = False

    @classmethod
    def from_report(cls, report: ModelReport) -> Evidence:
        return cls(
            features=list(report.features),
            drifted_features=report.drifted_features,
            prediction_drift=bool(report.prediction_drift and report.prediction_drift.detected),
            degradation=report.degraded,
            fairness_violations=[a for a, f in report.fairness.items() if f.violation],
            label_coverage=report.label_coverage,
            estimated_degradation=report.estimated.degraded if report.estimated else {},
            estimate_disagrees=bool(
                report.estimated
                and report.estimated.disagreement
                and report.estimated.disagreement.disagrees
            ),
            multivariate_drift=bool(report.multivariate and report.multivariate.detected),
        )


@dataclass(frozen=True)
class RetrainingDecision:
    should_retrain: bool
    urgency: str  # none | low | medium | high
    reasons: list[str]
    triggers: list[str]

    @property
    def urgency_level(self) -> int:
        return URGENCIES.index(self.urgency)

    def to_json(self) -> dict[str, Any]:
        return {
            "should_retrain": self.should_retrain,
            "urgency": self.urgency,
            "reasons": self.reasons,
            "triggers": self.triggers,
        }


def decide(
    model: ModelConfig,
    evidence: Evidence,
    last_retrained: float | None = None,
    now: float | None = None,
) -> RetrainingDecision:
    rules = model.retraining
    level, reasons, triggers = 0, [], []

    def fire(trigger: str, urgency: str, reason: str) -> None:
        nonlocal level
        level = max(level, URGENCIES.index(urgency))
        triggers.append(trigger)
        reasons.append(reason)

    if evidence.degradation:
        metric, ratio = max(evidence.degradation.items(), key=lambda item: item[1])
        if ratio >= model.performance.degradation_critical:
            fire("performance_degradation", "high", f"{metric} degraded {ratio:.0%} vs baseline")
        elif ratio >= model.performance.degradation_warning:
            fire("performance_degradation", "medium", f"{metric} degraded {ratio:.0%} vs baseline")
    if rules.estimated_performance and evidence.estimated_degradation:
        # An estimate is not a measurement: it asks for retraining at medium at most.
        metric, ratio = max(evidence.estimated_degradation.items(), key=lambda item: item[1])
        if ratio >= model.performance.degradation_warning:
            fire(
                "estimated_performance_degradation",
                "medium" if ratio >= model.performance.degradation_critical else "low",
                f"estimated {metric} degraded {ratio:.0%} vs baseline (before labels)",
            )
    if rules.concept_drift and evidence.estimate_disagrees:
        fire(
            "concept_drift",
            "medium",
            "realised accuracy departs from the estimate: scores no longer mean what they did",
        )
    if rules.multivariate_drift and evidence.multivariate_drift:
        fire("multivariate_drift", "medium", "the numeric features changed how they move together")
    important = rules.important_features or evidence.features
    drifted = [f for f in evidence.drifted_features if f in important]
    if drifted and important:
        share = len(drifted) / len(important)
        urgency = "medium" if share >= rules.drifted_share else "low"
        fire(
            "feature_drift",
            urgency,
            f"drift in {len(drifted)} of {len(important)} important features "
            f"({', '.join(drifted[:5])})",
        )
    if rules.prediction_drift and evidence.prediction_drift:
        fire("prediction_drift", "medium", "the distribution of the model's output drifted")
    if rules.fairness_violation and evidence.fairness_violations:
        fire(
            "fairness_violation",
            "medium",
            f"fairness violation across {', '.join(evidence.fairness_violations)}",
        )
    coverage = evidence.label_coverage
    if (
        (drifted or evidence.prediction_drift)
        and not evidence.degradation
        and (math.isnan(coverage) or coverage < rules.min_label_coverage)
    ):
        fire(
            "insufficient_labels",
            "low",
            "drift without enough labels to judge its effect on performance",
        )
    should = level >= URGENCIES.index(rules.recommend_from)
    decision = RetrainingDecision(should, URGENCIES[level], reasons, triggers)
    now = time.time() if now is None else now
    if last_retrained is None or not cooldown_may_hold(decision):
        return decision
    if now - last_retrained >= rules.cooldown:
        return decision
    reasons.append(
        f"cooldown: retrained {(now - last_retrained) / 3600:.1f} h ago "
        f"(cooldown {rules.cooldown / 3600:g} h)"
    )
    return replace(decision, should_retrain=False)


def cooldown_may_hold(decision: RetrainingDecision) -> bool:
    """Whether a recent retraining would hold `decision` back: a recommendation below the top
    urgency. A decision that cannot be held back needs no lookup of the last retraining (the
    exporter asks the store only when this is true)."""
    return decision.should_retrain and decision.urgency != URGENCIES[-1]


class RetrainingScheduler:
    """The seed's scheduler: `schedule_retraining(model_id, drift_results, performance_results)`.

    Thresholds come from the model's config (default config path or `config`); a model not in
    the config is judged with the default thresholds. With a store, the last recorded retraining
    (`record_retraining`) drives the cooldown and every decision goes to the audit trail.
    """

    def __init__(self, config: Config | None = None, engine: sa.Engine | None = None) -> None:
        if config is None:
            try:
                config = load_config()
            except ConfigError:
                config = None
        self.config = config
        self.engine = engine
        if engine is None and config is not None:
            self.engine = create_engine(config.store.url, config.store.timeouts)

    def _model(self, model_id: str) -> ModelConfig:
        if self.config is not None:
            for model in self.config.models:
                if model.model_id == model_id:
                    return model
        return ModelConfig.model_validate(
            {
                "model_id": model_id,
                "kind": "regression",
                "source": {"table": "unused"},
                "features": {"unused": "numeric"},
            }
        )

    def schedule_retraining(
        self,
        model_id: str,
        drift_results: dict[str, Any] | None = None,
        performance_results: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        model = self._model(model_id)
        drift_results = drift_results or {}
        feature_metrics = drift_results.get("feature_metrics", {})
        evidence = Evidence(
            features=list(feature_metrics) or list(drift_results.get("drifted_features", [])),
            drifted_features=list(drift_results.get("drifted_features", [])),
            prediction_drift=bool((drift_results.get("prediction") or {}).get("drift_detected")),
            degradation=_degradation(performance_results or {}),
            label_coverage=(performance_results or {}).get("label_coverage", math.nan),
        )
        decision = decide(model, evidence, self.last_retrained(model_id))
        self._audit(model_id, DECISION_ACTION, decision.to_json())
        return decision.to_json()

    def record_retraining(self, model_id: str, details: dict[str, Any] | None = None) -> None:
        """Note that the model was retrained (starts the cooldown)."""
        self._audit(model_id, RETRAINED_ACTION, details or {})

    def last_retrained(self, model_id: str) -> float | None:
        return None if self.engine is None else last_action(self.engine, model_id, RETRAINED_ACTION)

    def _audit(self, model_id: str, action: str, details: dict[str, Any]) -> None:
        if self.engine is not None:
            record(self.engine, model_id, action, details)


def _degradation(results: dict[str, Any]) -> dict[str, float]:
    """Ratios from PerformanceTracker.check_degradation output or a health report's section."""
    if "degradation" in results:
        return {k: float(v) for k, v in results["degradation"].items() if v is not None}
    out = {}
    for metric, entry in results.get("metrics", {}).items():
        if isinstance(entry, dict) and entry.get("degraded"):
            out[metric] = abs(float(entry["change_percent"])) / 100.0
    return out
