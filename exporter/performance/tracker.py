"""PerformanceTracker: the seed's metric log, history and degradation check for one model."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd

from exporter.performance.metrics import DIRECTION
from exporter.storage.baseline_store import BaselineStore
from exporter.storage.metrics_store import MetricsStore


class PerformanceTracker:
    def __init__(self, model_id: str, store: MetricsStore | None = None) -> None:
        self.model_id = model_id
        self.store = store or MetricsStore()

    def log_metrics(
        self,
        metrics: dict[str, float],
        segment: str = "all",
        timestamp: dt.datetime | str | None = None,
    ) -> int:
        return self.store.store_metrics(self.model_id, metrics, timestamp, segment=segment)

    def get_metrics_history(
        self,
        start_date: dt.datetime | str | None = None,
        end_date: dt.datetime | str | None = None,
        metrics: list[str] | None = None,
        segment: str = "all",
    ) -> pd.DataFrame:
        """One row per timestamp, one column per metric."""
        long = self.store.get_metrics(self.model_id, start_date, end_date, metrics, segment)
        if long.empty:
            return pd.DataFrame(columns=["timestamp", *(metrics or [])])
        wide = long.pivot_table(index="timestamp", columns="metric", values="value", aggfunc="last")
        return wide.reset_index().rename_axis(columns=None)

    def baseline_metrics(self) -> dict[str, float]:
        """The newest captured baseline's overall performance, else the first logged values."""
        try:
            baseline = BaselineStore(self.store.engine).load(self.model_id)
        except Exception:
            baseline = None
        if baseline is not None and baseline.performance.get("all"):
            return baseline.performance["all"]
        history = self.store.get_metrics(self.model_id)
        return {} if history.empty else history.groupby("metric")["value"].first().to_dict()

    def check_degradation(
        self,
        current_metrics: dict[str, float],
        threshold_percent: float = 10,
        baseline_metrics: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """Each metric's change vs baseline in its bad direction; degraded beyond the threshold?"""
        baseline = baseline_metrics if baseline_metrics is not None else self.baseline_metrics()
        out: dict[str, Any] = {}
        for metric, current in current_metrics.items():
            base = baseline.get(metric)
            if base is None or metric not in DIRECTION or base == 0 or not math.isfinite(base):
                continue
            worse = -DIRECTION[metric] * (current - base) / abs(base) * 100
            out[metric] = {
                "baseline": base,
                "current": current,
                "change_percent": worse,
                "degraded": worse > threshold_percent,
            }
        return {
            "model_id": self.model_id,
            "threshold_percent": threshold_percent,
            "degraded": any(m["degraded"] for m in out.values()),
            "degraded_metrics": [m for m, v in out.items() if v["degraded"]],
            "metrics": out,
            "degradation": {m: max(0.0, v["change_percent"] / 100) for m, v in out.items()},
        }
