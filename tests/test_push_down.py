"""The push-down route (storage/push_down.py) against the row fold, on SQLite, PostgreSQL and
DuckDB: the database's sums of every bucket equal `sufficient_stats.fold_drift` of the same
rows read and parsed by the exporter, rejections and the rows left to the fold included, on
data built to hit every edge: values on the baseline's bin edges and beyond its range, NULL,
NaN and infinities, text in numeric columns (SQLite), integer columns, category values equal to
the exporter's own label values, new categories, invalid predictions, another model's rows in
a shared table, and epoch, timestamp and text time columns (odd text included). Then the
refresher's use of it (`store.push_down`): a window rebuilt from sums is the window rebuilt
from rows, live reads after included; models it cannot serve, and sums past the statement
timeout, are rebuilt from rows; `auto` chooses by store."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import refresher as refresher_module
from exporter.baseline import NumericReference
from exporter.cli import capture
from exporter.config import Config, parse_config
from exporter.rows import Rejections, parse_rows
from exporter.service import MonitorService
from exporter.storage import push_down
from exporter.storage.engine import DeadlineExceededError, create_engine, snapshot
from exporter.storage.prediction_store import ID, TS, ModelSource, Span
from exporter.storage.push_down import drift_sums_in_parts, fine_bin, unsupported
from exporter.sufficient_stats import drift_layout, fold_drift
from exporter.window import capture_baseline
from tests import test_rebuild_labels as rebuild_labels
from tests.conftest import T0, Clock, make_config

T = 1_800_000_000.0  # the live rows' first minute
WIDTH = 60
LIVE = 1800.0  # seconds of live rows: 30 buckets


FEATURES: dict[str, Any] = {
    "x1": {"type": "numeric", "valid_range": [-2, 2]},
    "x2": "numeric",
    "n3": "numeric",
    "color": "categorical",
    "code": "categorical",
}


def _model(kind: str, features: tuple[str, ...] = tuple(FEATURES)) -> Any:
    model: dict[str, Any] = {
        "model_id": "m",
        "kind": kind,
        "source": {"table": "preds", "model_column": "model_name"},
        "features": {n: FEATURES[n] for n in features},
        "protected_attributes": ["tier"],
        "estimation": {"enabled": False},
        "multivariate": {"enabled": False},
        "drift_window": {"length": "1h", "bucket": "1m"},
    }
    if kind == "binary_classification":
        model["source"]["score_column"] = "score"
    else:
        model["fairness"] = {"regression_cutoff": 0.5}
    return parse_config({"store": {"url": "sqlite:///unused.db"}, "models": [model]}).models[0]


def _table(time_kind: str) -> sa.Table:
    time_type = {
        "epoch": sa.Float(),
        "datetime": sa.DateTime(timezone=True),
        "text": sa.String(),
    }[time_kind]
    return sa.Table(
        "preds",
        sa.MetaData(),
        sa.Column("prediction_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("model_name", sa.String),
        sa.Column("created_at", time_type),
        sa.Column("prediction", sa.Float),
        sa.Column("score", sa.Float),
        sa.Column("x1", sa.Float),
        sa.Column("x2", sa.Float),
        sa.Column("n3", sa.Integer),
        sa.Column("color", sa.String),
        sa.Column("code", sa.Integer),
        sa.Column("tier", sa.String),
        sa.Index("preds_time", "created_at", "prediction_id"),
    )


def _time(time_kind: str, epoch: float) -> Any:
    if time_kind == "epoch":
        return epoch
    at = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return at if time_kind == "datetime" else at.isoformat(sep=" ")


def _rows(rng: np.random.Generator, kind: str, start: float, n: int, first_id: int) -> pd.DataFrame:
    """Clean rows of model m, a second apart on average, from `start`."""
    x1 = rng.normal(0, 1, n)
    score = 1 / (1 + np.exp(-x1))
    return pd.DataFrame(
        {
            "prediction_id": np.arange(first_id, first_id + n),
            "model_name": "m",
            "created_at": np.sort(rng.uniform(start, start + n, n)),
            "prediction": (score > 0.5).astype(float) if kind != "regression" else x1 * 2,
            "score": score,
            "x1": x1,
            "x2": rng.exponential(2.0, n),
            "n3": rng.integers(0, 10, n).astype(object),
            "color": rng.choice(["red", "green", "blue"], n).astype(object),
            "code": rng.integers(1, 4, n).astype(object),
            "tier": rng.choice(["a", "b", "c"], n).astype(object),
        }
    )


def _spoil(
    rng: np.random.Generator, frame: pd.DataFrame, edges: np.ndarray, dialect: str, kind: str
) -> pd.DataFrame:
    """The live rows made hostile (see the module docstring)."""
    frame = frame.astype({c: object for c in ("x1", "x2", "prediction", "score")})
    n = len(frame)

    def some(share: float) -> np.ndarray:
        return rng.random(n) < share

    on_edge = some(0.1)
    frame.loc[on_edge, "x1"] = rng.choice(edges, int(on_edge.sum()))
    frame.loc[some(0.05), "x1"] = 5.0  # beyond the valid range and the baseline's
    frame.loc[some(0.03), "x1"] = None
    frame.loc[some(0.02), "n3"] = None
    frame.loc[some(0.02), "code"] = None
    for column, values in (
        ("color", ["all", "other", "~x", "new", None]),
        ("tier", ["other", "all", None, "d"]),
    ):
        chosen = some(0.1)
        frame.loc[chosen, column] = rng.choice(np.array(values, dtype=object), int(chosen.sum()))
    frame.loc[some(0.02), "prediction"] = None
    if kind == "binary_classification":
        frame.loc[some(0.02), "prediction"] = 2.0
        frame.loc[some(0.02), "score"] = 1.5
        frame.loc[some(0.01), "score"] = None
    if dialect == "sqlite":  # text where a number belongs: typed by the row fold
        frame.loc[some(0.02), "x2"] = "abc"
        frame.loc[some(0.01), "prediction"] = "n/a"
    else:  # NaN and infinities, which SQLite does not store
        for column in ("x1", "x2", "prediction"):
            for value in (float("nan"), float("inf"), float("-inf")):
                frame.loc[some(0.01), column] = value
    return frame


def _url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    if dialect == "duckdb":
        return f"duckdb:///{tmp_path / 'store.duckdb'}"
    return request.getfixturevalue("pg_url")


def _fold_rows(
    source: ModelSource, frame: pd.DataFrame, layout: Any, baseline: Any
) -> tuple[dict[int, np.ndarray], Rejections]:
    """The row route: parse and fold read rows, by bucket."""
    model = source.model
    epoch = source.time_format("predictions").to_epoch(frame[TS])
    rows, rejected = parse_rows(frame, model, epoch)
    buckets = np.floor(rows.ts / WIDTH).astype(np.int64)
    acc = fold_drift(layout, model, baseline, rows, buckets)
    return dict(zip(acc.buckets.tolist(), acc.matrix, strict=True)), rejected


NULLABLE = ("n3", "color", "code", "tier")

CASES = [
    ("sqlite", "epoch"),
    ("sqlite", "text"),
    ("postgresql", "epoch"),
    ("postgresql", "datetime"),
    ("duckdb", "epoch"),
    ("duckdb", "datetime"),
]


@pytest.mark.parametrize("kind", ["regression", "binary_classification"])
@pytest.mark.parametrize(("dialect", "time_kind"), CASES)
def test_bucket_sums_equal_the_row_fold(
    dialect: str, time_kind: str, kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _sums_against_rows(dialect, time_kind, kind, tuple(FEATURES), tmp_path, request)


@pytest.mark.parametrize("features", [("x1", "color"), ("color",)], ids=["one-numeric", "none"])
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "duckdb"])
def test_bucket_sums_of_models_with_fewer_numeric_features(
    dialect: str, features: tuple[str, ...], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """No correlation sums (one numeric feature), no numeric feature at all: the output's
    bins and the categories alone."""
    _sums_against_rows(dialect, "epoch", "regression", features, tmp_path, request)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "duckdb"])
def test_bucket_sums_without_a_baseline(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Before the first capture: counts, quality and fairness of outputs, no bins."""
    _sums_against_rows(
        dialect, "epoch", "binary_classification", tuple(FEATURES), tmp_path, request, False
    )


