"""Shared fixtures: real SQLite and PostgreSQL stores, small configs, a controllable clock."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest
import sqlalchemy as sa

from exporter.cli import capture
from exporter.config import Config, parse_config
from exporter.logging.prediction_logger import PredictionLogger
from exporter.storage.prediction_store import ID, TS, Cursor, ModelSource, Span
from tests.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get(
    "MODEL_MONITOR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI") == "true"


def need(condition: bool, reason: str) -> None:
    """Skip when a server or binary is missing, except under CI=true where that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must run this test, but {reason}")
    pytest.skip(reason)


def binary(name: str) -> str:
    path = shutil.which(name)
    need(
        path is not None,
        f"`{name}` is not installed (apt-get install prometheus prometheus-alertmanager)",
    )
    return str(path)


def _postgres_available() -> bool:
    engine = sa.create_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()  # its pooled connection would be closed by the GC, with a warning


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    need(_postgres_available(), f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    return PG_ADMIN_URL


def postgres_schema_url(admin_url: str, schema: str) -> str:
    return f"{admin_url}?options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url(postgres_admin_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    schema = f"mm_test_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(postgres_admin_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield postgres_schema_url(postgres_admin_url, schema)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def proxied_pg(pg_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A TCP proxy in front of the test PostgreSQL, and a URL through it: cut it for an outage."""
    parts = urlsplit(pg_url)
    proxy = TcpProxy(parts.hostname, parts.port)
    yield proxy, urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    proxy.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# The first metric families every model shows (issue 2), and those of each kind of model.
FIRST_FAMILIES = [
    "model_feature_psi",
    "model_feature_drift_detected",
    "model_prediction_psi",
    "model_prediction_latency_seconds_bucket",
    "model_predictions_total",
    "model_labels_total",
    "model_window_predictions",
    "model_label_coverage_ratio",
    "model_monitor_up",
    "model_monitor_refresh_duration_seconds",
    "model_monitor_last_refresh_timestamp_seconds",
    "model_baseline_info",
]
FIRST_PERFORMANCE = {
    "regression": ["model_performance_rmse", "model_performance_mae", "model_performance_r2"],
    "binary_classification": ["model_performance_roc_auc", "model_performance_accuracy"],
}

REGRESSION_MODEL: dict[str, Any] = {
    "model_id": "reg",
    "kind": "regression",
    "source": {
        "table": "reg_predictions",
        "latency_column": "latency_seconds",
        "labels": {"table": "reg_labels", "column": "actual", "arrival_column": "labeled_at"},
    },
    "features": {"x1": "numeric", "x2": "numeric", "color": "categorical"},
    "segments": [{"column": "tier", "values": ["gold", "silver"]}],
    "drift_window": {"length": "10m", "bucket": "1m"},
    "performance_window": {"length": "20m", "bucket": "1m"},
    "min_samples": 50,
    "min_labeled": 10,
}

CLASSIFIER_MODEL: dict[str, Any] = {
    "model_id": "clf",
    "kind": "binary_classification",
    "source": {
        "table": "clf_predictions",
        "score_column": "score",
        "labels": {"column": "outcome", "arrival_column": "outcome_at"},
    },
    "features": {"x1": "numeric", "plan": "categorical"},
    "drift_window": {"length": "10m", "bucket": "1m"},
    "performance_window": {"length": "20m", "bucket": "1m"},
    "min_samples": 50,
    "min_labeled": 10,
}


def make_config(url: str, models: list[dict[str, Any]] | None = None, **exporter: Any) -> Config:
    raw = {
        "store": {"url": url},
        "exporter": {"min_refresh_interval": 0.001, "read_lag": 1, **exporter},
        "models": models or [REGRESSION_MODEL, CLASSIFIER_MODEL],
    }
    return parse_config(raw)


def regression_rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    x1 = rng.normal(shift, 1.0, n)
    x2 = rng.exponential(2.0, n)
    color = rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2])
    actual = 3 * x1 + x2 + rng.normal(0, 1, n)
    return {
        "x1": x1,
        "x2": x2,
        "color": color,
        "actual": actual,
        "prediction": actual + rng.normal(0.2, 0.8, n),
        "tier": rng.choice(["gold", "silver", "bronze"], n),
        "latency": rng.exponential(0.05, n),
    }


def classifier_rows(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    x1 = rng.normal(0, 1, n)
    plan = rng.choice(["free", "pro"], n)
    p = 1 / (1 + np.exp(-(x1 + (plan == "pro"))))
    outcome = (rng.random(n) < p).astype(float)
    score = np.clip(p + rng.normal(0, 0.1, n), 0, 1)
    return {"x1": x1, "plan": plan, "score": score, "outcome": outcome}


T0 = 1_800_000_000.0  # a whole minute: the fixed 'now' of tests on a Clock


def seed_regression(
    config, rng: np.random.Generator, n_live: int = 200, tiers: tuple[str, ...] = ("gold",)
) -> list[str]:
    """Through the PredictionLogger: a baseline an hour back, `n_live` clean predictions in the
    last minutes with their labels a second later, and a baseline captured; the rows' `tier`
    attribute goes round `tiers`."""
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
                    attributes={"tier": tiers[i % len(tiers)]},
                )
                logger.log_actual("reg", pid, float(d["actual"][i]), timestamp=float(ts) + 1)
                ids.append(pid)
    capture(config, "reg", T0 - 7200, T0 - 3600, command="test")
    return ids


def log_regression(
    config: Config,
    d: dict[str, np.ndarray],
    timestamp: float,
    attributes: dict[str, str] | None = None,
) -> None:
    """The predictions of `regression_rows` output `d` through the PredictionLogger, all at
    `timestamp`, without labels."""
    with PredictionLogger(config) as logger:
        for i in range(len(d["prediction"])):
            logger.log_prediction(
                "reg",
                {"x1": d["x1"][i], "x2": d["x2"][i], "color": str(d["color"][i])},
                float(d["prediction"][i]),
                timestamp=timestamp,
                attributes=attributes,
            )


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample of `name` with these labels in an exposition, or None."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the timings tests recorded (`record_property("timings", [...])`), e.g. alerting e2e."""
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get(
        "failed", []
    ):
        for name, value in report.user_properties:
            if name == "timings":
                terminalreporter.write_sep("-", f"timings: {report.nodeid}")
                for line in value:
                    terminalreporter.write_line(line)


def keyset_read_plan(source: ModelSource, table: str) -> str:
    """The database's plan for a read of `source`'s predictions after a cursor (EXPLAIN on
    PostgreSQL after ANALYZE, with sequential scans off as the exporter's sessions run)."""
    first = source.read_predictions(Span(T0 - 7200, T0), 10)
    after = Cursor(first.iloc[-1][TS], first.iloc[-1][ID])
    sql = source.predictions_query(Span(T0 - 7200, T0, after=after), 100).compile(
        source.engine, compile_kwargs={"literal_binds": True}
    )
    with source.engine.connect() as conn:
        if source.engine.dialect.name == "sqlite":
            return " | ".join(r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
        conn.exec_driver_sql(f"ANALYZE {table}")
        conn.exec_driver_sql("SET enable_seqscan = off")
        return "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))
