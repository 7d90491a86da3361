"""Dashboards: Grafana JSON as code (`grafana`), generation and push (`dashboard_files`), and the
seed's `MonitoringDashboardGenerator` with its self-contained HTML report (`dashboards`)."""

from exporter.lazy_exports import lazy

_EXPORTS = {"MonitoringDashboardGenerator": "exporter.visualization.dashboards"}
__getattr__ = lazy(_EXPORTS)
__all__ = list(_EXPORTS)
