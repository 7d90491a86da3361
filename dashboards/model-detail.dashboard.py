"""Model detail: the seed's six sections for one model (grafanalib); `make dashboards`."""

from exporter.visualization.grafana import detail_dashboard

dashboard = detail_dashboard()
