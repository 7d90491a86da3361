"""Bad input never crashes a scrape: it is counted, logged once per batch, and nothing is lost."""

from __future__ import annotations

import datetime as dt
import logging
import math

import numpy as np
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import create_app
from exporter.cli import capture
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


def test_malformed_rows_are_counted_not_fatal(tmp_path, caplog) -> None:
    config = make_config(f"sqlite:///{tmp_path / 's.db'}", models=[REGRESSION_MODEL])
    rng = np.random.default_rng(1)
    seed_regression(config, rng)
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
    assert metric_value(text, "model_monitor_up", **m) == 1
    assert (
        metric_value(text, "model_monitor_rows_rejected_total", reason="invalid_prediction", **m)
        == 2
    )
    assert (
        metric_value(
            text, "model_monitor_rows_rejected_total", reason="label_unknown_prediction", **m
        )
        == 1
    )
    assert metric_value(text, "model_monitor_rows_rejected_total", reason="invalid_label", **m) == 1
    window = metric_value(text, "model_window_predictions", **m)
    assert window == 200 + 4  # the four rows with bad features stay; their features are counted
    assert metric_value(text, "model_feature_missing_ratio", feature="x1", **m) == pytest.approx(
        2 / window
    )
    assert metric_value(text, "model_feature_type_error_ratio", feature="x1", **m) == pytest.approx(
        1 / window
    )
    present = window  # color is present in every row
    assert metric_value(
        text, "model_feature_new_category_ratio", feature="color", **m
    ) == pytest.approx(1 / present)
    # One log line per reason and batch, not one per row.
    rejected_lines = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected_lines) <= 3


