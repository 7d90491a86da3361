"""Models overview: every model at a glance (grafanalib). Regenerate with `make dashboards`."""

from exporter.visualization.grafana import overview_dashboard

dashboard = overview_dashboard()
