"""SystemMonitor: the exporter's own CPU, memory and refresh durations, and models' latency.

The same numbers /metrics shows (prometheus_client's process collector and our refresh status),
as a dict for notebooks and the health API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import ProcessCollector

if TYPE_CHECKING:  # the service imports the monitors' pure parts; only the type is needed here
    from exporter.service import MonitorService


def latency_quantile(bounds: np.ndarray, cumulative: np.ndarray, q: float) -> float:
    """Quantile of a cumulative histogram, interpolated within a bucket (histogram_quantile)."""
    total = cumulative[-1]
    if total <= 0:
        return float("nan")
    rank = q * total
    i = int(np.searchsorted(cumulative, rank, side="left"))
    if i >= len(bounds):
        return float(bounds[-1])
    lower = 0.0 if i == 0 else bounds[i - 1]
    below = 0.0 if i == 0 else cumulative[i - 1]
    inside = cumulative[i] - below
    return float(lower + (bounds[i] - lower) * ((rank - below) / inside if inside else 1.0))


class SystemMonitor:
    def __init__(self, service: MonitorService | None = None) -> None:
        self.service = service
        self._process = ProcessCollector(registry=None)

    def collect(self) -> dict[str, Any]:
        process = {
            s.name.removeprefix("process_"): s.value
            for family in self._process.collect()
            for s in family.samples
        }
        models: dict[str, Any] = {}
        for model_id, refresher in self.service.refreshers.items() if self.service else []:
            entry: dict[str, Any] = {
                "up": refresher.status.up,
                "refresh_duration_seconds": refresher.status.last_duration,
                "last_refresh": refresher.status.last_success,
                "ingest_lag_seconds": refresher.status.lag_seconds,
            }
            window = refresher.window
            if window is not None and window.latency.counts.sum() > 0:
                cum = np.cumsum(window.latency.counts)
                entry["latency_seconds"] = {
                    f"p{int(q * 100)}": latency_quantile(window.latency.bounds, cum, q)
                    for q in (0.5, 0.9, 0.99)
                }
            models[model_id] = entry
        return {"process": process, "models": models}
