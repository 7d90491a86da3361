"""Reads keep up: a refresh reads until it is caught up, for at most `max_read_seconds`; a
backlog beyond it shows as lag and is taken by the next refreshes, every row counted once."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from exporter.logging.prediction_logger import PredictionLogger
from exporter.service import MonitorService
from tests.conftest import T0, Clock, make_config, regression_rows, seed_regression


def _log(config, clock: Clock, n: int, seed: int) -> None:
    d = regression_rows(np.random.default_rng(seed), n)
    with PredictionLogger(config) as logger:
        for i, ts in enumerate(np.linspace(clock() - 240, clock() - 5, n)):
            logger.log_prediction(
                "reg",
                {"x1": d["x1"][i], "x2": d["x2"][i], "color": str(d["color"][i])},
                float(d["prediction"][i]),
                timestamp=float(ts),
                attributes={"tier": "gold"},
            )


def test_a_backlog_is_taken_over_refreshes_and_shown_as_lag(tmp_path) -> None:
    # One batch per refresh: the read limit is over as soon as the first batch is folded.
    config = make_config(f"sqlite:///{tmp_path / 's.db'}", batch_rows=100, max_read_seconds=1e-6)
    seed_regression(config, np.random.default_rng(1), n_live=0)
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    service.start_warmup().join()
    refresher = service.refreshers["reg"]
    _log(config, clock, 450, seed=2)
    lags, counted = [], []
    for _ in range(6):
        clock.advance(1)
        refresher.refresh()
        lags.append(refresher.status.lag_seconds)
        counted.append(refresher.window.predictions_total)
    assert counted == [100, 200, 300, 400, 450, 450]
    assert all(lag > 0 for lag in lags[:4]) and lags[4:] == [0.0, 0.0]
    assert lags == sorted(lags, reverse=True)  # the backlog gets younger as it is read


def test_without_a_backlog_one_refresh_reads_everything(tmp_path) -> None:
    config = make_config(f"sqlite:///{tmp_path / 's.db'}", batch_rows=100)
    seed_regression(config, np.random.default_rng(1), n_live=0)
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    service.start_warmup().join()
    refresher = service.refreshers["reg"]
    _log(config, clock, 2_000, seed=3)  # twenty batches: no row cap stops the read
    clock.advance(1)
    refresher.refresh()
    assert refresher.window.predictions_total == 2_000
    assert refresher.status.lag_seconds == 0.0


def test_the_exporter_runs_blas_on_the_calling_thread(tmp_path) -> None:
    """The exporter's matrix products are small and its own threads take the other cores, so
    its BLAS runs without a team (docs/performance.md, Ingest: OpenBLAS's two threads waited
    at their barriers beside DLE's worker, 65-150x slower cross products)."""
    with threadpool_limits(limits=2, user_api="blas"):  # restored for the rest of the suite
        blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert blas and all(pool["num_threads"] == 2 for pool in blas)
        MonitorService(make_config(f"sqlite:///{tmp_path / 's.db'}"))
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
