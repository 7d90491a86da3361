"""The sliding window of a model: rings of time buckets holding sufficient statistics.

A bucket's slot in a ring is its id modulo the number of buckets; writing a bucket into a slot
that still holds an older bucket evicts the older one. The window's statistics are the sum of
the live buckets, so a scrape costs O(buckets x statistics) whatever the number of rows in the
window, and nothing is ever re-read from the store.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from exporter.baseline import Baseline, capture_references
from exporter.config import ModelConfig, WindowConfig
from exporter.performance.loss_memo import LossMemo
from exporter.performance.loss_model import SMALL_BATCH, one_thread
from exporter.report import performance_by_segment
from exporter.rows import Rows
from exporter.sufficient_stats import (
    Layout,
    Totals,
    drift_layout,
    expected_losses,
    fold_drift,
    fold_drift_losses,
    fold_performance,
    fold_performance_losses,
    loss_model,
    performance_layout,
)

_NO_BUCKET = np.iinfo(np.int64).min


@functools.cache
def _dle_worker() -> ThreadPoolExecutor:
    """The thread DLE's losses of large batches are predicted on (`add_predictions(defer=)`):
    scikit-learn's trees let go of the GIL, so they run on the second core while the folding
    thread reads and parses the next page. One for the process: refreshes fold one model at
    a time."""
    return ThreadPoolExecutor(1, thread_name_prefix="dle")


def _losses_alone(model: ModelConfig, baseline: Baseline | None, rows: Rows) -> np.ndarray:
    """`expected_losses` on one OpenMP thread: the other core is the folding thread's."""
    with one_thread():
        losses = expected_losses(model, baseline, rows)
    assert losses is not None  # deferred only with loss models
    return losses


class BucketRing:
    """A fixed ring of buckets, each a flat statistics vector, keyed by bucket id."""

    def __init__(self, window: WindowConfig, size: int) -> None:
        self.width = window.bucket
        self.n = window.buckets
        self.values = np.zeros((self.n, size))
        self.ids = np.full(self.n, _NO_BUCKET, dtype=np.int64)
        self._adds = 0  # batches added so far: what `total` was last summed at, with the bucket
        self._total: tuple[tuple[int, int], np.ndarray] | None = None

    def bucket_of(self, ts: np.ndarray) -> np.ndarray:
        return np.floor(np.asarray(ts, dtype=float) / self.width).astype(np.int64)

    def current(self, now: float) -> int:
        return int(np.floor(now / self.width))

    def start(self, now: float) -> float:
        """Time of the oldest instant still in the window."""
        return (self.current(now) - self.n + 1) * self.width

    def is_live(self, bucket_ids: np.ndarray, now: float) -> np.ndarray:
        current = self.current(now)
        return (bucket_ids > current - self.n) & (bucket_ids <= current)

    def add(self, bucket_ids: np.ndarray, rows: np.ndarray) -> None:
        """Add one row of statistics per (live) bucket id."""
        self._adds += 1
        for bucket, row in zip(bucket_ids.tolist(), rows, strict=True):
            slot = bucket % self.n
            if self.ids[slot] != bucket:
                self.values[slot] = 0.0
                self.ids[slot] = bucket
            self.values[slot] += row

    def total(self, now: float) -> np.ndarray:
        """The sums of the live buckets (read-only). Summed again only once a batch was added
        or the window moved on: an idle model's refresh sums nothing (a 50-feature model's
        60 x 7,040 drift ring took 0.24 ms a sum), and its report, built from these very
        arrays, is known to stand at a glance (`Totals.same_as`)."""
        at = (self.current(now), self._adds)
        if self._total is None or self._total[0] != at:
            total = self.values[self.is_live(self.ids, now)].sum(axis=0)
            total.flags.writeable = False  # shared by every caller until the next sum
            self._total = (at, total)
        return self._total[1]