def _sums_against_rows(
    dialect: str,
    time_kind: str,
    kind: str,
    features: tuple[str, ...],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    with_baseline: bool = True,
) -> None:
    rng = np.random.default_rng(hash((dialect, time_kind, kind, features)) % 2**32)
    engine = create_engine(_url(dialect, tmp_path, request))
    table = _table(time_kind)
    table.metadata.create_all(engine)
    model = _model(kind, features)
    source = ModelSource(engine, model)

    def insert(frame: pd.DataFrame) -> None:
        """As the driver takes them: untyped columns (no float conversion of the text that
        belongs in no numeric column), NULL for a missing category."""
        frame = frame.assign(created_at=[_time(time_kind, t) for t in frame["created_at"]])
        records = [
            {k: None if k in NULLABLE and pd.isna(v) else v for k, v in r.items()}
            for r in frame.to_dict("records")
        ]
        untyped = sa.table("preds", *(sa.column(c) for c in frame.columns))
        with engine.begin() as conn:
            conn.execute(untyped.insert(), records)

    insert(_rows(rng, kind, T - 7200, 2000, 0))
    reference = source.read_predictions(Span(T - 7200, T - 1), 10**6)
    epoch = source.time_format("predictions").to_epoch(reference[TS])
    baseline = capture_baseline(model, parse_rows(reference, model, epoch)[0])
    assert unsupported(model, baseline) is None
    numeric = [baseline.features[n] for n in model.numeric_features]
    edges = np.concatenate([r.edges for r in (*numeric, baseline.prediction)])
    live = _spoil(rng, _rows(rng, kind, T, int(LIVE), 10_000), edges, dialect, kind)
    other = _rows(rng, kind, T, 300, 20_000).assign(model_name="other")  # not model m's
    insert(pd.concat([live, other]))
    if time_kind == "text":  # text in the range that SQL cannot vouch for: the row fold's
        second = _time(time_kind, T + 600)[:19]
        odd = [
            second[:17] + "61",  # no time at all
            second + ".5.5+00:00",  # a fraction pandas does not read
            second + ".+00:00",
            second + ".25",  # another layout (no offset)
            second.replace(" ", "T") + ".75+00:00",
        ]
        bad = _rows(rng, kind, T + 600, len(odd), 30_000)
        with engine.begin() as conn:
            for record, text in zip(bad.to_dict("records"), odd, strict=True):
                conn.execute(table.insert(), record | {"created_at": text})

    if not with_baseline:
        baseline = None
    layout = drift_layout(model, baseline)
    span = Span(T, T + LIVE)
    frame = source.read_predictions(span, 10**6)
    expected, expected_rejected = _fold_rows(source, frame, layout, baseline)

    # In parts of about 97 rows (no time budget), cut at bucket edges by the store's count:
    # two statement shapes, each built once.
    with snapshot(engine) as conn:
        sums, parts = drift_sums_in_parts(source, layout, baseline, WIDTH, span, conn, 0.0, 97)
    assert len(parts) > 5
    got = dict(zip(sums.buckets.tolist(), sums.matrix, strict=True))
    left, left_rejected = _fold_rows(source, frame[frame[ID].isin(sums.left_ids)], layout, baseline)
    for bucket, vector in left.items():
        got[bucket] = got.get(bucket, np.zeros(layout.size)) + vector

    assert sorted(got) == sorted(expected)
    for bucket, vector in expected.items():
        np.testing.assert_allclose(got[bucket], vector, rtol=1e-9, atol=1e-8, err_msg=str(bucket))
    rejected = Counter(sums.rejected) + left_rejected.counts  # (drops the zero counts)
    assert rejected == expected_rejected.counts

    # The data reached every case it was built for.
    total = sum(expected.values())
    for stat, name in (("missing", "x1"), ("out_of_range", "x1"), ("new_category", "color")):
        if name in model.features and (baseline is not None or stat != "new_category"):
            assert layout.read(total, stat, name).sum() > 0, (stat, name)
    assert expected_rejected.counts["invalid_prediction"] > 0
    if dialect == "sqlite":
        assert len(sums.left_ids) > 0
    elif "x2" in model.features:
        assert layout.read(total, "type_error", "x2").sum() > 0
    engine.dispose()


