"""Performance: pure metrics (`metrics`), estimation before labels (`estimation`, and
`PerformanceEstimator` for notebooks), the seed's `PerformanceTracker` and `AlertManager`."""

from exporter.lazy_exports import lazy

_EXPORTS = {
    "AlertManager": "exporter.performance.alerting",
    "PerformanceEstimator": "exporter.performance.estimator",
    "PerformanceTracker": "exporter.performance.tracker",
}
__getattr__ = lazy(_EXPORTS)
__all__ = list(_EXPORTS)
