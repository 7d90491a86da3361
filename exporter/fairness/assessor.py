"""FairnessAssessor: the seed's fairness check, with recommendations computed from the data.

Groups, thresholds, defaults and verdicts are the exporter's (`report.fairness_report` over the
same sums, `FairnessConfig`'s defaults), so a notebook sees the numbers and the verdict /metrics
shows for the same rows. Kind of model: predictions in [0, 1] are a classifier's probabilities
(selected when >= `threshold`); other values are a regression output, judged by its mean output
ratio, the groups' residual bias and their error ratio (and by selection at `regression_cutoff`
when one is given).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from exporter.config import FairnessConfig, ModelConfig
from exporter.fairness import mitigator
from exporter.monitors.health import json_safe
from exporter.report import FairnessReport, report_of
from exporter.rows import from_dataframe


class FairnessAssessor:
    def __init__(
        self,
        protected_attributes: list[str],
        threshold: float = 0.5,
        regression_cutoff: float | None = None,
        max_groups: int = 10,
        **fairness: Any,
    ) -> None:
        """`fairness` overrides `FairnessConfig`'s defaults (four_fifths, min_group_size,
        max_residual_bias, max_error_ratio, alpha), the exporter's own."""
        self.protected_attributes = list(protected_attributes)
        self.threshold = threshold
        self.regression_cutoff = regression_cutoff
        self.max_groups = max_groups
        self.fairness = FairnessConfig.model_validate(fairness)  # a bad key fails here

    def _model(
        self, classifier: bool, cutoff: float | None, groups: dict[str, list[str]]
    ) -> ModelConfig:
        return ModelConfig.model_validate(
            {
                "model_id": "fairness_assessor",
                "kind": "binary_classification" if classifier else "regression",
                "source": {"table": "dataframe", "score_column": "score" if classifier else None},
                "features": {"__unused__": "numeric"},
                "protected_attributes": self.protected_attributes,
                "performance": {"classification_threshold": self.threshold},
                "fairness": self.fairness.model_dump(exclude_unset=True)
                | {"regression_cutoff": cutoff, "groups": groups},
            }
        )

    def assess_fairness(
        self, predictions: Any, actual_values: Any, metadata: pd.DataFrame
    ) -> dict[str, Any]:
        scores = np.asarray(predictions, dtype=float)
        actual = None if actual_values is None else np.asarray(actual_values, dtype=float)
        classifier = bool(np.nanmin(scores) >= 0 and np.nanmax(scores) <= 1)
        cutoff = None if classifier else self.regression_cutoff
        groups = {a: _frequent(metadata[a], self.max_groups) for a in self.protected_attributes}
        model = self._model(classifier, cutoff, groups)
        rows = from_dataframe(model, metadata, scores, actual)
        report = report_of(model, None, rows)
        results, recommendations = {}, []
        for attribute, fairness in report.fairness.items():
            results[attribute] = _result(fairness)
            if not fairness.violation:
                continue
            values = metadata[attribute].astype(str).to_numpy()
            if fairness.demographic_parity_ratio is not None:
                recommendations += self._recommend(
                    attribute,
                    fairness,
                    scores,
                    actual,
                    values,
                    self.threshold if classifier else cutoff,
                )
            if model.kind == "regression":
                recommendations += _offsets(attribute, fairness)
        return json_safe(
            {
                "overall_fairness": not any(r["violation"] for r in results.values()),
                "model_kind": model.kind,
                "selection_threshold": self.threshold if classifier else cutoff,
                "thresholds": self.fairness.model_dump(exclude={"groups", "regression_cutoff"}),
                "attributes": results,
                "recommendations": recommendations,
            }
        )

    def _recommend(
        self,
        attribute: str,
        fairness: FairnessReport,
        scores: np.ndarray,
        actual: np.ndarray | None,
        groups: np.ndarray,
        threshold: float,
    ) -> list[dict[str, Any]]:
        compared = [g for g in fairness.compared]
        rates = {g: fairness.groups[g].selection_rate for g in compared}
        worst = min(compared, key=lambda g: (rates[g], g))
        ratio = fairness.demographic_parity_ratio
        keep = np.isin(groups, compared)
        thresholds = mitigator.parity_thresholds(scores[keep], groups[keep], threshold)
        _, ratio_after = mitigator.parity_after(scores[keep], groups[keep], thresholds, threshold)
        out = [
            {
                "attribute": attribute,
                "group": worst,
                "issue": "demographic_parity",
                "description": f"Group {worst} of {attribute} is selected at "
                f"{rates[worst]:.1%}, the parity ratio is {ratio:.2f} "
                f"(below {self.fairness.four_fifths}).",
                "strategy": "group_thresholds",
                "thresholds": thresholds,
                "expected": {"demographic_parity_ratio": ratio_after},
            }
        ]
        if actual is not None and np.isfinite(actual).all():
            labels = (
                actual >= (0.5 if set(np.unique(actual)) <= {0.0, 1.0} else threshold)
            ).astype(int)
            weights = mitigator.reweighing(groups[keep], labels[keep])
            rate = float(labels[keep].mean())
            out.append(
                {
                    "attribute": attribute,
                    "group": worst,
                    "issue": "label_imbalance",
                    "description": f"Retrain with reweighing so that the positive label rate is "
                    f"{rate:.1%} in every {attribute} group.",
                    "strategy": "reweighing",
                    "weights": {
                        f"{g}|{y}": float(weights[(groups[keep] == g) & (labels[keep] == y)][0])
                        for g in compared
                        for y in (0, 1)
                        if np.any((groups[keep] == g) & (labels[keep] == y))
                    },
                    "expected": {"weighted_positive_rate": rate},
                }
            )
        return out


