"""SIGKILL in the middle of a window rebuild, then a restart: the window comes back exact.

A real `model-monitor serve` (gunicorn) against the real PostgreSQL, with 300,000 rows in the
window so the rebuild takes seconds. It is killed (the whole process group, no clean shutdown)
while it reports rebuilding, restarted, and must then hold exactly the table's rows. While it
rebuilds it must say so: up (it is reading the store), rebuilding, and /-/ready 503.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
import yaml

from exporter.config import parse_config
from exporter.storage.prediction_store import create_schema
from tests.conftest import REGRESSION_MODEL, metric_value
from tests.servers import free_port, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROWS = 300_000
MODEL = {
    **REGRESSION_MODEL,
    "drift_window": {"length": "1h", "bucket": "1m"},
    "performance_window": {"length": "1h", "bucket": "1m"},
}


def _serve(config: Path, port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "exporter.cli", "serve", "--config", str(config)),
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the kill takes the worker too
    )


def test_killed_during_rebuild_restarts_exact(pg_url: str, tmp_path: Path, record_property) -> None:
    raw = {"store": {"url": pg_url}, "models": [MODEL]}
    create_schema(sa.create_engine(pg_url), parse_config(raw))
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:  # rows spread over the last 50 minutes, made by the server
        conn.execute(
            sa.text(
                "INSERT INTO reg_predictions (prediction_id, created_at, prediction, "
                "latency_seconds, x1, x2, color, tier) "
                "SELECT 'p' || g, (now() AT TIME ZONE 'utc') - make_interval(secs => g * 0.01), "
                "random() * 5, 0.01, random(), random() * 2, 'red', 'gold' "
                "FROM generate_series(1, :n) AS g"
            ),
            {"n": ROWS},
        )
    path = tmp_path / "model-monitor.yml"
    path.write_text(yaml.safe_dump(raw))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "exporter.log"

    first = _serve(path, port, log)
    try:

        def rebuilding_and_reading() -> bool:
            body = requests.get(f"{url}/metrics", timeout=5).text
            return (
                metric_value(body, "model_monitor_rebuilding", model_id="reg") == 1
                and metric_value(body, "model_monitor_up", model_id="reg") == 1
            )

        wait_for(rebuilding_and_reading, 60, "the rebuild to be reading the store", 0.2)
        assert requests.get(f"{url}/-/ready", timeout=5).status_code == 503
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()

    second = _serve(path, port, log)
    try:
        took = wait_for(
            lambda: requests.get(f"{url}/-/ready", timeout=5).status_code == 200,
            180,
            "the restarted exporter to finish its rebuild",
        )
        record_property("timings", [f"{ROWS:,} rows rebuilt after SIGKILL: ready in {took:.1f} s"])
        body = requests.get(f"{url}/metrics", timeout=10).text
        assert metric_value(body, "model_monitor_rebuilding", model_id="reg") == 0
        assert metric_value(body, "model_window_predictions", model_id="reg") == ROWS
        assert metric_value(body, "model_monitor_rows_rejected_total", reason="expired") == 0
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=30)
    engine.dispose()
