"""Every row counted once, under one reason; unknown numbers absent, never invented.

The tables are the user's own (NULL timestamps allowed), filled by hand with a known number of
rows of each kind, so every expected count below is written out, not computed by the exporter.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter

import numpy as np
import pytest
import sqlalchemy as sa

from exporter import refresher
from exporter.app import create_app
from exporter.service import MonitorService
from exporter.storage.prediction_store import Span
from tests.conftest import (
    REGRESSION_MODEL,
    T0,
    Clock,
    make_config,
    metric_value,
    seed_regression,
)


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None)


def _tables(engine: sa.Engine) -> tuple[sa.Table, sa.Table]:
    metadata = sa.MetaData()
    predictions = sa.Table(
        "reg_predictions",
        metadata,
        sa.Column("prediction_id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime, nullable=True),  # the user's table allows NULL
        sa.Column("prediction", sa.Float),
        sa.Column("latency_seconds", sa.Float),
        sa.Column("x1", sa.Float),
        sa.Column("x2", sa.Float),
        sa.Column("color", sa.String(50)),
        sa.Column("tier", sa.String(50)),
    )
    labels = sa.Table(
        "reg_labels",
        metadata,
        sa.Column("prediction_id", sa.String(64), primary_key=True),
        sa.Column("actual", sa.Float),
        sa.Column("labeled_at", sa.DateTime, nullable=False),
    )
    metadata.create_all(engine)
    return predictions, labels


def _prediction(pid: str, ts: float | None, value: float | None = 3.0) -> dict:
    return {
        "prediction_id": pid,
        "created_at": None if ts is None else _utc(ts),
        "prediction": value,
        "latency_seconds": 0.01,
        "x1": 0.5,
        "x2": 1.0,
        "color": "red",
        "tier": "gold",
    }


def test_each_row_is_counted_once_under_one_reason(store_url: str) -> None:
    config = make_config(store_url, models=[REGRESSION_MODEL], reconcile_interval=60)
    engine = sa.create_engine(store_url)
    predictions, labels = _tables(engine)
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    client = create_app(config, service, warmup=False).test_client()
    service.start_warmup().join()  # empty tables: what follows is all read live

    good = [_prediction(f"ok{i}", T0 - 300 + i) for i in range(100)]
    untimed = [_prediction(f"null{i}", None) for i in range(7)]
    bad = [_prediction(f"bad{i}", T0 - 200 + i, None) for i in range(20)]
    bad += [_prediction(f"inf{i}", T0 - 150 + i, math.inf) for i in range(10)]
    future = [_prediction(f"future{i}", T0 + 600 + i) for i in range(6)]
    old = [_prediction(f"old{i}", T0 - 2000 + i) for i in range(2)]  # before both windows
    arrival = _utc(T0 + 30)

    def label(pid: str, value: float | None = 3.1) -> dict:
        return {"prediction_id": pid, "actual": value, "labeled_at": arrival}

    with engine.begin() as conn:
        conn.execute(predictions.insert(), good + untimed + bad + future + old)
        conn.execute(
            labels.insert(),
            [label(f"ok{i}") for i in range(50)]
            + [label(f"ok{i}", None) for i in range(50, 53)]  # invalid_label
            + [label(f"ghost{i}") for i in range(4)]  # label_unknown_prediction
            + [label(f"null{i}") for i in range(7)]  # label_of_rejected_prediction
            + [label(f"bad{i}") for i in range(3)]  # label_of_rejected_prediction
            + [label(f"future{i}") for i in range(6)]  # future_timestamp
            + [label(f"old{i}") for i in range(2)],  # expired
        )
    clock.advance(61)  # a whole sweep: the rows without a time are counted too
    body = client.get("/metrics").text

    def rejected(reason: str) -> float | None:
        return metric_value(body, "model_monitor_rows_rejected_total", reason=reason)

    assert metric_value(body, "model_window_predictions", model_id="reg") == 100
    assert metric_value(body, "model_predictions_total", model_id="reg") == 100
    assert rejected("invalid_timestamp") == 7
    assert rejected("invalid_prediction") == 30  # each bad row once, its label not again
    assert rejected("invalid_label") == 3
    assert rejected("label_unknown_prediction") == 4
    assert rejected("label_of_rejected_prediction") == 10
    assert rejected("future_timestamp") == 6
    assert rejected("expired") == 2
    assert metric_value(body, "model_labels_total", model_id="reg") == 50
    assert metric_value(body, "model_window_labeled_predictions", model_id="reg") == 50

    clock.advance(61)  # counted once: another full reconciliation adds nothing
    again = client.get("/metrics").text
    for reason in ("invalid_timestamp", "invalid_prediction", "label_of_rejected_prediction"):
        assert metric_value(again, "model_monitor_rows_rejected_total", reason=reason) == (
            rejected(reason)
        )
    engine.dispose()


DRIFT = (
    "model_feature_psi",
    "model_feature_kl_divergence",
    "model_feature_js_distance",
    "model_feature_ks_statistic",
    "model_feature_wasserstein_normalized",
    "model_feature_drift_detected",
    "model_feature_bin_ratio",
    "model_prediction_psi",
    "model_prediction_drift_detected",
    "model_drifted_features",
    "model_feature_correlation_drift",
)
ABSENT_WITHOUT_DATA = (
    *DRIFT,
    "model_performance_rmse",
    "model_performance_degradation_ratio",
    "model_fairness_mean_prediction_ratio",
    "model_fairness_excluded_groups",
    "model_group_predictions",
    "model_label_coverage_ratio",
)


def _names(body: str) -> set[str]:
    return {
        line.split("{")[0].split(" ")[0]
        for line in body.splitlines()
        if line and not line.startswith("#")
    }


@pytest.mark.parametrize(("rows", "absent"), [(0, ABSENT_WITHOUT_DATA), (20, DRIFT)])
def test_empty_and_thin_windows_show_no_invented_numbers(tmp_path, rows, absent) -> None:
    """No rows: nothing computed from them. Fewer rows than min_samples (50): no drift."""
    model = {**REGRESSION_MODEL, "protected_attributes": ["tier"]}
    config = make_config(f"sqlite:///{tmp_path / 's.db'}", models=[model])
    seed_regression(config, np.random.default_rng(1), n_live=rows)  # and a baseline
    service = MonitorService(config, clock=Clock(T0))
    client = create_app(config, service, warmup=False).test_client()
    service.start_warmup().join()
    body = client.get("/metrics").text
    assert metric_value(body, "model_window_predictions", model_id="reg") == rows
    assert metric_value(body, "model_baseline_info", model_id="reg") == 1
    assert not _names(body) & set(absent)
    drift = client.get("/api/v1/models/reg/health").get_json()["metrics"]["drift"]
    assert drift["feature_metrics"] == {"x1": None, "x2": None, "color": None}
    assert drift["prediction"] is None


def test_store_buckets_rows_as_the_exporter_does(store_url: str) -> None:
    """The database's bucket of a row (reconciliation's GROUP BY) is floor(time / width), also a
    hair before a boundary, where SQLite's date functions would round up to the next second."""
    config = make_config(store_url, models=[REGRESSION_MODEL])
    engine = sa.create_engine(store_url)
    predictions, _ = _tables(engine)
    epochs = [
        T0 - 60 + k + frac for k in range(20) for frac in (0.0, 0.0004, 0.5, 0.9996, 0.999999)
    ]
    with engine.begin() as conn:
        conn.execute(predictions.insert(), [_prediction(f"b{i}", t) for i, t in enumerate(epochs)])
    service = MonitorService(config)
    source = service.refreshers["reg"].source
    for width in (1, 7, 60):
        expected = Counter(math.floor(t / width) for t in epochs)
        counted = source.count_rows("predictions", width, [Span(T0 - 120, T0)]).by_bucket
        assert counted == dict(expected), width
        # Two spans in one statement: each counted over its own range, the later one's count
        # standing where they share a bucket (here a bucket cut by the first span's end).
        first, second = (T0 - 60, T0 - 52.5), (T0 - 53, T0)
        merged = {
            **Counter(math.floor(t / width) for t in epochs if first[0] <= t < first[1]),
            **Counter(math.floor(t / width) for t in epochs if second[0] <= t <= second[1]),
        }
        spans = Span(*first, before=first[1]), Span(*second)
        assert source.count_rows("predictions", width, spans).by_bucket == merged, width
        # Whole counts beside them in the same statement, also of an empty span and alone.
        empty = Span(T0 - 600, T0 - 500)
        counts = source.count_rows("predictions", width, spans, [Span(*second), spans[0], empty])
        assert counts.by_bucket == merged
        assert counts.totals == [
            sum(second[0] <= t <= second[1] for t in epochs),
            sum(first[0] <= t < first[1] for t in epochs),
            0,
        ]
        alone = source.count_rows("predictions", width, [], [Span(T0 - 120, T0)])
        assert alone.by_bucket == {} and alone.totals == [len(epochs)]
    service.engine.dispose()
    engine.dispose()


