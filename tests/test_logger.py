"""PredictionLogger: batched, thread-safe, never drops an accepted event, errors surface."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from exporter.logging.prediction_logger import BufferFullError, LoggerError, PredictionLogger
from tests.conftest import make_config


def _count(url: str, table: str, where: str = "1=1") -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar()
    engine.dispose()
    return int(n)


def test_concurrent_threads_lose_nothing(store_url: str) -> None:
    config = make_config(store_url)
    with PredictionLogger(config, batch_size=50, flush_interval=0.05) as logger:

        def work(t: int) -> None:
            for i in range(200):
                pid = logger.log_prediction(
                    "reg",
                    {"x1": i, "x2": 1.0, "color": "red"},
                    float(i),
                    prediction_id=f"t{t}-{i}",
                    attributes={"tier": "gold"},
                )
                logger.log_actual("reg", pid, float(i))
                logger.log_prediction(
                    "clf", {"x1": 0.5, "plan": "pro"}, 1.0, score=0.9, prediction_id=f"c{t}-{i}"
                )
                logger.log_actual("clf", f"c{t}-{i}", 1.0)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert _count(store_url, "reg_predictions") == 1600
    assert _count(store_url, "reg_labels") == 1600
    assert _count(store_url, "clf_predictions", "outcome = 1 AND outcome_at IS NOT NULL") == 1600


def test_outage_keeps_events_and_surfaces_the_error(proxied_pg, pg_url) -> None:
    proxy, proxied = proxied_pg
    logger = PredictionLogger(make_config(proxied), flush_interval=3600)
    proxy.cut()
    for i in range(10):
        logger.log_prediction(
            "reg", {"x1": 1.0, "x2": 1.0, "color": "red"}, float(i), attributes={"tier": "gold"}
        )
    with pytest.raises(LoggerError, match="kept for retry"):
        logger.flush()
    assert logger.pending == 10
    assert logger.last_error is not None
    proxy.restore()
    logger.close()
    assert logger.pending == 0
    assert _count(pg_url, "reg_predictions") == 10


def test_full_buffer_refuses_instead_of_dropping(tmp_path) -> None:
    logger = PredictionLogger(
        make_config(f"sqlite:///{tmp_path / 's.db'}"),
        batch_size=10_000,
        flush_interval=3600,
        max_buffer=5,
    )
    for _ in range(5):
        logger.log_prediction("reg", {"x1": 1.0}, 1.0)
    with pytest.raises(BufferFullError):
        logger.log_prediction("reg", {"x1": 1.0}, 1.0)
    logger.close()
    assert _count(f"sqlite:///{tmp_path / 's.db'}", "reg_predictions") == 5


def test_invalid_event_is_set_aside_not_blocking(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with PredictionLogger(make_config(url), flush_interval=3600) as logger:
        logger.log_prediction("reg", {"x1": 1.0}, 1.0, prediction_id="dup")
        logger.log_prediction("reg", {"x1": 2.0}, 2.0, prediction_id="dup")
        logger.log_prediction("reg", {"x1": 3.0}, 3.0, prediction_id="other")
    assert _count(url, "reg_predictions") == 2
    assert [e.values["prediction_id"] for e in logger.rejected] == ["dup"]


def test_unknown_model_is_a_clear_error(tmp_path) -> None:
    with (
        PredictionLogger(make_config(f"sqlite:///{tmp_path / 's.db'}")) as logger,
        pytest.raises(ValueError, match="'nope' is not in the config"),
    ):
        logger.log_prediction("nope", {}, 1.0)
