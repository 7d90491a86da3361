"""The Flask app: endpoints, exposition that promtool accepts, concurrent scrapes counted once."""

from __future__ import annotations

import subprocess
import threading

import numpy as np

from exporter.app import create_app
from exporter.logging.prediction_logger import PredictionLogger
from exporter.metric_catalog import CATALOG, exposed_names
from exporter.service import MonitorService
from tests.conftest import (
    FIRST_FAMILIES,
    FIRST_PERFORMANCE,
    T0,
    Clock,
    binary,
    classifier_rows,
    make_config,
    metric_value,
    regression_rows,
    seed_regression,
)


def _service(tmp_path):
    config = make_config(f"sqlite:///{tmp_path / 's.db'}")
    seed_regression(config, np.random.default_rng(5))
    rng = np.random.default_rng(6)
    d = classifier_rows(rng, 1000)
    with PredictionLogger(config) as logger:
        for i, ts in enumerate(np.sort(rng.uniform(T0 - 7200, T0 - 10, 1000))):
            pid = logger.log_prediction(
                "clf",
                {"x1": d["x1"][i], "plan": str(d["plan"][i])},
                float(d["score"][i] >= 0.5),
                score=float(d["score"][i]),
                timestamp=float(ts),
            )
            logger.log_actual("clf", pid, float(d["outcome"][i]), timestamp=float(ts) + 5)
    from exporter.cli import capture

    capture(config, "clf", T0 - 7200, T0 - 3600, command="test")
    clock = Clock(T0)
    return config, MonitorService(config, clock=clock), clock


def test_endpoints_and_readiness(tmp_path) -> None:
    config, service, _ = _service(tmp_path)
    app = create_app(config, service, warmup=False)
    client = app.test_client()
    assert client.get("/-/healthy").status_code == 200
    assert client.get("/-/ready").status_code == 503  # windows not rebuilt yet
    service.start_warmup().join()
    assert client.get("/-/ready").status_code == 200
    landing = client.get("/").text
    assert 'href="metrics"' in landing and "reg" in landing and "clf" in landing
    gz = client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert gz.headers["Content-Encoding"] == "gzip"
    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")


def test_metrics_pass_promtool_and_cover_the_contract(tmp_path) -> None:
    promtool = binary("promtool")
    config, service, _ = _service(tmp_path)
    app = create_app(config, service)
    service.start_warmup().join()
    text = app.test_client().get("/metrics").text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout + result.stderr == "", (
        result.stdout + result.stderr
    )
    wanted = [
        *FIRST_FAMILIES,
        *(n for names in FIRST_PERFORMANCE.values() for n in names),
        "model_monitor_rows_rejected_total",
        "model_monitor_build_info",
    ]
    for name in wanted:
        assert f"\n{name}" in text, name
    # Every sample comes from a family in the catalog (what the docs describe).
    known = {n for spec in CATALOG for n in exposed_names(spec)}
    names = {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("model_")
    }
    assert names <= known, names - known


def test_concurrent_scrapes_share_refreshes(tmp_path) -> None:
    config, service, clock = _service(tmp_path)
    app = create_app(config, service)
    service.start_warmup().join()
    rng = np.random.default_rng(9)
    d = regression_rows(rng, 300)
    with PredictionLogger(config) as logger:
        for i in range(300):
            logger.log_prediction(
                "reg",
                {"x1": d["x1"][i], "x2": d["x2"][i], "color": "red"},
                float(d["prediction"][i]),
                timestamp=T0 + 1 + i * 0.01,
                latency_seconds=0.03,
                attributes={"tier": "gold"},
            )
    clock.advance(10)
    texts: list[str] = []

    def scrape() -> None:
        texts.append(app.test_client().get("/metrics").text)

    threads = [threading.Thread(target=scrape) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(texts) == 8
    assert all(metric_value(t, "model_predictions_total", model_id="reg") == 300 for t in texts)
    assert all(
        metric_value(t, "model_prediction_latency_seconds_count", model_id="reg") == 300
        for t in texts
    )
    assert all(
        metric_value(t, "model_prediction_latency_seconds_bucket", model_id="reg", le="0.05") == 300
        for t in texts
    )
