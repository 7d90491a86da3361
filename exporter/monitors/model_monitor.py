"""ModelMonitor: the seed's `check_model_health` for notebooks and batch jobs.

Built with only a model_id, it finds the model's config (`$MODEL_MONITOR_CONFIG` or
./model-monitor.yml) and newest baseline itself. The report comes from the same statistics
core and the same health rules as the exporter's /api/v1/models/<id>/health.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from exporter.baseline import Baseline
from exporter.config import Config, load_config
from exporter.monitors import health
from exporter.monitors.retraining_scheduler import Evidence, decide
from exporter.report import ModelReport, report_of
from exporter.rows import from_dataframe
from exporter.storage.baseline_store import BaselineStore
from exporter.storage.engine import create_engine


class ModelMonitor:
    kind: str | None = None  # set by the specialised monitors, checked against the config

    def __init__(
        self, model_id: str, config: Config | None = None, baseline: Baseline | None = None
    ) -> None:
        self.config = config or load_config()
        self.model = self.config.model(model_id)
        if self.kind is not None and self.model.kind != self.kind:
            raise ValueError(
                f"model {model_id} is a {self.model.kind} model; use the monitor for that kind"
            )
        if baseline is None:
            baseline = BaselineStore(
                create_engine(self.config.store.url, self.config.store.timeouts)
            ).load(model_id)
        if baseline is None:
            raise ValueError(
                f"model {model_id} has no baseline; capture one with "
                f"`model-monitor baseline --model {model_id}`"
            )
        self.baseline = baseline
        self.last_report: ModelReport | None = None

    @property
    def model_id(self) -> str:
        return self.model.model_id

    def evaluate(
        self, recent_data: pd.DataFrame, predictions: Any, actuals: Any = None, scores: Any = None
    ) -> ModelReport:
        rows = from_dataframe(self.model, recent_data, predictions, actuals, scores)
        self.last_report = report_of(self.model, self.baseline, rows)
        return self.last_report

    def check_model_health(
        self, recent_data: pd.DataFrame, predictions: Any, actuals: Any = None, scores: Any = None
    ) -> dict[str, Any]:
        """The seed's health report for these rows: status, findings, drift, performance, ..."""
        report = self.evaluate(recent_data, predictions, actuals, scores)
        found = health.findings(self.model, report)
        decision = decide(self.model, Evidence.from_report(report))
        return health.health_json(self.model, report, found, decision.to_json())
