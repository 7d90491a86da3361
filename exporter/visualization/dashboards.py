"""The seed's MonitoringDashboardGenerator: a dashboard for one model and time range.

`save("x.json")` writes the Grafana JSON of the model detail dashboard (model and time range
preset); `save("x.html")` writes a self-contained HTML report with the same six sections as
inline SVG plots, drawn from Prometheus' query_range when a Prometheus URL is given (argument or
`$MODEL_MONITOR_PROMETHEUS_URL`), from the metrics store's history otherwise.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from exporter import mixin
from exporter.storage.metrics_store import MetricsStore
from exporter.visualization.grafana import detail_dashboard, to_json
from exporter.visualization.svg import Series, line_chart

PROMETHEUS_URL_ENV = "MODEL_MONITOR_PROMETHEUS_URL"
SECTIONS = (
    "Performance",
    "Data drift",
    "Prediction distribution",
    "Fairness",
    "Error analysis",
    "Resource utilization",
)
ERROR_METRICS = ("rmse", "log_loss")


def _epoch(value: dt.datetime | str) -> float:
    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).timestamp()


@dataclass
class Chart:
    title: str
    series: dict[str, Series]
    reference: float | None = None


@dataclass
class Dashboard:
    model_id: str
    start: float
    end: float
    source: str
    grafana: dict[str, Any]
    sections: dict[str, list[Chart]] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix == ".json":
            path.write_text(json.dumps(self.grafana, indent=2, sort_keys=True))
        elif path.suffix in (".html", ".htm"):
            path.write_text(self.html())
        else:
            raise ValueError(f"{path}: save to a .json (Grafana) or .html (report) file")
        return path

    def html(self) -> str:
        def when(t: float) -> str:
            return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

        body = [
            f"<h1>Model monitoring report: {html.escape(self.model_id)}</h1>",
            f"<p>{when(self.start)} to {when(self.end)} · data from {html.escape(self.source)}</p>",
        ]
        for section in SECTIONS:
            body.append(f'<section id="{section.lower().replace(" ", "-")}"><h2>{section}</h2>')
            charts = self.sections.get(section) or [Chart(section, {})]
            body += [line_chart(c.title, c.series, c.reference) for c in charts]
            body.append("</section>")
        style = (
            "body{font-family:sans-serif;margin:24px;color:#222}section{margin-bottom:24px}"
            "svg.plot{margin:4px 8px 4px 0;border:1px solid #eee}"
        )
        title = f"{html.escape(self.model_id)} monitoring report"
        head = f'<meta charset="utf-8"><title>{title}</title><style>{style}</style>'
        page = f"<head>{head}</head><body>{''.join(body)}</body>"
        return f'<!doctype html><html lang="en">{page}</html>\n'


def _from_store(
    store: MetricsStore, model_id: str, start: float, end: float
) -> dict[str, list[Chart]]:
    frame = store.get_metrics(
        model_id,
        dt.datetime.fromtimestamp(start, dt.UTC),
        dt.datetime.fromtimestamp(end, dt.UTC),
        segment=None,
    )
    if frame.empty:
        return {}
    frame["t"] = [ts.replace(tzinfo=dt.UTC).timestamp() for ts in frame["timestamp"]]

    def series(rows: pd.DataFrame, key: str) -> dict[str, Series]:
        return {name: list(zip(g["t"], g["value"], strict=True)) for name, g in rows.groupby(key)}

    model = frame[frame.segment == "model"]

    def prefixed(prefix: str) -> dict[str, Series]:
        rows = model[model.metric.str.startswith(prefix)].assign(
            name=lambda f: f.metric.str[len(prefix) :]
        )
        return series(rows, "name")

    overall = frame[frame.segment == "all"]
    segments = frame[~frame.segment.isin(["all", "model"]) & frame.metric.isin(ERROR_METRICS)]
    named = {
        m: series(model[model.metric == m], "metric")
        for m in (
            "prediction_psi",
            "multivariate_error",
            "refresh_duration_seconds",
            "window_predictions",
            "label_coverage",
        )
    }
    return {
        "Performance": [
            Chart("Overall metrics", series(overall, "metric")),
            Chart("Estimated before labels", prefixed("estimated:")),
        ],
        "Data drift": [
            Chart("PSI per feature", prefixed("psi:")),
            Chart("Multivariate drift (PCA error)", named["multivariate_error"]),
        ],
        "Prediction distribution": [Chart("PSI of the output", named["prediction_psi"])],
        "Fairness": [Chart("Parity ratio per attribute", prefixed("parity_ratio:"), reference=0.8)],
        "Error analysis": [Chart("Error per segment", series(segments, "segment"))],
        "Resource utilization": [
            Chart("Refresh duration (s)", named["refresh_duration_seconds"]),
            Chart("Window predictions", named["window_predictions"]),
        ],
    }


def _legend(fmt: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt) or json.dumps(
        labels
    )


def _from_prometheus(url: str, model_id: str, start: float, end: float) -> dict[str, list[Chart]]:
    """The detail dashboard's panels that need no variable but the model, its job (any) and
    the rate interval (four steps, at least a minute), over query_range."""
    step = max(15.0, (end - start) / 240)
    values = {
        "$__rate_interval": f"{max(4 * step, 60.0):.0f}s",
        "$model_id": model_id,
        "$job": ".+",
    }
    sections: dict[str, list[Chart]] = {}
    current = None
    for panel in to_json(detail_dashboard(mixin.settings()))["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            continue
        if panel["type"] != "timeseries" or current is None:
            continue
        exprs = [t["expr"] for t in panel["targets"]]
        for variable, value in values.items():
            exprs = [e.replace(variable, value) for e in exprs]
        targets = [(t, e) for t, e in zip(panel["targets"], exprs, strict=True) if "$" not in e]
        if not targets:
            continue
        chart = Chart(panel["title"], {})
        for t, expr in targets:
            answer = requests.get(
                f"{url.rstrip('/')}/api/v1/query_range",
                timeout=30,
                params={
                    "query": expr,
                    "start": start,
                    "end": end,
                    "step": step,
                },
            ).json()
            for result in answer.get("data", {}).get("result", []):
                label = _legend(t.get("legendFormat", ""), result["metric"])
                chart.series[label] = [(float(ts), float(v)) for ts, v in result["values"]]
        sections.setdefault(current, []).append(chart)
    return sections


class MonitoringDashboardGenerator:
    @staticmethod
    def create_dashboard(
        model_id: str,
        start_date: dt.datetime | str,
        end_date: dt.datetime | str,
        prometheus_url: str | None = None,
        store: MetricsStore | None = None,
    ) -> Dashboard:
        start, end = _epoch(start_date), _epoch(end_date)
        if isinstance(end_date, str) and len(end_date) == 10:
            end += 86400  # a bare end date includes that day
        grafana = to_json(detail_dashboard(mixin.settings()))
        grafana["time"] = {
            "from": dt.datetime.fromtimestamp(start, dt.UTC).isoformat(),
            "to": dt.datetime.fromtimestamp(end, dt.UTC).isoformat(),
        }
        for variable in grafana["templating"]["list"]:
            if variable["name"] == "model_id":
                variable["current"] = {"selected": True, "text": model_id, "value": model_id}
        prometheus_url = prometheus_url or os.environ.get(PROMETHEUS_URL_ENV)
        if prometheus_url:
            sections, source = (
                _from_prometheus(prometheus_url, model_id, start, end),
                f"Prometheus {prometheus_url}",
            )
        else:
            sections, source = (
                _from_store(store or MetricsStore(), model_id, start, end),
                "the metrics store",
            )
        return Dashboard(model_id, start, end, source, grafana, sections)
