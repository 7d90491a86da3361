"""PerformanceEstimator: performance before labels for notebooks and batch jobs.

The same baseline capture, fold and report the exporter runs on its windows, over arrays: learn
from a labelled reference (a classifier's calibration map, CBPE; a regression's loss models,
DLE), then estimate on predictions whose labels have not arrived, and, when some have, see
whether the estimate still holds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from exporter.config import ModelConfig
from exporter.report import report_of
from exporter.rows import Rows, feature_types, from_dataframe
from exporter.window import capture_baseline

SCORE = "score"


class PerformanceEstimator:
    def __init__(
        self,
        reference_scores: Any,
        reference_labels: Any,
        threshold: float = 0.5,
        min_reference_labels: int = 500,
        alpha: float = 0.005,
    ) -> None:
        """A binary classifier (CBPE): learns the calibration map (isotonic) and the realised
        performance from the reference's scores and 0/1 labels; raises ValueError with too few
        labels or one class."""
        features = {SCORE: "numeric"}
        settings = {"performance": {"classification_threshold": threshold, "alpha": alpha}}
        self._configure("binary_classification", features, settings, min_reference_labels)
        scores = np.asarray(reference_scores, dtype=float)
        self._capture(pd.DataFrame({SCORE: scores}), scores, reference_labels)

    @classmethod
    def for_regression(
        cls,
        reference_data: pd.DataFrame,
        reference_predictions: Any,
        reference_actuals: Any,
        categorical_features: list[str] | None = None,
        min_reference_labels: int = 500,
        alpha: float = 0.005,
    ) -> PerformanceEstimator:
        """A regression (DLE): learns the models of the expected absolute and squared error
        from the reference's features, predictions and actuals."""
        estimator = cls.__new__(cls)
        features = feature_types(reference_data, categorical_features)
        settings = {"performance": {"alpha": alpha}}
        estimator._configure("regression", features, settings, min_reference_labels)
        estimator._capture(reference_data, reference_predictions, reference_actuals)
        return estimator

    def _configure(
        self,
        kind: str,
        features: dict[str, str],
        settings: dict[str, Any],
        min_reference_labels: int,
    ) -> None:
        self.model = ModelConfig.model_validate(
            {
                "model_id": "performance_estimator",
                "kind": kind,
                "source": {"table": "dataframe"}
                | ({"score_column": SCORE} if kind != "regression" else {}),
                "features": features,
                "min_samples": 1,
                "min_labeled": 1,
                "estimation": {"min_reference_labels": min_reference_labels},
                "multivariate": {"enabled": False},
                **settings,
            }
        )

    def _capture(self, data: pd.DataFrame, predictions: Any, labels: Any) -> None:
        self.baseline = capture_baseline(self.model, self._rows(data, predictions, labels))
        if self.baseline.calibration is None and self.baseline.loss_model is None:
            raise ValueError(
                f"the reference needs at least {self.model.estimation.min_reference_labels} "
                "labels (of both classes, for a classifier) to learn from"
            )

    def _rows(self, data: pd.DataFrame, predictions: Any, labels: Any | None) -> Rows:
        return from_dataframe(self.model, data, np.asarray(predictions, dtype=float), labels)

    def estimate(
        self, predictions: Any, labels: Any | None = None, data: pd.DataFrame | None = None
    ) -> dict[str, Any]:
        """Estimated metrics of `predictions` (a classifier's scores; a regression's values,
        with their features in `data`): ROC AUC, accuracy, precision, recall and F1, or MAE and
        RMSE; their standard errors; which are worse than the reference beyond them. With
        `labels` (NaN where not known yet), also the realised metrics and the realised-vs-
        estimated gap (accuracy, or MAE)."""
        if data is None:
            data = pd.DataFrame({SCORE: np.asarray(predictions, dtype=float)})
        report = report_of(self.model, self.baseline, self._rows(data, predictions, labels))
        estimated = report.estimated
        assert estimated is not None
        gap = estimated.disagreement
        return {
            "estimated": estimated.values,
            "standard_errors": estimated.standard_errors,
            "baseline": self.baseline.performance.get("all", {}),
            "degraded_metrics": sorted(estimated.degraded),
            "realised": report.performance.get("all", {}),
            "disagreement": None if gap is None else vars(gap),
        }

    @property
    def calibration(self) -> dict[str, Any] | None:
        """A classifier's map and its check: knots, expected calibration error before and
        after, and the reliability curve of the raw scores."""
        calibration = self.baseline.calibration
        return None if calibration is None else calibration.to_json()
