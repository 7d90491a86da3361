"""A rebuild takes labels that live in the predictions table from the predictions it reads, and
its label stream reads only keys and fetches what its ledger lacks: the window, the rejection
counts and the ledgers must be exactly what the label stream read in full gives (the route
every release before this one took), for the rows either route must leave to the other: labels
not valid, not yet arrived, of rejected, untimed or expired predictions, of predictions older
than the drift window but inside the performance window. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
import sqlalchemy as sa

from exporter.cli import capture
from exporter.refresher import ModelRefresher
from exporter.service import MonitorService
from tests.conftest import T0, Clock, make_config, regression_rows

MODEL = {
    "model_id": "same",
    "kind": "regression",
    "source": {
        "table": "same_predictions",
        "labels": {"column": "actual", "arrival_column": "labeled_at"},
    },
    "features": {"x1": "numeric", "x2": "numeric", "color": "categorical"},
    "segments": [{"column": "tier", "values": ["gold", "silver"]}],
    "min_samples": 50,
    "min_labeled": 10,
}


def _utc(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None)


def _fill(engine: sa.Engine, performance_buckets: int) -> int:
    """The table, with rows of every kind; returns how many label rows a read at T0 returns."""
    metadata = sa.MetaData()
    table = sa.Table(
        "same_predictions",
        metadata,
        sa.Column("prediction_id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime, nullable=True),
        sa.Column("prediction", sa.Float),
        sa.Column("x1", sa.Float),
        sa.Column("x2", sa.Float),
        sa.Column("color", sa.String(50)),
        sa.Column("tier", sa.String(50)),
        sa.Column("actual", sa.Float),
        sa.Column("labeled_at", sa.DateTime, nullable=True),
    )
    metadata.create_all(engine)
    rng = np.random.default_rng(5)
    rows: list[dict] = []

    def add(kind: str, n: int, ts, arrival, prediction=None, actual=None) -> None:
        d = regression_rows(rng, n)
        for i in range(n):
            rows.append(
                {
                    "prediction_id": f"{kind}{i}",
                    "created_at": _utc(ts[i]),
                    "prediction": float(d["prediction"][i]) if prediction is None else prediction,
                    "x1": float(d["x1"][i]),
                    "x2": float(d["x2"][i]),
                    "color": str(d["color"][i]),
                    "tier": str(d["tier"][i]),
                    "actual": float(d["actual"][i]) if actual is None else actual[i],
                    "labeled_at": _utc(arrival[i]),
                }
            )

    history = np.sort(rng.uniform(T0 - 7200, T0 - 3600, 1200))
    add("history", 1200, history, history + 1)  # the baseline, DLE's loss models learn from
    live = np.sort(rng.uniform(T0 - 700, T0 - 2, 600))  # a quarter before the shorter window
    arrival = live + rng.uniform(5, 400, 600)  # some arrive after the read at T0
    arrival[rng.random(600) < 0.3] = math.nan  # not labelled yet
    add("live", 600, live, [None if math.isnan(a) else a for a in arrival])
    add("unlabelled", 10, T0 - rng.uniform(5, 500, 10), [T0 - 3] * 10, actual=[None] * 10)
    add("nan", 4, T0 - rng.uniform(5, 500, 4), [T0 - 3] * 4, actual=[math.nan] * 4)
    add("badprediction", 8, T0 - rng.uniform(5, 500, 8), [T0 - 3] * 8, prediction=math.inf)
    add("untimed", 5, [None] * 5, [T0 - 3] * 5)
    add("expired", 6, [T0 - 2000] * 6, [T0 - 100] * 6)
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    # The label stream's span at T0 (read lag 1 s).
    start, until = _utc(T0 - (performance_buckets - 1) * 60), _utc(T0 - 1)
    return sum(1 for r in rows if r["labeled_at"] is not None and start <= r["labeled_at"] <= until)


class _WholeReads(ModelRefresher):
    """The route before: the label stream reads every label row whole."""

    _labels_in_predictions = property(lambda self: False)  # type: ignore[assignment]


def _state(refresher: ModelRefresher) -> dict:
    totals = refresher.window.totals(refresher.clock())
    return {
        "drift": totals.drift,
        "performance": totals.performance,
        "rejected": dict(+refresher.status.rejected),
        "late": dict(+refresher.status.late_rows),
        "ledgers": (len(refresher._predictions.ledger), len(refresher._labels.ledger)),
        "cursors": (refresher._predictions.cursor, refresher._labels.cursor),
        "window_predictions": refresher.report.window_predictions,
        "labelled": refresher.report.window_labeled,
        "labels_total": refresher.window.labels_total,
    }


def _label_later(engine: sa.Engine) -> None:
    """After T0: new predictions logged with their labels, and labels for older predictions."""
    table = sa.Table("same_predictions", sa.MetaData(), autoload_with=engine)
    rng = np.random.default_rng(6)
    d = regression_rows(rng, 300)
    ts = np.sort(rng.uniform(T0 + 5, T0 + 250, 300))
    rows = [
        {
            "prediction_id": f"new{i}",
            "created_at": _utc(ts[i]),
            "prediction": float(d["prediction"][i]),
            "x1": float(d["x1"][i]),
            "x2": float(d["x2"][i]),
            "color": str(d["color"][i]),
            "tier": str(d["tier"][i]),
            "actual": float(d["actual"][i]) if i % 10 else None,  # some not valid
            "labeled_at": _utc(ts[i]),
        }
        for i in range(300)
    ]
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
        unlabelled = table.c.labeled_at.is_(None) & table.c.prediction_id.like("live%")
        conn.execute(table.update().where(unlabelled).values(actual=1.5, labeled_at=_utc(T0 + 120)))


@pytest.mark.parametrize(
    "windows",
    [("10m", "20m"), ("20m", "10m")],  # the performance window longer, or the drift window
    ids=["performance-longer", "drift-longer"],
)
def test_labels_taken_from_their_predictions_count_as_the_label_stream_read_whole(
    store_url: str, windows: tuple[str, str]
) -> None:
    drift, performance = windows
    model = MODEL | {
        "drift_window": {"length": drift, "bucket": "1m"},
        "performance_window": {"length": performance, "bucket": "1m"},
    }
    config = make_config(store_url, models=[model], batch_rows=200)
    engine = sa.create_engine(store_url)
    in_span = _fill(engine, config.models[0].performance_window.buckets)
    capture(config, "same", T0 - 7200, T0 - 3600, command="test")
    clock = Clock(T0)
    routes = {
        "taken": MonitorService(config, clock=clock),
        "whole": MonitorService(config, clock=clock),
    }
    refreshers = {name: service.refreshers["same"] for name, service in routes.items()}
    refreshers["whole"].__class__ = _WholeReads
    reads: dict[str, list[int]] = {name: [] for name in routes}
    for name, refresher in refreshers.items():
        plain = refresher.source.read_labels

        def counted(*args, plain=plain, out=reads[name], **kwargs):
            frame = plain(*args, **kwargs)
            out.append(len(frame))
            return frame

        refresher.source.read_labels = counted
    states: dict[str, list[dict]] = {name: [] for name in routes}
    for name, service in routes.items():  # the rebuild at T0
        service.start_warmup().join()
        states[name].append(_state(refreshers[name]))
    rebuilt = {name: sum(r) for name, r in reads.items()}
    assert rebuilt["whole"] == in_span  # the route before: every label row of the span read
    # Only the labels no prediction read could take: invalid, of rejected, untimed or expired
    # predictions, of predictions before the drift window (a third of the span's at most).
    assert 0 < rebuilt["taken"] < 0.5 * in_span, (rebuilt, in_span)
    _label_later(engine)
    engine.dispose()
    for step in (300, 60, 60):  # live: labels with their predictions, labels later
        clock.advance(step)
        for name, refresher in refreshers.items():
            refresher.refresh()
            states[name].append(_state(refresher))
    for got, want in zip(states["taken"], states["whole"], strict=True):
        np.testing.assert_allclose(got.pop("drift"), want.pop("drift"), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(
            got.pop("performance"), want.pop("performance"), rtol=1e-9, atol=1e-9
        )
        assert got == want
    first = states["whole"][0]
    assert first["rejected"].keys() >= {"invalid_label", "invalid_prediction", "expired"}
    assert first["labelled"] > 100 and states["whole"][1]["labels_total"] > 200
    live = {name: sum(r) - rebuilt[name] for name, r in reads.items()}
    assert live["taken"] < live["whole"], live  # the labels logged with predictions not read again
    for service in routes.values():
        service.engine.dispose()
