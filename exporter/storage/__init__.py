"""The SQL edge: prediction store and source, baselines, audit trail, metrics history."""

from exporter.lazy_exports import lazy

_EXPORTS = {"MetricsStore": "exporter.storage.metrics_store"}
__getattr__ = lazy(_EXPORTS)
__all__ = list(_EXPORTS)