def test_models_with_per_row_terms_are_refused(tmp_path: Path) -> None:
    """A model whose drift sums need Python per row (here the multivariate error) is named,
    not summed without them."""
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    table = _table("epoch")
    table.metadata.create_all(engine)
    model = _model("regression")
    model = model.model_copy(
        update={"multivariate": model.multivariate.model_copy(update={"enabled": True})}
    )
    with engine.begin() as conn:
        rows = _rows(np.random.default_rng(0), "regression", T - 7200, 2000, 0)
        conn.execute(table.insert(), rows.to_dict("records"))
    source = ModelSource(engine, model)
    reference = source.read_predictions(Span(T - 7200, T), 10**6)
    epoch = source.time_format("predictions").to_epoch(reference[TS])
    baseline = capture_baseline(model, parse_rows(reference, model, epoch)[0])
    assert baseline.multivariate is not None
    assert "multivariate" in (unsupported(model, baseline) or "")
    layout = drift_layout(model, baseline)
    with snapshot(engine) as conn, pytest.raises(ValueError, match="multivariate"):
        drift_sums_in_parts(source, layout, baseline, WIDTH, Span(T, T + 60), conn, 5.0)
    engine.dispose()


@settings(max_examples=40, deadline=None)
@given(
    reference=st.lists(
        st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False), min_size=1, max_size=300
    ),
    extra=st.lists(st.floats(allow_nan=False), max_size=50),
)
def test_fine_bins_in_sql_equal_numpy(reference: list[float], extra: list[float]) -> None:
    """`fine_bin` against `NumericReference.bin` (numpy), on the edges themselves, their
    neighbours and any other double."""
    ref = NumericReference.capture(np.array(reference))
    edges = ref.edges
    values = np.concatenate(
        [edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf), np.array(extra)]
    )
    values = values[np.isfinite(values)]
    engine = sa.create_engine("sqlite://")
    table = sa.Table("v", sa.MetaData(), sa.Column("i", sa.Integer), sa.Column("x", sa.Float))
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"i": i, "x": float(x)} for i, x in enumerate(values)])
        got = conn.execute(sa.select(fine_bin(table.c.x, ref)).order_by(table.c.i)).scalars()
        assert list(got) == ref.bin(values).tolist()