def test_missing_label_table_keeps_predictions_flowing(tmp_path) -> None:
    config = make_config(f"sqlite:///{tmp_path / 's.db'}", models=[REGRESSION_MODEL])
    seed_regression(config, np.random.default_rng(2))
    engine = sa.create_engine(config.store.url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE reg_labels"))
    service = MonitorService(config, clock=Clock(T0))
    service.refresh_all()
    refresher = service.refreshers["reg"]
    assert refresher.status.up is True
    assert refresher.status.source_up == {"predictions": True, "labels": False}
    assert refresher.report.window_predictions == 200


@pytest.mark.parametrize("scale", [1e100, 1e200])
def test_huge_finite_values_give_true_numbers_or_none(store_url, scale) -> None:
    """Finite values whose squares overflow a float (1e200) leave the sums of squares unknown:
    the numbers computed from them are absent, never +Inf, and every row is still counted.
    At 1e100 the squares fit and the RMSE is numpy's over the same rows."""
    config = make_config(store_url, models=[REGRESSION_MODEL])
    seed_regression(config, np.random.default_rng(3), n_live=0, tiers=("gold", "silver"))
    n = 300
    prediction = np.where(np.arange(n) % 3 == 0, scale, 1.5)
    actual = np.where(np.arange(n) % 3 == 0, -scale, 1.0)
    with PredictionLogger(config) as logger:
        for i in range(n):
            ts = T0 - 200 + i * 0.5
            x = {"x1": prediction[i], "x2": -prediction[i], "color": "red"}
            tier = {"tier": ("gold", "silver")[i % 2]}
            pid = logger.log_prediction("reg", x, prediction[i], timestamp=ts, attributes=tier)
            logger.log_actual("reg", pid, actual[i], timestamp=ts + 1)
    service = MonitorService(config, clock=Clock(T0))
    client = create_app(config, service, warmup=False).test_client()
    service.start_warmup().join()
    body = client.get("/metrics").text
    service.engine.dispose()

    infinite = [
        f"{s.name}{s.labels} {s.value}"
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if not math.isfinite(s.value)
    ]
    assert infinite == []
    assert metric_value(body, "model_window_predictions", model_id="reg") == n
    assert metric_value(body, "model_window_labeled_predictions", model_id="reg") == n
    with np.errstate(over="ignore"):
        rmse = float(np.sqrt(np.mean((prediction - actual) ** 2)))
    shown = metric_value(body, "model_performance_rmse", model_id="reg", segment="all")
    if math.isfinite(rmse):
        assert shown == pytest.approx(rmse, rel=1e-9)
    else:
        assert shown is None


def test_a_baseline_whose_squares_overflow_is_refused_by_name(tmp_path) -> None:
    """A baseline of values near 1e200 would hold an infinite variance and loss models trained
    on infinite targets: capture refuses it, naming the column and the fix, and stores nothing.
    """
    config = make_config(f"sqlite:///{tmp_path / 's.db'}", models=[REGRESSION_MODEL])
    with PredictionLogger(config) as logger:
        for i in range(300):
            x1 = 1e200 if i % 3 == 0 else float(i % 7)
            x = {"x1": x1, "x2": 1.0, "color": "red"}
            pid = logger.log_prediction("reg", x, 1.0 + i % 5, timestamp=T0 - 3000 + i)
            logger.log_actual("reg", pid, 2.0, timestamp=T0 - 2999 + i)
    with pytest.raises(ValueError, match=r"the squares of x1 overflow .* fix: ") as error:
        capture(config, "reg", T0 - 3600, T0, command="test")
    assert "\n" not in str(error.value)
    engine = sa.create_engine(config.store.url)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM model_monitor_baselines")).scalar()
    engine.dispose()
    assert stored == 0


def test_store_outage_serves_last_numbers_and_recovers_without_loss(proxied_pg, pg_url) -> None:
    proxy, proxied = proxied_pg
    config = make_config(proxied, models=[REGRESSION_MODEL])
    rng = np.random.default_rng(3)
    seed_regression(config, rng)
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    app = create_app(config, service)
    service.start_warmup().join()
    client = app.test_client()
    before = client.get("/metrics").text
    assert metric_value(before, "model_window_predictions", model_id="reg") == 200

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
    assert metric_value(during.text, "model_monitor_up", model_id="reg") == 0
    assert metric_value(during.text, "model_window_predictions", model_id="reg") == 200  # last good
    assert metric_value(during.text, "model_monitor_refresh_errors_total", model_id="reg") >= 1
    stale_at = metric_value(
        during.text, "model_monitor_last_refresh_timestamp_seconds", model_id="reg"
    )
    assert stale_at == T0

    proxy.restore()
    clock.advance(30)
    after = client.get("/metrics").text
    assert metric_value(after, "model_monitor_up", model_id="reg") == 1
    assert (
        metric_value(after, "model_window_predictions", model_id="reg") == 250
    )  # none lost or doubled
    assert metric_value(after, "model_predictions_total", model_id="reg") == 50


def test_exporter_started_during_an_outage_comes_up_when_the_store_does(proxied_pg) -> None:
    proxy, proxied = proxied_pg
    config = make_config(proxied, models=[REGRESSION_MODEL])
    seed_regression(config, np.random.default_rng(11))
    proxy.cut()
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)  # constructing it must not need the store
    client = create_app(config, service).test_client()  # starts the warm-up, which retries
    wait_for(lambda: service.refreshers["reg"].status.up is False, 30, "the first failed read")
    assert client.get("/-/ready").status_code == 503  # the store never answered: not ready
    down = client.get("/metrics")
    assert down.status_code == 200
    assert metric_value(down.text, "model_monitor_up", model_id="reg") == 0
    assert metric_value(down.text, "model_monitor_rebuilding", model_id="reg") == 1
    assert (
        metric_value(down.text, "model_window_predictions", model_id="reg") is None
    )  # nothing yet
    proxy.restore()

    def ready() -> bool:
        clock.advance(1)  # the warm-up's retries are refreshes: they need time to pass
        return client.get("/-/ready").status_code == 200

    wait_for(ready, 60, "readiness after recovery")
    up = client.get("/metrics").text
    assert metric_value(up, "model_monitor_up", model_id="reg") == 1
    assert metric_value(up, "model_monitor_rebuilding", model_id="reg") == 0
    assert metric_value(up, "model_window_predictions", model_id="reg") == 200
