"""Drift: pure statistics (`statistical`), one distribution's verdict (`feature_drift`), and the
seed's `DataDriftDetector` for DataFrames (`detector`)."""

from exporter.lazy_exports import lazy

_EXPORTS = {"DataDriftDetector": "exporter.drift.detector"}
__getattr__ = lazy(_EXPORTS)
__all__ = list(_EXPORTS)