def _counts_ahead(monkeypatch: pytest.MonkeyPatch, ahead: bool) -> list[int]:
    """Sweep stretches counted on the second connection: all of them (`ahead`) or none; returns
    the list each such count appends to, to show which path the test took."""
    counted: list[int] = []
    monkeypatch.setattr(refresher, "COUNT_AHEAD_ROWS", 0 if ahead else 1 << 62)
    worker = refresher._count_worker()

    class Spy:
        def submit(self, count):
            counted.append(1)
            return worker.submit(count)

    monkeypatch.setattr(refresher, "_count_worker", Spy)
    return counted


@pytest.mark.parametrize("ahead", [False, True], ids=["after-the-read", "counted-ahead"])
@pytest.mark.parametrize("bucket", [60, 190])
def test_a_sweep_finds_back_filled_rows_once_whichever_count_finds_them(
    store_url: str, bucket: int, ahead: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows back-filled with old times are found by the whole-window sweep, spread over four
    refreshes, and counted once. A stretch's whole slices are first counted in one total; only
    when it differs from the ledger's are they counted per slice. With 190 s buckets the
    ledger's slices are 3 s and the window starts inside one: that cut slice is counted per
    slice (a back-filled row sits in it). Counted with the lookback's statement, or on a second
    connection while the refresh reads (long stretches), the same rows are found."""
    ahead_counts = _counts_ahead(monkeypatch, ahead)
    model = REGRESSION_MODEL | {
        "drift_window": {"length": f"{5 * bucket}s", "bucket": f"{bucket}s"}
    }
    config = make_config(store_url, models=[model], reconcile_interval=40)
    engine = sa.create_engine(store_url)
    predictions, _ = _tables(engine)
    boundary = math.ceil(T0 / bucket) * bucket
    keep = boundary - 4 * bucket  # the drift window's start, kept through the sweep below
    while bucket % 3 and keep % 3 == 0:
        boundary, keep = boundary + bucket, keep + bucket  # 190 s: a start inside a 3 s slice
    now = boundary + 1.0
    clock = Clock(now)
    service = MonitorService(config, clock=clock)
    client = create_app(config, service, warmup=False).test_client()
    base = np.linspace(keep + 10, now - 100, 200)
    with engine.begin() as conn:
        conn.execute(predictions.insert(), [_prediction(f"b{i}", t) for i, t in enumerate(base)])
    service.start_warmup().join()  # read, then a first whole sweep: it restarts at `keep`
    rng = np.random.default_rng(7)
    late = [keep + 0.5, *rng.uniform(keep + 5, now - 140, 20)]  # behind the 30 s lookback
    with engine.begin() as conn:
        conn.execute(predictions.insert(), [_prediction(f"late{i}", t) for i, t in enumerate(late)])

    for _ in range(4):  # 4 x 10 s: one whole sweep of the window, no bucket boundary crossed
        clock.advance(10)
        body = client.get("/metrics").text
        assert metric_value(body, "model_window_predictions", model_id="reg") <= 221
    assert metric_value(body, "model_window_predictions", model_id="reg") == 221
    assert metric_value(body, "model_predictions_total", model_id="reg") == 21  # counted live
    assert metric_value(body, "model_monitor_late_rows_total", stream="predictions") == 21
    clock.advance(41)  # another whole sweep adds nothing
    again = client.get("/metrics").text
    assert metric_value(again, "model_predictions_total", model_id="reg") == 21
    assert metric_value(again, "model_monitor_late_rows_total", stream="predictions") == 21
    assert (len(ahead_counts) >= 4) == ahead
    service.engine.dispose()
    engine.dispose()


def _served(store_url: str, interval: float, base: np.ndarray):
    """The regression model's tables filled with predictions at times `base`, and an exporter
    (service, clock at T0, client) whose window is built from them; `interval`: the sweep's
    `reconcile_interval`."""
    config = make_config(store_url, models=[REGRESSION_MODEL], reconcile_interval=interval)
    engine = sa.create_engine(store_url)
    predictions, _ = _tables(engine)
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    client = create_app(config, service, warmup=False).test_client()
    with engine.begin() as conn:
        conn.execute(predictions.insert(), [_prediction(f"b{i}", t) for i, t in enumerate(base)])
    service.start_warmup().join()
    return engine, predictions, clock, service, client


@pytest.mark.parametrize("ahead", [False, True], ids=["after-the-read", "counted-ahead"])
def test_a_row_back_filled_where_the_read_moved_the_lookback_on_is_found_at_once(
    store_url: str, ahead: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh plans its counts before it reads (so a long count can run meanwhile), so its
    lookback reaches back from where the read starts, not from where it ends: a row
    back-filled 25 s behind the start (35 s behind the end) is found by the very next scrape,
    counted with the lookback's statement or ahead of the read."""
    ahead_counts = _counts_ahead(monkeypatch, ahead)
    base = np.linspace(T0 - 300, T0 - 10, 100)  # the drift window: 10 minutes
    engine, predictions, clock, service, client = _served(store_url, 5, base)
    last = float(base[-1])
    for k in range(1, 6):
        # 25 s behind the last row read: inside the lookback as planned, 35 s behind (outside
        # it) once the read has taken the new row 10 s on.
        rows = [_prediction(f"late{k}", last - 25), _prediction(f"live{k}", last + 10)]
        with engine.begin() as conn:
            conn.execute(predictions.insert(), rows)
        last += 10
        clock.advance(10)
        body = client.get("/metrics").text
        assert metric_value(body, "model_monitor_late_rows_total", stream="predictions") == k
        assert metric_value(body, "model_window_predictions", model_id="reg") == 100 + 2 * k
    assert (len(ahead_counts) >= 5) == ahead
    service.engine.dispose()
    engine.dispose()


@pytest.mark.parametrize("ahead", [False, True], ids=["after-the-read", "counted-ahead"])
def test_a_late_row_in_the_read_positions_own_slice_is_found_while_the_stream_is_idle(
    store_url: str, ahead: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slice the read position is in is counted per slice at every refresh: when the
    stream then goes quiet, a row that commits late into that slice (behind the position) is
    found by the next scrape, not left to a sweep that stops short of the position."""
    ahead_counts = _counts_ahead(monkeypatch, ahead)
    last = T0 - 9.1  # the newest row: the position ends 0.9 s into its 1 s slice
    engine, predictions, clock, service, client = _served(
        store_url, 3600, np.linspace(T0 - 300, last, 100)
    )
    clock.advance(10)
    client.get("/metrics")
    with engine.begin() as conn:  # committed late, 0.7 s behind the position, in its slice
        conn.execute(predictions.insert(), [_prediction("late", last - 0.7)])
    clock.advance(10)
    body = client.get("/metrics").text
    assert metric_value(body, "model_monitor_late_rows_total", stream="predictions") == 1
    assert metric_value(body, "model_window_predictions", model_id="reg") == 101
    assert bool(ahead_counts) == ahead
    service.engine.dispose()
    engine.dispose()


def _served_with_text_time(tmp_path, text: str):
    """`_served` on SQLite with 100 predictions up to T0 - 10 (the read position), then one more
    row, "leap", whose stored time is `text` (SQLite keeps any text in a DATETIME column)."""
    engine, predictions, clock, service, client = _served(
        f"sqlite:///{tmp_path / 's.db'}", 60, np.linspace(T0 - 300, T0 - 10, 100)
    )
    with engine.begin() as conn:
        conn.execute(predictions.insert(), [_prediction("leap", T0 - 5)])
        conn.execute(
            predictions.update()
            .where(predictions.c.prediction_id == "leap")
            .values(created_at=sa.literal_column(f"'{text}'"))
        )
    return engine, predictions, clock, service, client


@pytest.mark.parametrize(
    ("text", "late"),
    [("2027-01-15 07:59:61.000000", False), ("2027-01-15 07:58:61.000000", True)],
)
def test_a_text_time_that_is_no_time_is_counted_once_however_late_it_commits(
    tmp_path, text: str, late: bool
) -> None:
    """A value in the column's own layout that is no instant (a 61st second) sorts among the
    times. Committed behind the read position (07:59:50), no read returns it: reconciliation
    counts the store's rows per whole-second prefix, finds more under that prefix than the reads
    counted, and rejects the row once (it used to be left uncounted). Ahead of the position,
    the read rejects it, and reconciliation finds nothing more to count."""
    assert _utc(T0).isoformat(sep=" ") == "2027-01-15 08:00:00"
    engine, _, clock, service, client = _served_with_text_time(tmp_path, text)
    seen = []
    for _ in range(8):  # a sweep a minute (reconcile_interval): it passes the row 3 times
        clock.advance(30)
        body = client.get("/metrics").text
        rejected = metric_value(
            body, "model_monitor_rows_rejected_total", reason="invalid_timestamp"
        )
        late_rows = metric_value(body, "model_monitor_late_rows_total", stream="predictions")
        seen.append((rejected, late_rows))
        assert metric_value(body, "model_window_predictions", model_id="reg") == 100
    # found once, then never again, sweep after sweep
    assert seen[-6:] == [(1, 1 if late else 0)] * 6, seen
    assert all(r <= 1 for r, _ in seen), seen
    service.engine.dispose()
    engine.dispose()


def test_a_text_time_that_sorts_in_the_window_but_is_no_time_is_rejected_once(tmp_path) -> None:
    """SQLite keeps any text in a DATETIME column. A value in the column's own layout that is
    no instant (a 61st second) sorts among the times, so the read returns it: it is rejected
    once, and the read goes on from the last row that has a time (it used to make that time
    NaN, and every later refresh failed on the bounds it planned from it)."""
    engine, predictions, clock, service, client = _served_with_text_time(
        tmp_path, "2027-01-15 07:59:60.000000"
    )
    assert _utc(T0).isoformat(sep=" ") == "2027-01-15 08:00:00"  # the text sorts before T0
    clock.advance(10)
    body = client.get("/metrics").text
    assert metric_value(body, "model_monitor_rows_rejected_total", reason="invalid_timestamp") == 1
    for k in range(1, 4):  # later rows are read and counted; the model stays up
        with engine.begin() as conn:
            conn.execute(predictions.insert(), [_prediction(f"next{k}", T0 + 10 * k - 5)])
        clock.advance(10)
        body = client.get("/metrics").text
        assert metric_value(body, "model_window_predictions", model_id="reg") == 100 + k
        assert metric_value(body, "model_monitor_up", model_id="reg") == 1
        assert metric_value(body, "model_monitor_refresh_errors_total", model_id="reg") == 0
        assert (
            metric_value(body, "model_monitor_rows_rejected_total", reason="invalid_timestamp") == 1
        )
    service.engine.dispose()
    engine.dispose()
