"""MetricsStore: metric history and baselines in the SQL store (the seed's storage API).

The exporter writes each model's summary here every `exporter.history_interval`, so history
exists even without Prometheus; `PerformanceTracker` and the HTML report read it back.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from exporter.config import Config, ConfigError, load_config
from exporter.storage.audit import record
from exporter.storage.engine import create_engine
from exporter.storage.prediction_store import (
    create_project_tables,
    create_schema,
    metadata_tables,
)

BASELINES, _, METRICS = metadata_tables(sa.MetaData())
MANUAL = ":manual"  # baselines stored through this API, kept apart from the exporter's own


def _naive_utc(value: dt.datetime | str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC).replace(tzinfo=None)
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime().replace(tzinfo=None)


class MetricsStore:
    def __init__(
        self, engine: Engine | None = None, config: Config | None = None, create_tables: bool = True
    ) -> None:
        """With `create_tables=False` nothing touches the database until the first call."""
        if engine is None:
            try:
                config = config or load_config()
            except ConfigError:
                config = None
            url = config.store.url if config is not None else "sqlite:///var/model-monitor.db"
            engine = create_engine(url)
            if config is not None:
                create_schema(engine, config)
        self.engine = engine
        if create_tables:
            create_project_tables(engine)

    def store_metrics(
        self,
        model_id: str,
        metrics: Mapping[str, float],
        timestamp: dt.datetime | str | None = None,
        segment: str = "all",
    ) -> int:
        """Store one value per metric (non-finite values are skipped); returns how many."""
        at = _naive_utc(timestamp)
        rows = [
            {"model_id": model_id, "at": at, "segment": segment, "metric": k, "value": float(v)}
            for k, v in metrics.items()
            if v is not None and math.isfinite(float(v))
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(METRICS), rows)
        return len(rows)

    def get_metrics(
        self,
        model_id: str,
        start_date: dt.datetime | str | None = None,
        end_date: dt.datetime | str | None = None,
        metrics: Iterable[str] | None = None,
        segment: str | None = "all",
    ) -> pd.DataFrame:
        """History as a frame with columns timestamp, segment, metric, value (oldest first).

        A bare date as `end_date` includes that whole day.
        """
        stmt = sa.select(
            METRICS.c.at.label("timestamp"), METRICS.c.segment, METRICS.c.metric, METRICS.c.value
        ).where(METRICS.c.model_id == model_id)
        if start_date is not None:
            stmt = stmt.where(METRICS.c.at >= _naive_utc(start_date))
        if end_date is not None:
            end = _naive_utc(end_date)
            if isinstance(end_date, str) and len(end_date) == 10:
                end += dt.timedelta(days=1)
                stmt = stmt.where(METRICS.c.at < end)
            else:
                stmt = stmt.where(METRICS.c.at <= end)
        if metrics is not None:
            stmt = stmt.where(METRICS.c.metric.in_(list(metrics)))
        if segment is not None:
            stmt = stmt.where(METRICS.c.segment == segment)
        with self.engine.connect() as conn:
            result = conn.execute(stmt.order_by(METRICS.c.at, METRICS.c.id))
            return pd.DataFrame(result.all(), columns=["timestamp", "segment", "metric", "value"])

    def store_baseline(
        self,
        model_id: str,
        feature_distributions: Mapping[str, Any],
        prediction_distribution: Any = None,
        performance_metrics: Mapping[str, float] | None = None,
    ) -> int:
        """Keep a caller-described baseline (free-form JSON) as a new version; returns it.

        The exporter's own baselines are captured with `model-monitor baseline`; this is the
        seed's API for a notebook that wants its reference stored beside them.
        """
        content = {
            "feature_distributions": _jsonable(feature_distributions),
            "prediction_distribution": _jsonable(prediction_distribution),
            "performance_metrics": _jsonable(performance_metrics or {}),
        }
        with self.engine.begin() as conn:
            version = conn.execute(
                sa.insert(BASELINES).values(
                    model_id=model_id + MANUAL,
                    created_at=_naive_utc(None),
                    source="MetricsStore.store_baseline",
                    command="python api",
                    content=content,
                )
            ).inserted_primary_key[0]
        record(self.engine, model_id, "baseline_stored", {"version": int(version)})
        return int(version)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
