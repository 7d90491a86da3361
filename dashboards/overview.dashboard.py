"""Models overview: every model at a glance (grafanalib). Regenerate with `make mixin`
(settings: mixin/config.yml)."""

from exporter import mixin
from exporter.visualization.grafana import overview_dashboard

dashboard = overview_dashboard(mixin.settings())
