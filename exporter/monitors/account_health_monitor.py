"""The account health (binary classifier) model's monitor; `predictions` are probabilities."""

from exporter.monitors.model_monitor import ModelMonitor


class AccountHealthMonitor(ModelMonitor):
    kind = "binary_classification"