def _filled(config: Config) -> Config:
    """`config` (model `same`) on test_rebuild_labels' table, filled, with a baseline."""
    engine = sa.create_engine(config.store.url)
    rebuild_labels._fill(engine, config.models[0].performance_window.buckets)
    engine.dispose()
    capture(config, "same", T0 - 7200, T0 - 3600, command="test")
    return config


def _routed(config: Config, push_down: str) -> Config:
    return config.model_copy(
        update={"store": config.store.model_copy(update={"push_down": push_down})}
    )


@pytest.mark.parametrize(
    "windows",
    [("10m", "20m"), ("20m", "10m")],  # the performance window longer, or the drift window
    ids=["performance-longer", "drift-longer"],
)
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "duckdb"])
def test_a_window_rebuilt_from_sums_is_the_window_rebuilt_from_rows(
    dialect: str,
    windows: tuple[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`store.push_down`: the rebuild by the database's sums leaves the window, rejections,
    ledgers and read positions the rows' rebuild leaves, and so do the live reads after it
    (test_rebuild_labels' table: rows of every kind, labels in the predictions table). The
    sums come in parts here: a first one of 97 rows, cut at a bucket edge."""
    monkeypatch.setattr(push_down, "FIRST_PART_ROWS", 97)
    drift, performance = windows
    model = rebuild_labels.MODEL | {
        "drift_window": {"length": drift, "bucket": "1m"},
        "performance_window": {"length": performance, "bucket": "1m"},
        "estimation": {"enabled": False},
        "multivariate": {"enabled": False},
    }
    config = _filled(
        make_config(
            _url(dialect, tmp_path, request), [model], batch_rows=200, reconcile_interval=60
        )
    )
    if dialect == "sqlite":  # a text time that is no instant: rejected once on either route
        engine = sa.create_engine(config.store.url)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO same_predictions SELECT 'leap', '2027-01-15 07:55:61.000000', "
                "prediction, x1, x2, color, tier, actual, labeled_at FROM same_predictions "
                "WHERE prediction_id = 'live0'"
            )
        engine.dispose()
    rows, sums = _routed(config, "off"), _routed(config, "on")
    clock = Clock(T0)
    routes = {"sums": MonitorService(sums, clock=clock), "rows": MonitorService(rows, clock=clock)}
    states: dict[str, list[dict]] = {name: [] for name in routes}
    with caplog.at_level(logging.INFO, logger="exporter.refresher"):
        for name, service in routes.items():  # the rebuild at T0
            service.start_warmup().join()
            states[name].append(rebuild_labels._state(service.refreshers["same"]))
    assert "drift window rebuilt from the store's sums" in caplog.text
    assert routes["sums"].refreshers["same"].push_down
    engine = sa.create_engine(config.store.url)
    rebuild_labels._label_later(engine)
    engine.dispose()
    for step in (300, 60, 60):
        clock.advance(step)
        for name, service in routes.items():
            service.refreshers["same"].refresh()
            states[name].append(rebuild_labels._state(service.refreshers["same"]))
    for got, want in zip(states["sums"], states["rows"], strict=True):
        np.testing.assert_allclose(got.pop("drift"), want.pop("drift"), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(
            got.pop("performance"), want.pop("performance"), rtol=1e-9, atol=1e-9
        )
        assert got == want
    assert states["rows"][0]["rejected"].keys() >= {"invalid_prediction", "expired"}
    for service in routes.values():
        service.engine.dispose()


def test_models_the_sums_cannot_serve_are_rebuilt_from_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With estimation on (the default), the model's window is rebuilt from rows and says why."""
    config = _filled(make_config(f"sqlite:///{tmp_path / 'store.db'}", [rebuild_labels.MODEL]))
    service = MonitorService(_routed(config, "on"), clock=Clock(T0))
    with caplog.at_level(logging.INFO, logger="exporter.refresher"):
        service.start_warmup().join()
    assert "window rebuilt from rows, not sums: DLE" in caplog.text
    assert service.refreshers["same"].report.window_predictions > 0
    service.engine.dispose()


def test_sums_past_the_statement_timeout_leave_the_rebuild_to_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement of the sums that the watchdog ends (faked here: no store here is slow on
    demand) costs no failed refresh: the window is rebuilt from rows, and stays so."""
    model = rebuild_labels.MODEL | {
        "estimation": {"enabled": False},
        "multivariate": {"enabled": False},
    }
    config = _routed(_filled(make_config(f"sqlite:///{tmp_path / 'store.db'}", [model])), "on")

    def too_slow(*_args: Any, **_kwargs: Any) -> None:
        raise DeadlineExceededError.of("SELECT ...", {}, 5.0)

    monkeypatch.setattr(refresher_module, "drift_sums_in_parts", too_slow)
    service = MonitorService(config, clock=Clock(T0))
    with caplog.at_level(logging.INFO, logger="exporter.refresher"):
        service.start_warmup().join()
    refresher = service.refreshers["same"]
    assert "took longer than store.timeouts.statement" in caplog.text
    assert not refresher.push_down and refresher.status.errors_total == 0
    assert refresher.status.up and refresher.report.window_predictions > 0
    service.engine.dispose()


@pytest.mark.parametrize(("dialect", "pushed"), [("sqlite", False), ("duckdb", True)])
def test_auto_pushes_down_where_it_was_measured_faster(
    dialect: str, pushed: bool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`store.push_down: auto` (the default): sums on DuckDB, rows on SQLite and PostgreSQL
    (docs/performance.md, Push-down)."""
    config = make_config(_url(dialect, tmp_path, request), models=[rebuild_labels.MODEL])
    assert config.store.push_down == "auto"
    service = MonitorService(config, clock=Clock(T0))
    assert service.refreshers["same"].push_down is pushed
    service.engine.dispose()
