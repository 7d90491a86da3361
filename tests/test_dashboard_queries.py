"""Every PromQL expression of every panel returns data from a real Prometheus scraping the real
exporter, after the simulator ran through all its scenarios for both reference models.

Variables are resolved the way Grafana resolves them: each variable's own `label_values(...)`
query goes to Prometheus' series API, and every model is tried.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import requests

from exporter.cli import capture
from exporter.config import load_config
from exporter.logging.prediction_logger import PredictionLogger
from exporter.simulator import SCENARIOS, LabelDelay, Simulator
from exporter.visualization import MonitoringDashboardGenerator
from tests.binaries import prometheus
from tests.conftest import ROOT, binary
from tests.servers import free_port, model_monitor, stop, wait_for
from tests.stack import RATE, Traffic, exporter_config, prometheus_config

MODELS = ("ad_score_model_v1", "account_health_model_v1")


def _label_values(prom: str, query: str, values: dict[str, str]) -> list[str]:
    """Grafana's label_values(selector, label) through Prometheus' series API."""
    selector, label = re.fullmatch(r"label_values\((.*), (\w+)\)", query).groups()
    for name, value in values.items():
        selector = selector.replace(f"${name}", value)
    series = requests.get(f"{prom}/api/v1/series", params={"match[]": selector}, timeout=10).json()
    return sorted({s[label] for s in series["data"] if label in s})


def _substitute(expr: str, values: dict[str, str]) -> str:
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(f"${name}", value)
    return expr


def test_every_panel_query_returns_data(tmp_path) -> None:
    binary("promtool")
    config_path = exporter_config(tmp_path, MODELS)
    config = load_config(config_path)
    logger = PredictionLogger(config, flush_interval=0.2)
    sim = Simulator(
        logger,
        {"ad_score": MODELS[0], "account_health": MODELS[1]},
        rate=RATE,
        delay=LabelDelay(0.3, 1.5, 0.05),
        seed=5,
    )
    end = time.time() - 600
    sim.seed_reference(end - 600, end, 5000)
    for model_id in MODELS:
        capture(config, model_id, end - 600, end, command="test")
    port = free_port()
    exporter = model_monitor(
        "serve",
        "--config",
        str(config_path),
        "--web.listen-address",
        f"127.0.0.1:{port}",
        log=tmp_path / "exporter.log",
    )
    traffic = Traffic(sim)
    failures: list[str] = []
    checked = 0
    try:
        with prometheus(
            prometheus_config(tmp_path, f"127.0.0.1:{port}", "127.0.0.1:1"), tmp_path
        ) as prom:
            traffic.start()
            for scenario in (*SCENARIOS[1:], "stable"):  # every scenario, then back to normal
                traffic.scenario = scenario
                time.sleep(4)
            time.sleep(12)  # the windows refill with stable traffic; rates span several scrapes
            wait_for(
                lambda: requests.get(
                    f"{prom}/api/v1/query", params={"query": "up"}, timeout=5
                ).json()["data"]["result"],
                30,
                "a first scrape",
            )
            for path in sorted((ROOT / "dashboards" / "generated").glob("*.json")):
                model = json.loads(path.read_text())
                variables = [v for v in model["templating"]["list"] if v["type"] == "query"]
                for model_id in MODELS:
                    # $__rate_interval as Grafana sets it at this scrape interval: 4 x 1s.
                    values = {"datasource": "prometheus", "__rate_interval": "4s"}
                    for variable in variables:
                        if variable["name"] == "model_id":
                            values["model_id"] = model_id
                            continue
                        found = _label_values(prom, variable["query"], values)
                        if not found:
                            failures.append(
                                f"{path.name}: variable {variable['name']} has no values "
                                f"for {model_id}"
                            )
                            continue
                        values[variable["name"]] = found[0]
                    for panel in model["panels"]:
                        for t in panel.get("targets", []):
                            expr = _substitute(t["expr"], values)
                            assert "$" not in expr, expr
                            checked += 1
                            answer = requests.get(
                                f"{prom}/api/v1/query", params={"query": expr}, timeout=10
                            ).json()
                            if answer["status"] != "success":
                                failures.append(
                                    f"{path.name} / {panel['title']}: {answer.get('error')}"
                                )
                            elif not answer["data"]["result"]:
                                failures.append(
                                    f"{path.name} / {panel['title']} ({model_id}): no data "
                                    f"for {expr}"
                                )
            # The seed's HTML report drawn from the same Prometheus.
            report = MonitoringDashboardGenerator.create_dashboard(
                MODELS[0],
                dt.datetime.fromtimestamp(time.time() - 120, dt.UTC),
                dt.datetime.fromtimestamp(time.time(), dt.UTC),
                prometheus_url=prom,
            )
            assert report.source.startswith("Prometheus")
            for section in (
                "Performance",
                "Data drift",
                "Prediction distribution",
                "Fairness",
                "Resource utilization",
            ):
                assert any(chart.series for chart in report.sections[section]), section
            page = report.save(tmp_path / "report.html").read_text()
            assert page.count('<polyline class="series"') >= 10
    finally:
        traffic.halt.set()
        stop(exporter)
        logger.close()
    assert failures == []
    targets = sum(
        len(p.get("targets", []))
        for f in (ROOT / "dashboards" / "generated").glob("*.json")
        for p in json.loads(f.read_text())["panels"]
    )
    assert checked == targets * len(MODELS) > 60