def _offsets(attribute: str, fairness: FairnessReport) -> list[dict[str, Any]]:
    """Regression: the offset that removes each group's residual bias (its mean error less the
    labelled groups' average), to subtract from its predictions; expected residual bias 0."""
    labelled = {
        g: r for g, r in fairness.groups.items() if g in fairness.compared and r.labeled > 0
    }
    if not labelled:
        return []
    total = sum(r.labeled for r in labelled.values())
    average = sum(r.mean_error * r.labeled for r in labelled.values()) / total
    offsets = {g: r.mean_error - average for g, r in labelled.items()}
    worst = max(offsets, key=lambda g: (abs(offsets[g]), g))
    return [
        {
            "attribute": attribute,
            "group": worst,
            "issue": "residual_bias",
            "description": f"Predictions for {attribute}={worst} are off by "
            f"{offsets[worst]:+.3g} on average against the other groups "
            f"({'; '.join(fairness.reasons)}).",
            "strategy": "group_offsets",
            "offsets": offsets,
            "expected": {"residual_bias": 0.0},
        }
    ]


def _frequent(values: pd.Series, limit: int) -> list[str]:
    counts = values.astype(str).value_counts()
    return sorted(counts.index[:limit].tolist())


def _result(fairness: FairnessReport) -> dict[str, Any]:
    return {
        "demographic_parity_difference": fairness.demographic_parity_difference,
        "demographic_parity_ratio": fairness.demographic_parity_ratio,
        "equalized_odds_difference": fairness.equalized_odds_difference,
        "equal_opportunity_difference": fairness.equal_opportunity_difference,
        "error_ratio": fairness.error_ratio,
        "mean_prediction_ratio": fairness.mean_prediction_ratio,
        "residual_bias": fairness.residual_bias,
        "violation": bool(fairness.violation),
        "reasons": list(fairness.reasons),
        "compared_groups": list(fairness.compared),
        "excluded_groups": list(fairness.excluded),
        "groups": {g: vars(r) for g, r in fairness.groups.items()},
    }
