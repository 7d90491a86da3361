"""Model detail: the seed's six sections for one model (grafanalib). Regenerate with `make mixin`
(settings: mixin/config.yml)."""

from exporter import mixin
from exporter.visualization.grafana import detail_dashboard

dashboard = detail_dashboard(mixin.settings())
