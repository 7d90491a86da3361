"""PredictionLogger: what serving code calls to log predictions and, later, their actuals.

Events are buffered and written in batches by a background thread (and on `flush()`/`close()`
and at interpreter exit). An accepted event is never dropped: a failed write keeps the whole
batch buffered and retries it; the error surfaces from `flush()` and `last_error`. When the
buffer is full, `log_*` raises `BufferFullError` instead of accepting an event it could lose.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from exporter.config import Config, ModelConfig
from exporter.storage.engine import create_engine
from exporter.storage.prediction_store import ModelSource, Stream, create_schema
from exporter.storage.time_format import TimeFormat

log = logging.getLogger(__name__)


class BufferFullError(RuntimeError):
    """The store has not kept up; the event was not accepted."""


class LoggerError(RuntimeError):
    """Writing buffered events failed; they are kept and retried."""


@dataclass(frozen=True)
class _Event:
    model_id: str
    kind: str  # "prediction" or "label"
    values: dict[str, Any]  # by the mapped column names


class PredictionLogger:
    def __init__(
        self,
        config: Config,
        engine: Engine | None = None,
        *,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_buffer: int = 100_000,
        create_tables: bool = True,
    ) -> None:
        self.config = config
        self.engine = engine or create_engine(config.store.url, config.store.timeouts)
        if create_tables:
            create_schema(self.engine, config)
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self.last_error: Exception | None = None
        self.rejected: list[_Event] = []
        self._models = {m.model_id: m for m in config.models}
        self._tables: dict[str, sa.Table] = {}
        # Reflect tables and detect how their time columns store time now, so that logging never
        # needs the store; an empty column gets the format the exporter then detects from it.
        self._formats: dict[tuple[str, Stream], TimeFormat] = {}
        for model in config.models:
            source = ModelSource(self.engine, model)
            self._table(model.source.table)
            self._formats[model.model_id, "predictions"] = source.time_format("predictions")
            labels = model.source.labels
            if labels is not None and labels.table is not None:
                self._table(labels.table)
            if labels is not None and labels.arrival_column is not None:
                self._formats[model.model_id, "labels"] = source.time_format("labels")
        self._pending: list[_Event] = []
        self._lock = threading.Lock()  # guards _pending
        self._flush_lock = threading.Lock()  # one writer at a time, in order
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, args=(flush_interval,), name="prediction-logger", daemon=True
        )
        self._thread.start()
        atexit.register(self._at_exit)

    def _model(self, model_id: str) -> ModelConfig:
        try:
            return self._models[model_id]
        except KeyError:
            raise ValueError(f"model {model_id!r} is not in the config") from None

    def _table(self, name: str) -> sa.Table:
        if name not in self._tables:
            schema, _, bare = name.rpartition(".")
            table = sa.Table(bare, sa.MetaData(), schema=schema or None, autoload_with=self.engine)
            if self.engine.dialect.name == "sqlite":
                # A SQLite DATETIME is text in whatever layout its rows use; the detected
                # format renders it, so SQLAlchemy must pass the text through unchanged.
                for column in table.columns:
                    if isinstance(column.type, sa.DateTime):
                        column.type = sa.String()
            self._tables[name] = table
        return self._tables[name]

    def _time(self, model_id: str, stream: Stream, timestamp: float | None) -> Any:
        return self._formats[model_id, stream].native(
            time.time() if timestamp is None else timestamp
        )

    def log_prediction(
        self,
        model_id: str,
        features: Mapping[str, Any],
        prediction: float,
        *,
        prediction_id: str | None = None,
        score: float | None = None,
        latency_seconds: float | None = None,
        timestamp: float | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> str:
        """Queue one prediction; `attributes` carries segment and protected-attribute columns.

        Returns the prediction id (generated if not given), which `log_actual` takes later.
        """
        model = self._model(model_id)
        src = model.source
        prediction_id = prediction_id or uuid.uuid4().hex
        values: dict[str, Any] = {
            src.id_column: prediction_id,
            src.timestamp_column: self._time(model_id, "predictions", timestamp),
            src.prediction_column: prediction,
        }
        if src.model_column:
            values[src.model_column] = src.model_value or model_id
        if src.score_column:
            values[src.score_column] = score
        if src.latency_column and latency_seconds is not None:
            factor = 1000.0 if src.latency_unit == "milliseconds" else 1.0
            values[src.latency_column] = latency_seconds * factor
        for name in model.features:
            values[model.feature_column(name)] = features.get(name)
        for column, value in (attributes or {}).items():
            values[column] = value
        self._put(_Event(model_id, "prediction", values))
        return prediction_id

    def log_actual(
        self, model_id: str, prediction_id: str, actual: float, timestamp: float | None = None
    ) -> None:
        """Queue the actual outcome of an earlier prediction (it may arrive much later)."""
        labels = self._model(model_id).source.labels
        if labels is None:
            raise ValueError(f"model {model_id!r} has no `source.labels` in the config")
        values = {"prediction_id": prediction_id, labels.column: actual}
        if labels.arrival_column:
            values[labels.arrival_column] = self._time(model_id, "labels", timestamp)
        self._put(_Event(model_id, "label", values))

    def _put(self, event: _Event) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the logger is closed")
            if len(self._pending) >= self.max_buffer:
                raise BufferFullError(
                    f"{len(self._pending)} events wait for the store ({self.last_error}); "
                    "not accepted"
                )
            self._pending.append(event)
            if len(self._pending) >= self.batch_size:
                self._wake.set()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> None:
        """Write everything queued so far; raises LoggerError (events kept) if the store fails."""
        with self._flush_lock:
            with self._lock:
                batch = list(self._pending)
            if not batch:
                return
            try:
                try:
                    self._write(batch)
                except (sa.exc.IntegrityError, sa.exc.DataError):
                    self._write_one_by_one(batch)
            except sa.exc.SQLAlchemyError as exc:
                self.last_error = exc
                raise LoggerError(
                    f"writing {len(batch)} events failed; kept for retry: {exc}"
                ) from exc
            self.last_error = None
            with self._lock:
                del self._pending[: len(batch)]  # only this method removes, and only from the front

    def _write_one_by_one(self, batch: list[_Event]) -> None:
        """Set aside the events the store refuses as invalid (e.g. a duplicate id), keep the rest.

        Set-aside events stay in `rejected` for the caller to inspect; retrying them would block
        every later event behind them.
        """
        for event in batch:
            try:
                self._write([event])
            except (sa.exc.IntegrityError, sa.exc.DataError) as exc:
                self.rejected.append(event)
                log.error(
                    "prediction logger: the store refused an event of model %s: %s",
                    event.model_id,
                    str(exc).splitlines()[0],
                )

    def _write(self, batch: list[_Event]) -> None:
        """Predictions first, then labels, in one transaction: a label can follow its prediction."""
        with self.engine.begin() as conn:
            for kind in ("prediction", "label"):
                by_model: dict[str, list[dict[str, Any]]] = {}
                for event in batch:
                    if event.kind == kind:
                        by_model.setdefault(event.model_id, []).append(event.values)
                for model_id, rows in by_model.items():
                    self._write_rows(conn, self._models[model_id], kind, rows)

    def _write_rows(
        self, conn: sa.Connection, model: ModelConfig, kind: str, rows: list[dict[str, Any]]
    ) -> None:
        src = model.source
        if kind == "prediction":
            table = self._table(src.table)
            columns = set(table.c.keys())
            conn.execute(
                sa.insert(table), [{k: v for k, v in r.items() if k in columns} for r in rows]
            )
            return
        labels = src.labels
        assert labels is not None
        if labels.table is not None:
            table = self._table(labels.table)
            conn.execute(
                sa.insert(table),
                [
                    {labels.prediction_id_column: r.pop("prediction_id"), **r}
                    for r in map(dict, rows)
                ],
            )
            return
        table = self._table(src.table)
        values = {c: sa.bindparam(f"v_{c}") for c in rows[0] if c != "prediction_id"}
        stmt = (
            sa.update(table).where(table.c[src.id_column] == sa.bindparam("v_pid")).values(values)
        )
        conn.execute(
            stmt,
            [
                {
                    "v_pid": r["prediction_id"],
                    **{f"v_{c}": v for c, v in r.items() if c != "prediction_id"},
                }
                for r in rows
            ],
        )

    def _run(self, interval: float) -> None:
        while not self._closed:
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self.flush()
            except LoggerError as exc:
                log.warning("%s", exc)
                time.sleep(min(interval, 1.0))

    def close(self) -> None:
        """Stop the background writer and write what is left (raises if the store refuses)."""
        with self._lock:
            self._closed = True
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()
        atexit.unregister(self._at_exit)

    def _at_exit(self) -> None:
        try:
            self.close()
        except LoggerError as exc:
            log.error(
                "prediction logger: %d events could not be written at exit: %s", self.pending, exc
            )

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
