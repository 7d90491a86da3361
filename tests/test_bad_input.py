"""Bad input never crashes a scrape: it is counted, logged once per batch, and nothing is lost."""

from __future__ import annotations

import datetime as dt
import logging
import re

import numpy as np
import pytest
import sqlalchemy as sa

from exporter.app import create_app
from exporter.cli import capture
from exporter.logging.prediction_logger import PredictionLogger
from exporter.service import MonitorService
from tests.conftest import REGRESSION_MODEL, Clock, make_config, regression_rows

T0 = 1_800_000_000.0


def _seed(config, rng: np.random.Generator, n_live: int = 200) -> list[str]:
    """A baseline an hour back and `n_live` clean predictions in the last minutes."""
    ids = []
    with PredictionLogger(config) as logger:
        for start, end, n in ((T0 - 7200, T0 - 3600, 1000), (T0 - 300, T0 - 10, n_live)):
            d = regression_rows(rng, n)
            for i, ts in enumerate(np.sort(rng.uniform(start, end, n))):
                pid = logger.log_prediction(
                    "reg",
                    {"x1": d["x1"][i], "x2": d["x2"][i], "color": str(d["color"][i])},
                    float(d["prediction"][i]),
                    timestamp=float(ts),
                    attributes={"tier": "gold"},
                )
                logger.log_actual("reg", pid, float(d["actual"][i]), timestamp=float(ts) + 1)
                ids.append(pid)
    capture(config, "reg", T0 - 7200, T0 - 3600, command="test")
    return ids


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_malformed_rows_are_counted_not_fatal(tmp_path, caplog) -> None:
    config = make_config(f"sqlite:///{tmp_path / 's.db'}", models=[REGRESSION_MODEL])
    rng = np.random.default_rng(1)
    _seed(config, rng)
    engine = sa.create_engine(config.store.url)
    when = dt.datetime.fromtimestamp(T0 - 10, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")  # in the window
    bad_rows = [
        # (id, x1, x2, color, prediction): what serving code or a manual fix might write
        ("nan-feature", float("nan"), 1.0, "red", 5.0),
        ("null-feature", None, 1.0, "red", 5.0),
        ("text-feature", "abc", 1.0, "red", 5.0),
        ("new-category", 0.1, 1.0, "purple", 5.0),
        ("null-prediction", 0.1, 1.0, "red", None),
        ("text-prediction", 0.1, 1.0, "red", "high"),
    ]
    with engine.begin() as conn:
        for pid, x1, x2, color, prediction in bad_rows:
            conn.execute(
                sa.text(
                    "INSERT INTO reg_predictions "
                    "(prediction_id, created_at, x1, x2, color, prediction, tier) "
                    "VALUES (:pid, :ts, :x1, :x2, :color, :prediction, 'gold')"
                ),
                {
                    "pid": pid,
                    "ts": when,
                    "x1": x1,
                    "x2": x2,
                    "color": color,
                    "prediction": prediction,
                },
            )
        conn.execute(
            sa.text(
                "INSERT INTO reg_labels (prediction_id, actual, labeled_at) "
                "VALUES ('no-such-prediction', 1.0, :ts), ('nan-feature', 'oops', :ts)"
            ),
            {"ts": when},
        )
    service = MonitorService(config, clock=Clock(T0))
    app = create_app(config, service)
    service.start_warmup().join()
    caplog.set_level(logging.WARNING)
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    text = response.text
    m = {"model_id": "reg"}
    assert _metric(text, "model_monitor_up", **m) == 1
    assert _metric(text, "model_monitor_rows_rejected_total", reason="invalid_prediction", **m) == 2
    assert (
        _metric(text, "model_monitor_rows_rejected_total", reason="label_unknown_prediction", **m)
        == 1
    )
    assert _metric(text, "model_monitor_rows_rejected_total", reason="invalid_label", **m) == 1
    window = _metric(text, "model_window_predictions", **m)
    assert window == 200 + 4  # the four rows with bad features stay; their features are counted
    assert _metric(text, "model_feature_missing_ratio", feature="x1", **m) == pytest.approx(
        2 / window
    )
    assert _metric(text, "model_feature_type_error_ratio", feature="x1", **m) == pytest.approx(
        1 / window
    )
    present = window  # color is present in every row
    assert _metric(text, "model_feature_new_category_ratio", feature="color", **m) == pytest.approx(
        1 / present
    )
    # One log line per reason and batch, not one per row.
    rejected_lines = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected_lines) <= 3


