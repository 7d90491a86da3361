"""model-monitor: a Prometheus exporter for deployed ML models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("model-monitor")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