class LatencyHistogram:
    """Cumulative (counter) histogram of inference latency, Prometheus style."""

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = np.asarray(bounds, dtype=float)
        self.counts = np.zeros(len(bounds) + 1)  # the last cell is +Inf
        self.sum = 0.0

    def observe(self, seconds: np.ndarray) -> None:
        seconds = seconds[np.isfinite(seconds)]
        self.counts += np.bincount(
            np.searchsorted(self.bounds, seconds, side="left"), minlength=len(self.counts)
        )
        self.sum += float(seconds.sum())

    def cumulative(self) -> list[tuple[str, float]]:
        cum = np.cumsum(self.counts)
        labels = [f"{b:g}" for b in self.bounds] + ["+Inf"]
        return list(zip(labels, cum.tolist(), strict=True))


class ModelWindow:
    """Both rings of one model (drift by prediction time, performance by prediction time)."""

    def __init__(
        self, model: ModelConfig, baseline: Baseline | None, latency_bounds: list[float]
    ) -> None:
        self.model = model
        self.baseline = baseline
        self.drift_layout: Layout = drift_layout(model, baseline)
        self.performance_layout: Layout = performance_layout(model, baseline)
        self.drift = BucketRing(model.drift_window, self.drift_layout.size)
        self.performance = BucketRing(model.performance_window, self.performance_layout.size)
        self.latency = LatencyHistogram(latency_bounds)
        # Labels read apart from their predictions take these rather than predict again.
        self.memo: LossMemo | None = LossMemo() if loss_model(model, baseline) else None
        self._pending: Callable[[], None] | None = None  # a deferred batch (`add_predictions`)
        self.predictions_total = 0
        self.labels_total = 0

    def add_predictions(
        self, rows: Rows, now: float, live: bool = True, defer: bool = False
    ) -> int:
        """Fold predictions; `live=False` (the start-up rebuild) leaves the counters alone.

        Rows with keys (`Rows.key`: their labels come in a stream of their own) leave their
        expected absolute errors in the memo for those labels. `defer` (a long read's pages): a
        batch of at least SMALL_BATCH rows has DLE's losses predicted on a worker thread while
        the caller goes on (reads and parses the next page); its sums reach the rings with the
        losses, at the next fold or `settle`, all of them at once, so the rings never hold a
        batch without its DLE cells."""
        self.settle()
        drift_ids = self.drift.bucket_of(rows.ts)
        in_drift = self.drift.is_live(drift_ids, now)
        perf_ids = self.performance.bucket_of(rows.ts)
        in_perf = self.performance.is_live(perf_ids, now)
        labelled = in_perf & np.isfinite(rows.label) if rows.label is not None else None
        # Once for the rows both folds take (labels read together with their predictions).
        needed = in_drift.any() or (labelled is not None and labelled.any())
        predicts = needed and loss_model(self.model, self.baseline) is not None
        later = predicts and defer and len(rows) >= SMALL_BATCH
        losses = (
            expected_losses(self.model, self.baseline, rows) if predicts and not later else None
        )
        drift = (
            fold_drift(
                self.drift_layout,
                self.model,
                self.baseline,
                rows.take(in_drift),
                drift_ids[in_drift],
                None if losses is None else losses[:, in_drift],
                deferred=later,
            )
            if in_drift.any()
            else None
        )
        performance = None
        if labelled is not None and labelled.any():  # labels read together with predictions
            labelled_rows = rows.take(labelled)
            performance = fold_performance(
                self.performance_layout,
                self.model,
                self.baseline,
                labelled_rows,
                perf_ids[labelled],
                None if losses is None else losses[0, labelled],
                deferred=later,
            )

        def commit(losses: np.ndarray | None) -> None:
            if self.memo is not None and rows.key is not None and losses is not None:
                self.memo.forget_before(self.performance.current(now) - self.performance.n + 1)
                self.memo.keep(perf_ids[in_perf], rows.key[in_perf], losses[0, in_perf])
            self.add_prediction_counts(perf_ids[in_perf], np.ones(int(in_perf.sum())))
            if drift is not None:
                if later:
                    fold_drift_losses(drift, losses[:, in_drift])
                self.drift.add(drift.buckets, drift.matrix)
            if performance is not None:
                if later:
                    fold_performance_losses(performance, labelled_rows, losses[0, labelled])
                self.performance.add(performance.buckets, performance.matrix)

        if later:
            future = _dle_worker().submit(_losses_alone, self.model, self.baseline, rows)
            self._pending = lambda: commit(future.result())
        else:
            commit(losses)
        kept = in_drift | in_perf
        if live:  # counters count what the window holds, never a row also counted as expired
            self.predictions_total += int(kept.sum())
            if labelled is not None:
                self.labels_total += int(labelled.sum())
            if rows.latency is not None:
                self.latency.observe(rows.latency[kept])
        return int((~kept).sum())  # expired: older than both windows

    def settle(self) -> None:
        """Bring a deferred batch's sums into the rings (waiting for its losses): the end of
        a long read, before anything reads the window."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending()

    def add_prediction_counts(self, bucket_ids: np.ndarray, counts: np.ndarray) -> None:
        """Count predictions per performance bucket (also fed by the rebuild's GROUP BY)."""
        if len(bucket_ids) == 0:
            return
        unique, inverse = np.unique(bucket_ids, return_inverse=True)
        matrix = np.zeros((len(unique), self.performance_layout.size))
        matrix[:, self.performance_layout["predictions",]] = np.bincount(inverse, weights=counts)[
            :, None
        ]
        self.performance.add(unique, matrix)

    def add_labels(self, rows: Rows, now: float, live: bool = True) -> tuple[int, int]:
        """Fold labels into their predictions' buckets; returns the (expired, future) counts:
        labels of predictions older than the window, or stamped later than now."""
        self.settle()  # the memo holds the losses of every prediction folded
        perf_ids = self.performance.bucket_of(rows.ts)
        live_rows = self.performance.is_live(perf_ids, now)
        labelled = rows.take(live_rows)
        self._fold_labelled(
            labelled, perf_ids[live_rows], self._absolute(labelled, perf_ids[live_rows])
        )
        if live:
            self.labels_total += int(live_rows.sum())
        future = perf_ids > self.performance.current(now)
        return int((~live_rows & ~future).sum()), int(future.sum())

    def _absolute(self, rows: Rows, bucket_ids: np.ndarray) -> np.ndarray | None:
        """The expected absolute errors of labelled rows: the memo's, predicted where it has
        none; None without keys or loss models (then `fold_performance` predicts them all)."""
        if self.memo is None or rows.key is None or len(rows) == 0:
            return None
        absolute = self.memo.take(bucket_ids, rows.key)
        missing = np.isnan(absolute)
        if missing.any():
            losses = expected_losses(self.model, self.baseline, rows.take(missing), squared=False)
            assert losses is not None  # the memo exists only with loss models
            absolute[missing] = losses[0]
        return absolute

    def _fold_labelled(
        self, rows: Rows, bucket_ids: np.ndarray, absolute: np.ndarray | None = None
    ) -> None:
        if len(rows):
            acc = fold_performance(
                self.performance_layout, self.model, self.baseline, rows, bucket_ids, absolute
            )
            self.performance.add(acc.buckets, acc.matrix)

    def totals(self, now: float) -> Totals:
        self.settle()
        return Totals(
            self.drift_layout,
            self.drift.total(now),
            self.performance_layout,
            self.performance.total(now),
        )


def capture_baseline(model: ModelConfig, rows: Rows) -> Baseline:
    """References plus the baseline's own performance, computed the way the window computes it."""
    baseline = capture_references(model, rows)
    if rows.label is None or not np.isfinite(rows.label).any():
        return baseline
    labelled = rows.take(np.isfinite(rows.label))
    layout = performance_layout(model, baseline)
    acc = fold_performance(
        layout, model, baseline, labelled, np.zeros(len(labelled), dtype=np.int64)
    )
    performance = performance_by_segment(model, layout, acc.matrix[0], min_labeled=1)
    return dataclasses.replace(baseline, performance={k: v for k, v in performance.items() if v})