def test_missing_label_table_keeps_predictions_flowing(tmp_path) -> None:
    config = make_config(f"sqlite:///{tmp_path / 's.db'}", models=[REGRESSION_MODEL])
    _seed(config, np.random.default_rng(2))
    engine = sa.create_engine(config.store.url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE reg_labels"))
    service = MonitorService(config, clock=Clock(T0))
    service.refresh_all()
    refresher = service.refreshers["reg"]
    assert refresher.status.up is True
    assert refresher.status.source_up == {"predictions": True, "labels": False}
    assert refresher.report.window_predictions == 200


def test_store_outage_serves_last_numbers_and_recovers_without_loss(proxied_pg, pg_url) -> None:
    proxy, proxied = proxied_pg
    config = make_config(proxied, models=[REGRESSION_MODEL])
    rng = np.random.default_rng(3)
    _seed(config, rng)
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    app = create_app(config, service)
    service.start_warmup().join()
    client = app.test_client()
    before = client.get("/metrics").text
    assert _metric(before, "model_window_predictions", model_id="reg") == 200

    proxy.cut()
    # Traffic keeps arriving in the store while the exporter cannot reach it.
    direct = make_config(pg_url, models=[REGRESSION_MODEL])
    with PredictionLogger(direct) as logger:
        d = regression_rows(rng, 50)
        for i in range(50):
            logger.log_prediction(
                "reg",
                {"x1": d["x1"][i], "x2": d["x2"][i], "color": "red"},
                float(d["prediction"][i]),
                timestamp=T0 + 5 + i * 0.1,
                attributes={"tier": "gold"},
            )
    clock.advance(30)
    during = client.get("/metrics")
    assert during.status_code == 200
    assert _metric(during.text, "model_monitor_up", model_id="reg") == 0
    assert _metric(during.text, "model_window_predictions", model_id="reg") == 200  # last good
    assert _metric(during.text, "model_monitor_refresh_errors_total", model_id="reg") >= 1
    stale_at = _metric(during.text, "model_monitor_last_refresh_timestamp_seconds", model_id="reg")
    assert stale_at == T0

    proxy.restore()
    clock.advance(30)
    after = client.get("/metrics").text
    assert _metric(after, "model_monitor_up", model_id="reg") == 1
    assert _metric(after, "model_window_predictions", model_id="reg") == 250  # none lost or doubled
    assert _metric(after, "model_predictions_total", model_id="reg") == 50


def test_exporter_started_during_an_outage_comes_up_when_the_store_does(proxied_pg) -> None:
    proxy, proxied = proxied_pg
    config = make_config(proxied, models=[REGRESSION_MODEL])
    _seed(config, np.random.default_rng(11))
    proxy.cut()
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)  # constructing it must not need the store
    app = create_app(config, service)
    service.start_warmup().join()
    down = app.test_client().get("/metrics")
    assert down.status_code == 200
    assert _metric(down.text, "model_monitor_up", model_id="reg") == 0
    assert _metric(down.text, "model_window_predictions", model_id="reg") is None  # nothing yet
    proxy.restore()
    clock.advance(5)
    up = app.test_client().get("/metrics").text
    assert _metric(up, "model_monitor_up", model_id="reg") == 1
    assert _metric(up, "model_window_predictions", model_id="reg") == 200
