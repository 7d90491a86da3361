"""The ad score (regression) model's monitor."""

from exporter.monitors.model_monitor import ModelMonitor


class AdScoreModelMonitor(ModelMonitor):
    kind = "regression"
