"""Performance: pure metrics (`metrics`), the seed's `PerformanceTracker` and `AlertManager`."""

from exporter.lazy_exports import lazy

_EXPORTS = {
    "AlertManager": "exporter.performance.alerting",
    "PerformanceTracker": "exporter.performance.tracker",
}
__getattr__ = lazy(_EXPORTS)
__all__ = list(_EXPORTS)
