"""Faults between the exporter and a real PostgreSQL, injected by a TCP proxy the test owns.

Each mode (refuse, hang, reset in the middle of a read, slow) is tried while rows keep arriving
in the store; afterwards the counts on /metrics equal the table's exactly, with nothing lost or
counted twice. Deadlines here are the behaviour under test (a scrape answers within
Prometheus' scrape timeout), not speed figures.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from flask.testing import FlaskClient

from exporter.app import create_app
from exporter.logging.prediction_logger import PredictionLogger
from exporter.service import MonitorService
from tests.conftest import (
    REGRESSION_MODEL,
    T0,
    Clock,
    make_config,
    metric_value,
    regression_rows,
    seed_regression,
)
from tests.servers import wait_for

pytestmark = pytest.mark.postgres

SCRAPE = {"X-Prometheus-Scrape-Timeout-Seconds": "5"}


def _log(url: str, n: int, rng: np.random.Generator, start: float) -> None:
    """`n` predictions written straight to the store, past the proxy."""
    with PredictionLogger(make_config(url, models=[REGRESSION_MODEL])) as logger:
        d = regression_rows(rng, n)
        for i in range(n):
            logger.log_prediction(
                "reg",
                {"x1": d["x1"][i], "x2": d["x2"][i], "color": "red"},
                float(d["prediction"][i]),
                timestamp=start + i * 0.01,
                attributes={"tier": "gold"},
            )


def _scrape(client: FlaskClient) -> tuple[str, float]:
    started = time.monotonic()
    body = client.get("/metrics", headers=SCRAPE).text
    return body, time.monotonic() - started


def _started(proxied: str) -> tuple[MonitorService, FlaskClient, Clock]:
    clock = Clock(T0)
    config = make_config(proxied, models=[REGRESSION_MODEL])
    service = MonitorService(config, clock=clock)
    client = create_app(config, service, warmup=False).test_client()
    service.start_warmup().join()
    return service, client, clock


def _recovers_exactly(client: FlaskClient, clock: Clock, window: int, new: int) -> float:
    """Scrape until the window holds `window` rows; check nothing was counted twice or rejected.
    Returns the seconds it took."""

    def caught_up() -> bool:
        clock.advance(1)
        body, _ = _scrape(client)
        return (
            metric_value(body, "model_monitor_up", model_id="reg") == 1
            and metric_value(body, "model_window_predictions", model_id="reg") == window
        )

    took = wait_for(caught_up, 60, f"{window} rows in the window")
    body, _ = _scrape(client)
    assert metric_value(body, "model_predictions_total", model_id="reg") == new
    for reason in ("invalid_timestamp", "invalid_prediction", "expired"):
        rejected = metric_value(body, "model_monitor_rows_rejected_total", reason=reason)
        assert rejected == 0, reason
    return took


@pytest.mark.parametrize("mode", ["refuse", "hang"])
def test_store_down_or_hanging_scrape_answers_in_time_and_goes_down(
    proxied_pg, pg_url, mode: str, caplog, record_property
) -> None:
    proxy, proxied = proxied_pg
    seed_regression(make_config(pg_url, models=[REGRESSION_MODEL]), np.random.default_rng(5))
    _service, client, clock = _started(proxied)
    body, _ = _scrape(client)
    assert metric_value(body, "model_monitor_up", model_id="reg") == 1

    getattr(proxy, mode)()
    _log(pg_url, 50, np.random.default_rng(6), T0 + 5)  # traffic goes on behind the fault
    clock.advance(30)
    caplog.set_level(logging.INFO, logger="exporter")
    _, took_first = _scrape(client)
    second, took_second = _scrape(client)
    # Within Prometheus' timeout, both times: the last good numbers, then the failure known.
    assert took_first < 5 and took_second < 5, (took_first, took_second)
    assert metric_value(second, "model_monitor_up", model_id="reg") == 0
    assert metric_value(second, "model_monitor_source_up", source="labels") == 0
    assert metric_value(second, "model_monitor_refresh_errors_total", model_id="reg") >= 1
    assert metric_value(second, "model_window_predictions", model_id="reg") == 200  # last good
    failures = [r for r in caplog.records if "reading predictions failed" in r.getMessage()]
    assert len(failures) == 1  # one line per outage, not one per scrape

    proxy.restore()
    recovery = _recovers_exactly(client, clock, window=250, new=50)
    assert "reading predictions works again" in caplog.text
    record_property(
        "timings",
        [
            f"{mode}: scrapes answered in {took_first:.2f} s and {took_second:.2f} s "
            f"(timeout 5 s), up 0 by the second; exact again {recovery:.1f} s after restore",
        ],
    )


def test_connection_reset_in_the_middle_of_a_read_loses_and_doubles_nothing(
    proxied_pg, pg_url, record_property, caplog
) -> None:
    proxy, proxied = proxied_pg
    seed_regression(make_config(pg_url, models=[REGRESSION_MODEL]), np.random.default_rng(7))
    _service, client, clock = _started(proxied)
    _log(pg_url, 3000, np.random.default_rng(8), T0 + 1)
    clock.advance(60)
    proxy.reset_after(64 * 1024)  # the 3,000 new rows are larger than this
    body, _ = _scrape(client)
    errors = metric_value(body, "model_monitor_refresh_errors_total", model_id="reg")
    took = _recovers_exactly(client, clock, window=3200, new=3000)
    assert "the store dropped the connection" in caplog.text  # the reset did happen
    record_property(
        "timings", [f"reset mid-read: {errors:g} refresh errors; exact after {took:.1f} s"]
    )


def test_slow_store_is_slow_not_down(proxied_pg, pg_url, record_property) -> None:
    proxy, proxied = proxied_pg
    seed_regression(make_config(pg_url, models=[REGRESSION_MODEL]), np.random.default_rng(9))
    _service, client, clock = _started(proxied)
    proxy.slow(0.3)
    _log(pg_url, 100, np.random.default_rng(10), T0 + 1)
    clock.advance(30)
    took = []
    for _ in range(3):
        body, seconds = _scrape(client)
        took.append(seconds)
        assert seconds < 5, seconds
        assert metric_value(body, "model_monitor_up", model_id="reg") == 1
    record_property("timings", [f"slow (0.3 s a chunk): scrapes took {took} s, up stayed 1"])
    proxy.restore()
    _recovers_exactly(client, clock, window=300, new=100)
