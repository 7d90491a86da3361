"""Exactly once under concurrent writers: real processes, real commits out of time order.

Four processes log through PredictionLogger at 250 rows/s each while another keeps its
transactions open 0-3 s after stamping their rows. The exporter is scraped every second
throughout. Within one reconciliation interval of the writers stopping, the window holds exactly
the table's rows, and a row inserted afterwards with a time ten minutes back is counted too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from exporter.app import create_app
from exporter.logging.prediction_logger import PredictionLogger
from exporter.service import MonitorService
from tests.conftest import REGRESSION_MODEL, ROOT, make_config, metric_value
from tests.servers import wait_for

# Seconds of writing on PostgreSQL (SQLite gets half): issue 9 asks for two minutes.
SOAK = float(os.environ.get("MODEL_MONITOR_SOAK_SECONDS", "120"))
RECONCILE = 10.0
MODEL = {
    **REGRESSION_MODEL,
    "drift_window": {"length": "1h", "bucket": "1m"},
    "performance_window": {"length": "1h", "bucket": "1m"},
}


def _writer(mode: str, url: str, seconds: float, seed: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.writers", mode, "--url", url),
            *("--model", json.dumps(MODEL), "--seconds", str(seconds), "--seed", str(seed)),
        ],
        cwd=ROOT,
    )


@pytest.mark.slow
def test_every_row_counted_once_whatever_the_commit_order(store_url: str, record_property) -> None:
    seconds = SOAK if store_url.startswith("postgresql") else SOAK / 2
    config = make_config(store_url, models=[MODEL], reconcile_interval=RECONCILE)
    PredictionLogger(config).close()  # creates the tables
    service = MonitorService(config)
    client = create_app(config, service, warmup=False).test_client()
    service.start_warmup().join()

    writers = [_writer("logger", store_url, seconds, seed) for seed in range(4)]
    writers.append(_writer("slow-commit", store_url, seconds, 99))
    while any(w.poll() is None for w in writers):
        client.get("/metrics")
        time.sleep(1)
    assert all(w.returncode == 0 for w in writers)

    engine = sa.create_engine(store_url)
    table = sa.Table("reg_predictions", sa.MetaData(), autoload_with=engine)
    with PredictionLogger(config) as logger:  # back-filled: ten minutes old, inside the window
        logger.log_prediction(
            "reg", {"x1": 0.0, "x2": 1.0, "color": "red"}, 3.0, timestamp=time.time() - 600
        )
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()

    def exact() -> bool:
        body = client.get("/metrics").text
        return metric_value(body, "model_window_predictions", model_id="reg") == stored

    took = wait_for(exact, RECONCILE + 5, f"the window to hold the table's {stored} rows", 1)
    body = client.get("/metrics").text
    assert metric_value(body, "model_predictions_total", model_id="reg") == stored
    late = metric_value(body, "model_monitor_late_rows_total", stream="predictions")
    assert late >= 1  # the slow commits and the back-filled row were found behind the cursor
    record_property(
        "timings",
        [
            f"{seconds:.0f} s of 5 writers: {stored:,} rows, {late:,.0f} found behind the read "
            f"position; exact {took:.1f} s after the writers stopped",
        ],
    )
    for reason in ("invalid_timestamp", "invalid_prediction", "expired"):
        assert metric_value(body, "model_monitor_rows_rejected_total", reason=reason) == 0
    engine.dispose()
