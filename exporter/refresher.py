"""Keeps one model's window in step with the store: the imperative shell around the pure core.

Each refresh reads only what arrived after the watermarks (predictions by prediction time,
labels by arrival), in bounded batches, folds it into the window and recomputes the report. A
failed read leaves window, watermarks and report exactly as they were, so the last good numbers
stay served (marked stale by `model_monitor_up` and the refresh timestamp) and the next refresh
resumes where the last good one stopped: nothing is lost or counted twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from exporter.baseline import Baseline
from exporter.config import ExporterConfig, ModelConfig
from exporter.monitors import health
from exporter.monitors.retraining_scheduler import (
    DECISION_ACTION,
    RETRAINED_ACTION,
    Evidence,
    RetrainingDecision,
    decide,
)
from exporter.report import ModelReport, build_report
from exporter.rows import Rejections, parse_rows
from exporter.storage import audit
from exporter.storage.baseline_store import BaselineStore
from exporter.storage.metrics_store import MetricsStore
from exporter.storage.prediction_store import (
    ARRIVAL,
    ID,
    TS,
    Cursor,
    ModelSource,
    create_project_tables,
)
from exporter.window import ModelWindow

log = logging.getLogger(__name__)


@dataclass
class _Stream:
    """Watermark of one ordered stream (predictions or labels)."""

    start: float  # where a rebuild starts reading
    cursor: Cursor | None = None
    last_time: float | None = None  # epoch of the last row read
    rebuilding: bool = True  # until caught up once: no cap, counters untouched
    lag: float = 0.0  # seconds of backlog left by a capped refresh


@dataclass
class RefreshStatus:
    """What the exporter says about its own health for one model."""

    up: bool = False
    source_up: dict[str, bool] = field(default_factory=dict)
    last_success: float | None = None
    last_duration: float = 0.0
    lag_seconds: float = 0.0
    errors_total: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class ModelRefresher:
    def __init__(
        self,
        model: ModelConfig,
        settings: ExporterConfig,
        engine: Engine,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        self.settings = settings
        self.clock = clock
        self.source = ModelSource(engine, model)
        self.baselines = BaselineStore(engine)
        self.status = RefreshStatus(
            source_up={"predictions": False}
            | ({"labels": False} if model.source.labels is not None else {})
        )
        self.baseline: Baseline | None = None
        self.window: ModelWindow | None = None
        self.report: ModelReport | None = None
        self.findings: list[health.Finding] = []
        self.decision: RetrainingDecision | None = None
        self.engine = engine
        self.history = MetricsStore(engine, create_tables=False)
        self._tables_ready = False
        self._last_decision: tuple[bool, str] | None = None
        self._last_history: float | None = None
        self._lock = threading.Lock()
        self._last_attempt: float | None = None
        self._predictions = _Stream(0.0)
        self._labels = _Stream(0.0)
        self._logged_errors: set[str] = set()

    @property
    def labels_by_arrival(self) -> bool:
        labels = self.model.source.labels
        return labels is not None and labels.arrival_column is not None

    def refresh(self, wait: float = 10.0) -> None:
        """Bring the window up to date; concurrent callers share one refresh.

        A caller that finds a refresh running waits up to `wait` seconds for it and then uses its
        result rather than starting another, so rows are read once.
        """
        if not self._lock.acquire(timeout=wait):
            return
        try:
            started = self.clock()
            if (
                self._last_attempt is not None
                and started - self._last_attempt < self.settings.min_refresh_interval
            ):
                return
            self._last_attempt = started
            t0 = time.perf_counter()
            try:
                self._refresh(started)
            except Exception as exc:  # a bug must not take /metrics down with it
                log.exception("model %s: refresh failed unexpectedly", self.model.model_id)
                self._failed("predictions", exc)
            self.status.last_duration = time.perf_counter() - t0
        finally:
            self._lock.release()

    def _refresh(self, now: float) -> None:
        try:
            self._ensure_window(now)
            assert self.window is not None
            self._read_predictions(now)
        except SQLAlchemyError as exc:
            self._failed("predictions", exc)
            return
        self._recovered("predictions")
        if self.labels_by_arrival:
            try:
                self._read_labels(now)
            except SQLAlchemyError as exc:
                self._failed("labels", exc)
            else:
                self._recovered("labels")
        elif self.model.source.labels is not None:
            self.status.source_up["labels"] = True
        self.report = build_report(self.model, self.baseline, self.window.totals(now))
        self.findings = health.findings(self.model, self.report)
        try:
            last_retrained = audit.last_action(self.engine, self.model.model_id, RETRAINED_ACTION)
        except SQLAlchemyError:
            last_retrained = None  # no cooldown known; the decision itself still stands
        self.decision = decide(self.model, Evidence.from_report(self.report), last_retrained, now)
        try:
            self._record(now)
            self._logged_errors.discard("history")
        except SQLAlchemyError as exc:  # history and audit are extras: never mark the model down
            self._log_once("history", "writing the audit trail or metrics history failed", exc)
        self.status.up = True
        self.status.last_success = now

    def _record(self, now: float) -> None:
        """Audit a changed retraining decision; write the summary to history at its cadence."""
        assert self.report is not None and self.decision is not None
        key = (self.decision.should_retrain, self.decision.urgency)
        if key != self._last_decision:
            audit.record(
                self.engine, self.model.model_id, DECISION_ACTION, self.decision.to_json(), at=now
            )
            self._last_decision = key
        if (
            self._last_history is not None
            and now - self._last_history < self.settings.history_interval
        ):
            return
        self._last_history = now
        at = dt.datetime.fromtimestamp(now, dt.UTC)
        for segment, values in self.report.performance.items():
            self.history.store_metrics(self.model.model_id, values, at, segment=segment)
        summary = {
            "window_predictions": self.report.window_predictions,
            "label_coverage": self.report.label_coverage,
            "drifted_features": len(self.report.drifted_features),
            "health_status": health.STATUSES.index(health.status_of(self.findings)),
            "retraining_urgency": self.decision.urgency_level,
            "refresh_duration_seconds": self.status.last_duration,
            **{
                f"psi:{n}": f.drift.psi
                for n, f in self.report.features.items()
                if f.drift is not None
            },
            **{
                f"parity_ratio:{a}": f.demographic_parity_ratio
                if f.demographic_parity_ratio is not None
                else f.mean_prediction_ratio
                for a, f in self.report.fairness.items()
            },
        }
        if self.report.prediction_drift is not None:
            summary["prediction_psi"] = self.report.prediction_drift.psi
        self.history.store_metrics(self.model.model_id, summary, at, segment="model")

    def _ensure_window(self, now: float) -> None:
        """Build the window on first use and whenever a newer baseline has been captured."""
        if not self._tables_ready:  # here, not at start-up: the store may be down then
            create_project_tables(self.engine)
            self._tables_ready = True
        version = self.baselines.latest_version(self.model.model_id)
        current = self.baseline.version if self.baseline is not None else None
        if self.window is not None and version == current:
            return
        baseline = (
            self.baselines.load(self.model.model_id, version) if version is not None else None
        )
        window = ModelWindow(self.model, baseline, self.settings.latency_buckets)
        drift_start = window.drift.start(now)
        perf_start = window.performance.start(now)
        inline_labels = self.model.source.labels is not None and not self.labels_by_arrival
        predictions = _Stream(min(drift_start, perf_start) if inline_labels else drift_start)
        if perf_start < predictions.start:
            buckets, counts = self.source.count_predictions(
                perf_start, predictions.start, int(window.performance.width)
            )
            window.add_prediction_counts(
                np.asarray(buckets, dtype=np.int64), np.asarray(counts, dtype=float)
            )
        if self.window is not None:
            log.info(
                "model %s: baseline version %s replaces %s; rebuilding the window",
                self.model.model_id,
                version,
                current,
            )
        elif baseline is None:
            log.warning(
                "model %s: no baseline yet, so no drift metrics; capture one with "
                "`model-monitor baseline --model %s`",
                self.model.model_id,
                self.model.model_id,
            )
        # Commit the new state only now that every read of the rebuild has succeeded.
        self.baseline, self.window = baseline, window
        self._predictions, self._labels = predictions, _Stream(perf_start)

    def _batches(
        self,
        stream: _Stream,
        read: Callable[..., pd.DataFrame],
        until: float,
        order: str,
        time_of: Callable[[pd.DataFrame], pd.Series],
    ) -> Iterator[pd.DataFrame]:
        """Read a stream in batches after its cursor, handing each batch to the fold callback.

        The cap per refresh does not apply while rebuilding; a capped refresh leaves the rest
        for the next one and reports the lag.
        """
        budget = None if stream.rebuilding else self.settings.max_rows_per_scrape
        while True:
            limit = (
                self.settings.batch_rows
                if budget is None
                else min(self.settings.batch_rows, budget)
            )
            frame = read(stream.start, until, stream.cursor, limit)
            if len(frame):
                yield frame
                last = frame.iloc[-1]
                stream.cursor = Cursor(last[order], last[ID])
                stream.last_time = float(time_of(frame.iloc[[-1]]).iloc[0])
            if budget is not None:
                budget -= len(frame)
            if len(frame) < limit:
                stream.lag = 0.0
                stream.rebuilding = False
                break
            if budget is not None and budget <= 0:
                stream.lag = max(0.0, until - (stream.last_time or until))
                break
        self.status.lag_seconds = max(self._predictions.lag, self._labels.lag)

    def _read_predictions(self, now: float) -> None:
        assert self.window is not None
        codec = self.source.prediction_time_codec()
        until = now - self.settings.read_lag
        inline = self.model.source.labels is not None and not self.labels_by_arrival
        for frame in self._batches(
            self._predictions,
            self.source.read_predictions,
            until,
            TS,
            lambda f: codec.to_epoch(f[TS]),
        ):
            rows, rejected = parse_rows(
                frame, self.model, codec.to_epoch(frame[TS]), label="optional" if inline else "none"
            )
            expired = self.window.add_predictions(rows, now, live=not self._predictions.rebuilding)
            self._count_rejections(rejected, expired, "predictions")

    def _read_labels(self, now: float) -> None:
        assert self.window is not None
        prediction_time = self.source.prediction_time_codec()
        arrival = self.source.label_time_codec()
        until = now - self.settings.read_lag
        for frame in self._batches(
            self._labels,
            self.source.read_labels,
            until,
            ARRIVAL,
            lambda f: arrival.to_epoch(f[ARRIVAL]),
        ):
            rejected = Rejections()
            unknown = frame[TS].isna().to_numpy()
            rejected.add("label_unknown_prediction", unknown, frame[ID])
            known = frame[~unknown]
            rows, more = parse_rows(
                known, self.model, prediction_time.to_epoch(known[TS]), label="required"
            )
            rejected.merge(more)
            expired = self.window.add_labels(rows, now, live=not self._labels.rebuilding)
            self._count_rejections(rejected, expired, "labels")

    def _count_rejections(self, rejected: Rejections, expired: int, stream: str) -> None:
        """Count rejected rows and log one line per reason per batch, never one per row."""
        if expired:
            rejected.counts["expired"] += expired
        self.status.rejected.update(rejected.counts)
        for reason, count in rejected.counts.items():
            example = rejected.examples.get(reason)
            log.warning(
                "model %s: %d %s rows rejected (%s)%s",
                self.model.model_id,
                count,
                stream,
                reason,
                f", e.g. id {example}" if example else "",
            )

    def _failed(self, stream: str, exc: Exception) -> None:
        self.status.errors_total += 1
        self.status.source_up[stream] = False
        if stream == "predictions":
            self.status.up = False
        self.source.forget_tables()
        self._log_once(
            stream,
            f"reading {stream} failed; serving the last good numbers until the store answers again",
            exc,
        )

    def _log_once(self, key: str, what: str, exc: Exception) -> None:
        """Log a failure once per outage (until `key` recovers), not once per scrape."""
        if key not in self._logged_errors:
            self._logged_errors.add(key)
            log.error("model %s: %s: %s", self.model.model_id, what, str(exc).splitlines()[0])

    def _recovered(self, stream: str) -> None:
        self.status.source_up[stream] = True
        if stream in self._logged_errors:
            self._logged_errors.discard(stream)
            log.info("model %s: reading %s works again", self.model.model_id, stream)
