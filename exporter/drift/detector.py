"""DataDriftDetector: the seed's drift check on DataFrames, through the exporter's own core.

The reference and current frames are folded exactly as the exporter folds a window (one bucket),
so a notebook gets the numbers /metrics would show for the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from exporter.config import ModelConfig
from exporter.report import build_report
from exporter.rows import Rows, feature_types, from_dataframe
from exporter.sufficient_stats import totals_of_chunks
from exporter.window import capture_baseline

ALIASES = {
    "js_divergence": "js_distance",
    "ks": "ks_statistic",
    "wasserstein": "wasserstein_normalized",
}
STATISTICS = ("psi", "js_distance", "kl_divergence", "ks_statistic", "wasserstein_normalized")
CHUNK_ROWS = 25_000  # rows parsed at once: bounds the memory a large frame needs


class DataDriftDetector:
    def __init__(
        self,
        reference_data: pd.DataFrame,
        drift_thresholds: dict[str, float] | None = None,
        categorical_features: list[str] | None = None,
        min_samples: int = 100,
        drift_alpha: float = 0.005,
    ) -> None:
        """Thresholds given are honoured as given (the seed's `js_divergence` means the JS
        distance); with none, the project's defaults apply (docs/statistics.md)."""
        features = feature_types(reference_data, categorical_features)
        model: dict[str, Any] = {
            "model_id": "drift_detector",
            "kind": "regression",
            "source": {"table": "dataframe"},
            "features": features,
            "min_samples": min_samples,
            "drift_alpha": drift_alpha,
        }
        if drift_thresholds is not None:
            unknown = set(drift_thresholds) - set(ALIASES) - set(STATISTICS)
            if unknown:
                raise ValueError(
                    f"unknown drift thresholds {sorted(unknown)}; use {', '.join(STATISTICS)}"
                )
            given = {ALIASES.get(k, k): v for k, v in drift_thresholds.items()}
            model["thresholds"] = {s: given.get(s) for s in STATISTICS}
        self.model = ModelConfig.model_validate(model)
        rows = Rows.concat(self._parsed(reference_data), len(reference_data))
        self.baseline = capture_baseline(self.model, rows)

    def _parsed(self, data: pd.DataFrame) -> Iterator[Rows]:
        """`data` parsed `CHUNK_ROWS` rows at a time: parsing a whole frame at once would hold
        several copies of it (the canonical frame, the coerced columns, the accepted rows)."""
        for start in range(0, max(len(data), 1), CHUNK_ROWS):
            part = data.iloc[start : start + CHUNK_ROWS]
            yield from_dataframe(self.model, part, np.zeros(len(part)))

    def detect_drift(self, current_data: pd.DataFrame) -> dict[str, Any]:
        """Drift of `current_data` against the reference, folded a chunk at a time (the sums
        add up: memory of one chunk, whatever the frame's length)."""
        totals = totals_of_chunks(self.model, self.baseline, self._parsed(current_data))
        report = build_report(self.model, self.baseline, totals)
        metrics = {}
        for name, feature in report.features.items():
            d = feature.drift
            assert d is not None
            metrics[name] = {
                "kl_divergence": d.kl_divergence,
                "psi": d.psi,
                "js_divergence": d.js_distance,
                "ks_statistic": d.ks_statistic,
                "wasserstein_normalized": d.wasserstein_normalized,
                "chi_square_p_value": d.chi_square_p_value,
                "drift_detected": bool(d.detected),
                "triggered": list(d.triggered),
                "thresholds": d.thresholds,
                "rows": d.rows,
                "missing_ratio": feature.quality.missing_ratio,
            }
        return {
            "drift_detected": bool(report.drifted_features),
            "drifted_features": report.drifted_features,
            "feature_metrics": metrics,
            # The numeric features taken together (PCA reconstruction error); None with fewer
            # than two numeric features or min_samples complete rows.
            "multivariate": None if report.multivariate is None else vars(report.multivariate),
        }
