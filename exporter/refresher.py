"""Keeps one model's window in step with the store: the imperative shell around the pure core.

Each refresh reads what arrived after the read positions (predictions by prediction time,
labels by arrival), in bounded batches, folds it into the window and recomputes the report.
Rows that commit out of time order, or are inserted with an old time, land behind a read
position; reconciliation finds them by comparing the store's row counts per bucket with the
rows counted (the ledger) and folds exactly the missing ones. Every fold goes through the
ledger, so no row is counted twice whichever read returns it.

A failed read leaves window, positions and report as they were after the last batch folded, so
the last good numbers stay served (marked stale by `model_monitor_up` and the refresh timestamp)
and the next refresh resumes where the last one stopped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cache, partial
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from exporter.baseline import Baseline
from exporter.config import ExporterConfig, ModelConfig
from exporter.ledger import IDS_PER_READ, RUN_GAP, RowLedger, row_keys, runs, slice_width
from exporter.monitors import health
from exporter.monitors.retraining_scheduler import (
    DECISION_ACTION,
    RETRAINED_ACTION,
    Evidence,
    RetrainingDecision,
    cooldown_may_hold,
    decide,
)
from exporter.report import ModelReport, build_report
from exporter.rows import Rejections, Rows, parse_rows
from exporter.storage import audit
from exporter.storage.baseline_store import BaselineStore
from exporter.storage.copy_pages import CopyPages
from exporter.storage.engine import DeadlineExceededError, snapshot
from exporter.storage.metrics_store import MetricsStore
from exporter.storage.prediction_store import (
    ARRIVAL,
    ID,
    MATCHED,
    TS,
    Cursor,
    ModelSource,
    RowCounts,
    Span,
    Stream,
    create_project_tables,
)
from exporter.storage.push_down import BucketSums, drift_sums_in_parts, unsupported
from exporter.storage.time_format import SECOND_PREFIX
from exporter.sufficient_stats import Totals
from exporter.window import ModelWindow

log = logging.getLogger(__name__)

EDGE_ROWS = 200  # rows at each edge of the window the unreadable-rows check looks at
# Reconciliation counts over at least this many counted rows run on a second connection while
# the refresh reads (`ModelRefresher._plan_counts`); a smaller count costs less than the
# hand-off, and runs after the read.
COUNT_AHEAD_ROWS = 10_000


@cache
def _count_worker() -> ThreadPoolExecutor:
    """The threads reconciliation counts run on, one per stream of the model refreshing (a
    pass refreshes one model at a time); the store does the counting, so they mostly wait."""
    return ThreadPoolExecutor(2, thread_name_prefix="sweep-count")


@dataclass(frozen=True)
class _Counting:
    """What one refresh's reconciliation counts (`ModelRefresher._plan_counts`): the sweep's
    stretch up to `end` and the lookback, their whole slices as spans counted in one total each
    (`ranges`: the ledger's slices of each, first and stop), the slices they cut per slice."""

    end: float
    complete: bool  # reaches the read position: the sweep starts again at the window's start
    totals: list[Span]
    ranges: list[tuple[int, int]]
    counts: Callable[[], RowCounts]  # the counts, on a second connection or when called


@dataclass
class _Stream:
    """Read position of one ordered stream (predictions or labels) and the rows it counted."""

    kind: Stream
    start: float  # where a rebuild starts reading
    ledger: RowLedger  # which rows are counted, by bucket of the stream's order column
    cursor: Cursor | None = None
    last_time: float | None = None  # epoch of the last row read
    rebuilding: bool = True  # until caught up once: no cap, counters untouched
    lag: float = 0.0  # age of the backlog a refresh left at max_read_seconds
    unordered: int = 0  # rows without a time counted so far (NULL timestamp or arrival)
    sweep: float | None = None  # where the next stretch of the whole-window sweep starts
    swept_at: float | None = None  # when the sweep last advanced
    counting: _Counting | None = None  # planned by this refresh before its read, if any
    # keys of the rows the last edge check found in the window but not counted
    unseen: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    # Most rows of the last read were counted already (labels taken by the prediction reads,
    # `ModelRefresher._labels_in_predictions`): read the keys first, then only what is lacking.
    taken: bool = True
    # ids of the rows counted whose time is text that is no instant, by whole-second prefix
    # (`ModelSource.count_rows` counts the store's under the same prefixes)
    unplaced: dict[str, set[Any]] = field(default_factory=dict)

    @property
    def order(self) -> str:
        """The canonical name of the column the stream is ordered by."""
        return ARRIVAL if self.kind == "labels" else TS

    def after(self, frame: pd.DataFrame) -> Cursor:
        """The keyset position just past the last row of `frame`."""
        last = frame.iloc[-1]
        return Cursor(last[self.order], last[ID])

    def counted_unplaced(self, frame: pd.DataFrame, untimed: np.ndarray) -> None:
        """Note the rows of `frame` without a time (`untimed`) whose time is text (rejected as
        they are folded), by whole-second prefix."""
        if not untimed.any():
            return
        for value, key in zip(frame[self.order][untimed], frame[ID][untimed], strict=True):
            if isinstance(value, str):
                self.unplaced.setdefault(value[:SECOND_PREFIX], set()).add(key)

    def forget_unplaced(self, keep: object) -> None:
        """Drop the prefixes that sort before `keep`, the window's first instant as the column
        writes it: no count reaches them any more."""
        if isinstance(keep, str):
            self.unplaced = {p: ids for p, ids in self.unplaced.items() if p >= keep}

    def passed(self, frame: pd.DataFrame, epoch: np.ndarray) -> None:
        """Move past `frame`, read in order (`epoch`: its rows' times). The time read up to
        is the last row's that has one: a text time can sort among the others and not be a
        time (a 61st second), and the reconciliation and the lag are planned from it."""
        self.cursor = self.after(frame)
        timed = epoch[np.isfinite(epoch)]
        if len(timed):
            self.last_time = float(timed[-1])


def _positions(keys: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Where each of `kept` is in `keys` (distinct: a frame's rows after the ledger)."""
    order = np.argsort(keys, kind="stable")
    return order[np.searchsorted(keys, kept, sorter=order)]


@dataclass(frozen=True)
class _Pushed:
    """A rebuild's drift window as the database summed it, with what is still the exporter's
    to do: the rows the sums left to the row fold, and the keys of every row summed (the
    ledger's, and where the stream's read goes on), all read in one snapshot."""

    sums: BucketSums
    left: pd.DataFrame
    keys: pd.DataFrame


@dataclass
class RefreshStatus:
    """What the exporter says about its own health for one model; None is unknown (absent)."""

    up: bool | None = None
    source_up: dict[str, bool | None] = field(default_factory=dict)
    last_success: float | None = None
    last_duration: float | None = None
    lag_seconds: float = 0.0
    errors_total: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    late_rows: Counter[str] = field(default_factory=Counter)  # stream -> rows found behind
    reconciliations_total: int = 0
    last_reconciliation: float | None = None
    # stream -> rows in the window no read returns (edge check); absent: not checked yet
    unreadable_rows: dict[str, int] = field(default_factory=dict)


class ModelRefresher:
    def __init__(
        self,
        model: ModelConfig,
        settings: ExporterConfig,
        engine: Engine,
        clock: Callable[[], float] = time.time,
        bulk: CopyPages | None = None,
        push_down: bool = False,
        statement_timeout: float = 5.0,
    ) -> None:
        self.model = model
        self.push_down = push_down  # store.push_down: rebuild the drift window from sums
        self.statement_timeout = statement_timeout  # store.timeouts.statement: sizes its parts
        self.settings = settings
        self.clock = clock
        self.source = ModelSource(engine, model, bulk)
        self.baselines = BaselineStore(engine)
        self.status = RefreshStatus(
            source_up={"predictions": None}
            | ({"labels": None} if model.source.labels is not None else {})
        )
        self.baseline: Baseline | None = None
        self.window: ModelWindow | None = None
        self.report: ModelReport | None = None
        self._reported: Totals | None = None  # the sums `report` was built from
        self.findings: list[health.Finding] = []
        self.decision: RetrainingDecision | None = None
        self.engine = engine
        self.history = MetricsStore(engine, create_tables=False)
        self._tables_ready = False
        self._last_decision: tuple[bool, str] | None = None
        self._last_history: float | None = None
        self._lock = threading.Lock()
        self._last_attempt: float | None = None
        self._captures: int | None = None  # the baselines count the window was checked at
        self._predictions: _Stream | None = None
        self._labels: _Stream | None = None
        self._logged_errors: set[str] = set()

    @property
    def labels_by_arrival(self) -> bool:
        labels = self.model.source.labels
        return labels is not None and labels.arrival_column is not None

    @property
    def inline_labels(self) -> bool:
        """Labels are read together with their predictions (same table, no arrival column)."""
        return self.model.source.labels is not None and not self.labels_by_arrival

    @property
    def _labels_in_predictions(self) -> bool:
        """Labels by arrival in the predictions table itself: each prediction read takes the
        labels that arrived before it (`_admit_labels`), and the label stream reads only its
        keys and fetches the rows its ledger lacks while that pays (`_Stream.taken`)."""
        return self.source.labels_in_predictions

    @property
    def rebuilding(self) -> bool:
        """True until the window has been built from the store (at start-up, after a baseline)."""
        streams = [s for s in (self._predictions, self._labels) if s is not None]
        return self.report is None or not streams or any(s.rebuilding for s in streams)

    def refresh(self, wait: float = 10.0, captures: Callable[[], int | None] | None = None) -> None:
        """Bring the window up to date; concurrent callers share one refresh.

        A caller that finds a refresh running waits up to `wait` seconds for it and then uses its
        result rather than starting another, so rows are read once. `captures`: the store's
        count of baselines (`BaselineStore.captures`), read once for a pass over all models
        (None: unknown); while it is the count this model's window was checked at, no baseline
        was captured since and the model's own version query is skipped.
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
                self._refresh(started, captures)
            except Exception as exc:  # a bug must not take /metrics down with it
                log.exception("model %s: refresh failed unexpectedly", self.model.model_id)
                self._failed(exc)
            self.status.last_duration = time.perf_counter() - t0
        finally:
            self._lock.release()

    def _refresh(self, now: float, captures: Callable[[], int | None] | None) -> None:
        self.source.forget_guessed_formats()
        for attempt in (1, 2):
            try:
                self._ensure_window(now, captures)
                for stream in (self._predictions, self._labels):  # counted while the reads run
                    if stream is not None:
                        live = not stream.rebuilding
                        stream.counting = self._plan_counts(stream, now) if live else None
                self._read(self._predictions, now)
            except SQLAlchemyError as exc:
                # A pooled connection the store dropped (a restart) fails once and takes the
                # stale pool with it; one more try on fresh connections tells an outage from that.
                stale = getattr(exc, "connection_invalidated", False)
                if attempt == 1 and stale and not isinstance(exc, DeadlineExceededError):
                    log.warning(
                        "model %s: the store dropped the connection (%s); retrying once on a "
                        "fresh one",
                        self.model.model_id,
                        str(exc).splitlines()[0],
                    )
                    continue
                self._failed(exc)
                return
            break
        self._recovered("predictions")
        if self.labels_by_arrival:
            try:
                self._read(self._labels, now)
            except SQLAlchemyError as exc:
                self._failed(exc, stream="labels")
            else:
                self._recovered("labels")
        elif self.model.source.labels is not None:
            self.status.source_up["labels"] = True
        assert self.window is not None
        totals = self.window.totals(now)
        if not totals.same_as(self._reported):  # an idle model's report is still true
            self.report = build_report(self.model, self.baseline, totals)
            self._reported = totals
        self.findings = health.findings(self.model, self.report)
        self.findings += health.store_findings(self.status.unreadable_rows)
        evidence = Evidence.from_report(self.report)
        self.decision = decide(self.model, evidence, now=now)
        if cooldown_may_hold(self.decision):  # only then does the last retraining matter
            try:
                last = audit.last_action(self.engine, self.model.model_id, RETRAINED_ACTION)
            except SQLAlchemyError:
                last = None  # no cooldown known; the decision itself still stands
            self.decision = decide(self.model, evidence, last, now)
        try:
            self._record(now)
            self._logged_errors.discard("history")
        except SQLAlchemyError as exc:  # history and audit are extras: never mark the model down
            self._log_once("history", "writing the audit trail or metrics history failed", exc)
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
        if self.report.estimated is not None:
            summary |= {f"estimated:{m}": v for m, v in self.report.estimated.values.items()}
        if self.report.multivariate is not None:
            summary["multivariate_error"] = self.report.multivariate.error
        self.history.store_metrics(self.model.model_id, summary, at, segment="model")

    def _retention_start(self, kind: Stream, now: float) -> float:
        """Oldest time a stream's rows can still count at `now`: where its ledger ends."""
        assert self.window is not None
        drift, performance = self.window.drift.start(now), self.window.performance.start(now)
        if kind == "labels":
            return performance
        return min(drift, performance) if self.inline_labels else drift

    def _ensure_window(self, now: float, captures: Callable[[], int | None] | None) -> None:
        """Build the window on first use and whenever a newer baseline has been captured."""
        if not self._tables_ready:  # here, not at start-up: the store may be down then
            create_project_tables(self.engine)
            self._tables_ready = True
        count = captures() if captures is not None else None
        if self.window is not None and count is not None and count == self._captures:
            return
        version = self.baselines.latest_version(self.model.model_id)
        current = self.baseline.version if self.baseline is not None else None
        if self.window is not None and version == current:
            self._captures = count
            return
        baseline = (
            self.baselines.load(self.model.model_id, version) if version is not None else None
        )
        window = ModelWindow(self.model, baseline, self.settings.latency_buckets)
        drift_start = window.drift.start(now)
        perf_start = window.performance.start(now)
        predictions = _Stream(
            "predictions",
            min(drift_start, perf_start) if self.inline_labels else drift_start,
            RowLedger(slice_width(window.drift.width)),
        )
        if perf_start < predictions.start:
            counts = self.source.count_rows(
                "predictions",
                int(window.performance.width),
                [Span(perf_start, now, before=predictions.start)],
            ).by_bucket
            window.add_prediction_counts(
                np.fromiter(counts, dtype=np.int64), np.fromiter(counts.values(), dtype=float)
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
        pushed = self._push_down_reads(window, predictions, now) if self.push_down else None
        # Commit the new state only now that every read of the rebuild has succeeded.
        self.baseline, self.window, self._captures = baseline, window, count
        self._predictions = predictions
        self._labels = (
            _Stream("labels", perf_start, RowLedger(slice_width(window.performance.width)))
            if self.labels_by_arrival
            else None
        )
        if pushed is not None:
            self._push_down_fold(pushed, now)

    def _push_down_refusal(self, window: ModelWindow) -> str | None:
        """Why this model's window is rebuilt from rows even with `store.push_down`."""
        if self.inline_labels:
            return "its labels are read with its predictions"
        if window.performance.width % window.drift.width:
            return "its performance buckets are no whole number of drift buckets"
        return unsupported(self.model, window.baseline)

    def _push_down_reads(self, window: ModelWindow, stream: _Stream, now: float) -> _Pushed | None:
        """The reads of a rebuild by the database's sums (`storage/push_down.py`), all in one
        snapshot so that the sums, the rows they leave and the keys agree; None where the
        rows are read instead (said once in the log)."""
        refused = self._push_down_refusal(window)
        if refused is not None:
            self.push_down = False
            log.info(
                "model %s: window rebuilt from rows, not sums: %s", self.model.model_id, refused
            )
            return None
        span = Span(stream.start, now - self.settings.read_lag)
        width = int(window.drift.width)
        try:
            with snapshot(self.engine) as conn:
                sums, parts = drift_sums_in_parts(
                    self.source,
                    window.drift_layout,
                    window.baseline,
                    width,
                    span,
                    conn,
                    self.statement_timeout,  # a part of several statements
                )
                keys = pd.concat(
                    [self.source.read_keys("predictions", p, 2**62, conn) for p in parts],
                    ignore_index=True,
                )
                left = [
                    self.source.read_predictions(
                        replace(span, ids=tuple(sums.left_ids[at : at + IDS_PER_READ])),
                        IDS_PER_READ,
                        conn=conn,
                    )
                    for at in range(0, len(sums.left_ids), IDS_PER_READ)
                ]
        except DeadlineExceededError:
            self.push_down = False
            log.warning(
                "model %s: the store's sums took longer than store.timeouts.statement; "
                "rebuilding the window from rows",
                self.model.model_id,
            )
            return None  # the rows' reads go on, on fresh connections
        return _Pushed(sums, pd.concat(left, ignore_index=True) if left else keys.iloc[:0], keys)

    def _push_down_fold(self, pushed: _Pushed, now: float) -> None:
        """Fold a rebuild's sums as the rows' fold would have: the rows they left first, then
        the drift buckets, the predictions per performance bucket (the rows of the drift
        buckets inside it), the rejections, and every key into the ledger, the read position
        at the last; the stream's read goes on from there with what committed since."""
        assert self.window is not None and self._predictions is not None
        window, stream, sums = self.window, self._predictions, pushed.sums
        if len(pushed.left):
            self._fold(stream, pushed.left, self._order_epoch(stream, pushed.left), now)
        window.drift.add(sums.buckets, sums.matrix)
        rows = sums.matrix[:, window.drift_layout["rows",]][:, 0]
        per = int(window.performance.width // window.drift.width)
        performance = sums.buckets // per
        live = window.performance.is_live(performance, now)
        window.add_prediction_counts(performance[live], rows[live])
        rejected = Rejections()
        rejected.counts.update(sums.rejected)
        self._count_rejections(rejected, "predictions")
        if len(pushed.keys):
            epoch = self._order_epoch(stream, pushed.keys)
            timed = np.isfinite(epoch)
            ids = pushed.keys[ID][timed]
            stream.ledger.admit(epoch[timed], row_keys(ids, epoch[timed]))
            # the sums rejected (or left to the fold above) the rows whose text is no instant
            stream.counted_unplaced(pushed.keys, ~timed)
            stream.passed(pushed.keys, epoch)
        if self._labels is not None:
            self._labels.taken = False  # no prediction read took labels: read them whole
        log.info(
            "model %s: drift window rebuilt from the store's sums (%d rows)",
            self.model.model_id,
            len(pushed.keys),
        )

    def _read(self, stream: _Stream | None, now: float) -> None:
        """Read a stream past its cursor, then look behind the cursor for rows that came late."""
        assert stream is not None and self.window is not None
        until = now - self.settings.read_lag
        # A rebuild reads to the end; a live read for at most max_read_seconds, then shows
        # what is left as lag (the next refreshes go on from the cursor).
        deadline = None if stream.rebuilding else time.monotonic() + self.settings.max_read_seconds
        limit, behind = self.settings.batch_rows, False
        span = Span(stream.start, until, after=stream.cursor)
        # Labels the prediction reads took: the stream's keys, then what it lacks.
        keys_only = stream is self._labels and self._labels_in_predictions and stream.taken
        read = self.source.read_keys if keys_only else self._fetch_rows
        seen = new = 0
        try:
            for frame in self._pages(stream, span, read, ahead=not keys_only):
                epoch = self._order_epoch(stream, frame)
                if keys_only:  # the rows lacking lie between the last page and this one's end
                    timed = epoch[np.isfinite(epoch)]
                    if len(timed):
                        end = float(timed.max()) + 1.0
                        page = replace(span, after=stream.cursor, before=end)
                        new += self._fold_lacking(stream, page, frame, epoch, now)
                else:  # deferred: a page's DLE losses are predicted while the next is read
                    new += self._fold(stream, frame, epoch, now, defer=True)
                seen += len(frame)
                stream.passed(frame, epoch)
                self._recovered(stream.kind)  # a long rebuild is reading the store: up
                if len(frame) == limit and deadline is not None and time.monotonic() >= deadline:
                    behind = True
                    break
        finally:  # the pages the cursor passed are in the window, whatever stopped the read
            self.window.settle()
        if seen:
            stream.taken = new <= seen / 2
        if behind:
            stream.lag = max(0.0, until - (stream.last_time or until))
        else:
            stream.lag = 0.0
            if stream.rebuilding:
                stream.rebuilding = False
                log.info("model %s: %s read up to date", self.model.model_id, stream.kind)
        self.status.lag_seconds = max(
            s.lag for s in (self._predictions, self._labels) if s is not None
        )
        if not stream.rebuilding:
            self._reconcile(stream, now)

    def _sweep_share(self, stream: _Stream, now: float) -> float:
        """The share of the window this refresh's sweep covers: the sweep ends every
        `reconcile_interval` (1: a whole sweep is due)."""
        elapsed = now - stream.swept_at if stream.swept_at is not None else math.inf
        return min(1.0, elapsed / self.settings.reconcile_interval)

    def _plan_counts(self, stream: _Stream, now: float) -> _Counting | None:
        """What this refresh's reconciliation counts, planned before it reads (None: nothing
        read yet): the lookback and the next stretch of the whole-window sweep.

        The sweep ends every `reconcile_interval`, so each refresh takes its share of the
        window: a stretch `[start, end)` of it, counted per slice where `keep` cuts a slice (the
        ledger may hold rows of it from before `keep`), whole slices up to the lookback in one
        total, and the rest left to the lookback. The lookback is the whole slices of
        `late_rows_lookback` behind the read position, counted in one total, and the slice the
        position is in, counted per slice. The whole slices lie behind the position, so nothing
        the read folds changes the ledger counts they are compared with (the read only adds to
        the position's slice, so its count can hide a late row only until the next refresh),
        and a long count (`COUNT_AHEAD_ROWS`) runs on a second connection while the refresh
        reads: at 50,000 rows a second the lookback holds 1.5 million rows, and on a PostgreSQL
        table not yet vacuumed every counted row costs a heap visit.
        """
        if stream.last_time is None:
            return None
        keep, width = self._retention_start(stream.kind, now), stream.ledger.width
        share = self._sweep_share(stream, now)
        last = stream.last_time
        behind = float(np.floor((last - self.settings.late_rows_lookback) / width)) * width
        start = max(keep, stream.sweep if stream.sweep is not None else keep)
        end = min(last, float(np.ceil((start + (last - keep) * share) / width)) * width)
        whole_from = min(float(np.ceil(start / width)) * width, end)
        whole_to = max(whole_from, min(end, behind))
        head = [Span(start, whole_from, before=whole_from)] if whole_from > start else []
        until = float(np.floor(last / width)) * width  # the slice the position is in
        bounds = [(a, b) for a, b in ((whole_from, whole_to), (max(keep, behind), until)) if b > a]
        totals = [Span(a, b, before=b) for a, b in bounds]
        ranges = [(int(a // width), int(b // width)) for a, b in bounds]
        # The slice the position is in, per slice: the read adds rows to it.
        by_slice = [*head, Span(max(keep, until), last)]
        count = partial(self.source.count_rows, stream.kind, int(width), by_slice, totals)
        if sum(stream.ledger.count_between(*r) for r in ranges) >= COUNT_AHEAD_ROWS:
            count = _count_worker().submit(count).result
        return _Counting(end, end >= last, totals, ranges, count)

    def _reconcile(self, stream: _Stream, now: float) -> None:
        """Compare the store's row counts behind the read position with the rows counted, and
        fetch and fold the rows missing wherever the store has more.

        Every refresh covers `late_rows_lookback` behind the position (transactions that
        committed late) and the next stretch of a sweep over the whole window (rows inserted
        with an old time), as `_plan_counts` planned them; the cost of the whole-window check is
        spread over the refreshes instead of landing on one. Whole slices are counted in one
        total first, and per slice only where the total differs from the ledger's: a row that
        committed late or was back-filled there is in the total. A completed sweep also counts
        the rows without any time.
        """
        keep = self._retention_start(stream.kind, now)
        width = stream.ledger.width
        stream.ledger.forget_before(int(np.floor(keep / width)))
        if stream.unplaced:  # rarely: the bound is text rendered anew each time
            stream.forget_unplaced(self.source.time_format(stream.kind).bound(keep, "ge"))
        planned, stream.counting = stream.counting or self._plan_counts(stream, now), None
        if planned is None:  # nothing read yet: only the rows without a time to count
            if self._sweep_share(stream, now) >= 1.0:
                stream.swept_at = now
                self._sweep_done(stream, now)
            return
        last = stream.last_time
        assert last is not None
        counts = planned.counts()
        differ = [
            span
            for span, total, (first, stop) in zip(
                planned.totals, counts.totals, planned.ranges, strict=True
            )
            if total != stream.ledger.count_between(first, stop)
        ]
        store = counts.by_bucket  # where spans share a slice, the later one's count stands
        unplaced = counts.unplaced
        if differ:
            again = self.source.count_rows(stream.kind, int(width), differ)
            store, unplaced = store | again.by_bucket, unplaced | again.unplaced
        stream.sweep, stream.swept_at = (keep if planned.complete else planned.end), now
        short = sorted(b for b, count in store.items() if count > stream.ledger.count(b))
        found = 0
        for first_slice, last_slice in runs(short, gap=RUN_GAP):
            span = Span(first_slice * width, last, before=(last_slice + 1) * width)
            for keys in self._pages(stream, span, self.source.read_keys):
                found += self._fold_lacking(
                    stream, span, keys, self._order_epoch(stream, keys), now
                )
        if stream.kind == "predictions":
            found += self._fold_unplaced(stream, unplaced, Span(keep, last), now)
        if found:
            self.status.late_rows[stream.kind] += found
            log.info(
                "model %s: %d %s rows found behind the read position (committed late or "
                "back-filled) and counted",
                self.model.model_id,
                found,
                stream.kind,
            )
        if planned.complete:
            self._sweep_done(stream, now)

    def _fold_lacking(
        self, stream: _Stream, span: Span, keys: pd.DataFrame, epoch: np.ndarray, now: float
    ) -> int:
        """Fetch whole, by id within `span`, and fold the rows of `keys` (`read_keys`; `epoch`:
        their order times) the stream's ledger lacks; returns how many were new."""
        # A time that does not parse was counted (invalid_timestamp) when first read.
        timed = np.isfinite(epoch)
        ids, epoch = keys[ID][timed], epoch[timed]
        lacking = ids[~stream.ledger.contains(epoch, row_keys(ids, epoch))]
        found = 0
        for at in range(0, len(lacking), IDS_PER_READ):
            chunk = tuple(lacking.iloc[at : at + IDS_PER_READ].tolist())
            for frame in self._pages(stream, replace(span, ids=chunk), self._fetch_rows):
                found += self._fold(stream, frame, self._order_epoch(stream, frame), now)
        return found

    def _fold_unplaced(
        self, stream: _Stream, counts: dict[str, int], span: Span, now: float
    ) -> int:
        """Fetch and fold (reject, once each) the rows whose time is text that is no instant
        (a 61st second) where the store holds more of them under a prefix (`counts`) than the
        reads counted: committed behind the read position, no read returns them, and they belong
        to no slice the ledger could find short. Returns how many were new."""
        found = 0
        for prefix, count in counts.items():
            seen = stream.unplaced.get(prefix, set())
            if count <= len(seen):
                continue
            keys = self.source.unplaced_keys(stream.kind, prefix, span)
            lacking = [key for key in keys[ID].tolist() if key not in seen]
            for at in range(0, len(lacking), IDS_PER_READ):
                chunk = tuple(lacking[at : at + IDS_PER_READ])
                for frame in self._pages(stream, replace(span, ids=chunk), self._fetch_rows):
                    found += self._fold(stream, frame, self._order_epoch(stream, frame), now)
        return found

    def _sweep_done(self, stream: _Stream, now: float) -> None:
        """A sweep covered the whole window: count the rows without a time (NULL), which no
        read by time can return, and say when the window was last checked whole."""
        unordered = self.source.count_unordered(stream.kind)
        if unordered > stream.unordered:
            self._count_rejections(
                Rejections(Counter({"invalid_timestamp": unordered - stream.unordered})),
                stream.kind,
            )
        stream.unordered = max(stream.unordered, unordered)
        self._check_edges(stream, now)
        if stream.kind == "predictions":
            self.status.reconciliations_total += 1
            self.status.last_reconciliation = now

    def _check_edges(self, stream: _Stream, now: float) -> None:
        """Rows the store holds inside the window that no read returns: the newest rows and the
        rows just before the window by the column's own order, whose times say they belong in
        it, are not counted. Only rows missing at two checks in a row count, so a row that
        commits between the sweep and this check is not mistaken for one."""
        keep = self._retention_start(stream.kind, now)
        read_up_to = now - self.settings.read_lag if stream.last_time is None else stream.last_time
        edge = self.source.edge_keys(stream.kind, keep, EDGE_ROWS)
        epoch = self._order_epoch(stream, edge)
        inside = (epoch >= keep) & (epoch <= read_up_to - self.settings.late_rows_lookback)
        keys = row_keys(edge[ID][inside], epoch[inside])
        unseen = keys[~stream.ledger.contains(epoch[inside], keys)]
        unreadable = np.intersect1d(unseen, stream.unseen)
        stream.unseen = unseen
        before = self.status.unreadable_rows.get(stream.kind)
        self.status.unreadable_rows[stream.kind] = len(unreadable)
        if len(unreadable) and len(unreadable) != before:
            example = edge[inside][np.isin(keys, unreadable)].iloc[0]
            log.error(
                "model %s: the store holds %s rows inside the window that no read returns "
                "(e.g. id %s, %s %r): their time sorts outside the range the reads compare with; "
                "see `model-monitor check-config` and docs/architecture.md (Time columns)",
                self.model.model_id,
                stream.kind,
                example[ID],
                stream.order,
                example[stream.order],
            )

    def _fetch_rows(self, kind: Stream, span: Span, limit: int, bulk: bool = False) -> pd.DataFrame:
        if kind == "labels":
            return self.source.read_labels(span, limit, bulk)
        return self.source.read_predictions(
            span, limit, with_labels=self._labels_in_predictions, bulk=bulk
        )

    def _pages(
        self,
        stream: _Stream,
        span: Span,
        read: Callable[..., pd.DataFrame],
        ahead: bool = False,
    ) -> Iterator[pd.DataFrame]:
        """Every row of `span`, in keyset pages of `batch_rows` (`read(kind, span, limit)`).

        `ahead` (a read that may be long: a rebuild, a backlog): each page after a full one is
        read in bulk (`read(..., bulk=True)`, see `ModelSource._fetch`) on a second thread while
        the caller folds the last, so the store's work, and a driver's that lets go of the GIL,
        overlap the fold on another core. A read with less than a page (most scrapes) makes one
        plain read. Leaving early waits for the page in flight (a bounded read) and drops it.
        """
        size = self.settings.batch_rows
        with contextlib.ExitStack() as stack:
            pool = stack.enter_context(ThreadPoolExecutor(1, "read-ahead")) if ahead else None

            def start(span: Span) -> Callable[[], pd.DataFrame]:
                if pool is None:
                    return partial(read, stream.kind, span, size)
                return pool.submit(read, stream.kind, span, size, bulk=True).result

            pending: Callable[[], pd.DataFrame] | None = partial(read, stream.kind, span, size)
            while pending is not None:
                frame, pending = pending(), None
                if len(frame) == size:
                    span = replace(span, after=stream.after(frame))
                    pending = start(span)
                if len(frame):
                    yield frame

    def _order_epoch(self, stream: _Stream, frame: pd.DataFrame) -> np.ndarray:
        """Epoch seconds of each row's order column (prediction time, or label arrival)."""
        time = self.source.time_format(stream.kind)
        return time.to_epoch(frame[stream.order]).to_numpy(dtype=float)

    def _fold(
        self,
        stream: _Stream,
        frame: pd.DataFrame,
        epoch: np.ndarray,
        now: float,
        defer: bool = False,
    ) -> int:
        """Fold the rows of `frame` (`epoch`: their order times) this stream has not counted
        yet; returns how many were new. `defer`: see `ModelWindow.add_predictions`."""
        fresh = np.ones(len(frame), dtype=bool)
        timed = np.isfinite(epoch)
        if stream.kind == "predictions":
            stream.counted_unplaced(frame, ~timed)
        keys = np.zeros(len(frame), dtype=np.uint64)  # untimed rows are rejected unkeyed
        keys[timed] = row_keys(frame[ID][timed], epoch[timed])
        fresh[timed] = stream.ledger.admit(epoch[timed], keys[timed])
        if stream.kind == "predictions":
            self._fold_predictions(
                frame[fresh], epoch[fresh], keys[fresh], now, not stream.rebuilding, defer
            )
        else:
            self._fold_labels(frame[fresh], now, live=not stream.rebuilding)
        return int(fresh.sum())

    def _fold_predictions(
        self,
        frame: pd.DataFrame,
        epoch: np.ndarray,
        keys: np.ndarray,
        now: float,
        live: bool,
        defer: bool = False,
    ) -> None:
        """`keys`: the rows' ledger keys, which their labels find them by when those come in
        a stream of their own (`ModelWindow.memo`)."""
        assert self.window is not None
        with_labels = ARRIVAL in frame  # labels in the predictions table: `_admit_labels`
        rows, rejected = parse_rows(
            frame,
            self.model,
            pd.Series(epoch, index=frame.index),
            label="optional" if self.inline_labels or with_labels else "none",
            keys=None if self.inline_labels else keys,
        )
        if with_labels:
            rows = self._admit_labels(frame, keys, rows, now)
        rejected.counts["expired"] += self.window.add_predictions(rows, now, live, defer)
        self._count_rejections(rejected, "predictions")

    def _admit_labels(self, frame: pd.DataFrame, keys: np.ndarray, rows: Rows, now: float) -> Rows:
        """`rows` (parsed from `frame`, whose prediction keys are `keys`) with the labels they
        fold with: those the label stream would read and count with these predictions (valid,
        arrived inside its window by the read's end, their prediction in the performance
        window), admitted to its ledger now. The rest are NaN here and left to that stream,
        which counts them, rejections included, as it always has."""
        assert self._labels is not None and self.window is not None and rows.key is not None
        arrival = self.source.time_format("labels").to_epoch(frame[ARRIVAL])
        at = _positions(keys, rows.key)
        arrival = arrival.to_numpy(dtype=float)[at]
        ring = self.window.performance
        take = (
            np.isfinite(rows.label)
            & (arrival >= self._retention_start("labels", now))
            & (arrival <= now - self.settings.read_lag)
            & ring.is_live(ring.bucket_of(rows.ts), now)
        )
        ids, arrival = frame[ID].iloc[at[take]], arrival[take]
        take[take] = self._labels.ledger.admit(arrival, row_keys(ids, arrival))
        return replace(rows, label=np.where(take, rows.label, np.nan))

    def _fold_labels(self, frame: pd.DataFrame, now: float, live: bool) -> None:
        """Fold label arrivals; each label row is counted under at most one reason.

        A label whose prediction was itself rejected (no time, an invalid output) is, in a
        separate label table, a row of its own: `label_of_rejected_prediction`. In the predictions
        table it is the same row, already counted once under the prediction's reason.
        """
        assert self.window is not None
        rejected = Rejections()
        separate = (
            self.model.source.labels is not None and self.model.source.labels.table is not None
        )
        unknown = frame[MATCHED].isna().to_numpy()
        rejected.add("label_unknown_prediction", unknown, frame[ID])
        untimed = ~unknown & frame[TS].isna().to_numpy()
        if separate:
            rejected.add("label_of_rejected_prediction", untimed, frame[ID])
        known = frame[~unknown & ~untimed]
        epoch = self.source.time_format("predictions").to_epoch(known[TS])
        rows, more = parse_rows(
            known,
            self.model,
            epoch,
            label="required",
            # The prediction's own ledger key: what its fold left in the memo is found by it.
            keys=None
            if self.window.memo is None
            else row_keys(known[ID], epoch.to_numpy(dtype=float)),
        )
        bad_predictions = more.counts.pop("invalid_prediction", 0)
        if separate and bad_predictions:
            rejected.counts["label_of_rejected_prediction"] += bad_predictions
        rejected.merge(more)
        expired, future = self.window.add_labels(rows, now, live=live)
        rejected.counts["expired"] += expired
        rejected.counts["future_timestamp"] += future
        self._count_rejections(rejected, "labels")

    def _count_rejections(self, rejected: Rejections, stream: str) -> None:
        """Count rejected rows and log one line per reason per batch, never one per row."""
        counts = +rejected.counts  # drop zero counts
        self.status.rejected.update(counts)
        for reason, count in counts.items():
            example = rejected.examples.get(reason)
            log.warning(
                "model %s: %d %s rows rejected (%s)%s",
                self.model.model_id,
                count,
                stream,
                reason,
                f", e.g. id {example}" if example else "",
            )

    def _failed(self, exc: Exception, stream: Stream = "predictions") -> None:
        """A failed read: up 0, the error counted and logged once per outage.

        Labels are joined to the predictions table, so when predictions cannot be read neither
        can labels.
        """
        self.status.errors_total += 1
        failed = list(self.status.source_up) if stream == "predictions" else [stream]
        for name in failed:
            self.status.source_up[name] = False
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
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            log.error("model %s: %s: %s", self.model.model_id, what, first)

    def _recovered(self, stream: Stream) -> None:
        self.status.source_up[stream] = True
        if stream == "predictions":
            self.status.up = True
        if stream in self._logged_errors:
            self._logged_errors.discard(stream)
            log.info("model %s: reading %s works again", self.model.model_id, stream)
