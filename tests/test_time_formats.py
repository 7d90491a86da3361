"""Time columns as applications store them, on SQLite and PostgreSQL.

The same rows are written twice into tables of the user's own naming: once with a plain
DATETIME (the reference) and once in the form under test, with the labels in a separate table
whose arrival column uses the same form. `check-config`, `baseline --from/--to` with full
ISO-8601 bounds, and the served /metrics must give the same numbers for both.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from hypothesis import given
from hypothesis import strategies as st

from exporter.app import create_app
from exporter.cli import main
from exporter.service import MonitorService
from exporter.storage.baseline_store import BaselineStore
from exporter.storage.prediction_store import ModelSource, check_mapping
from exporter.storage.time_format import TextLayout, TimeFormat
from tests.conftest import T0, Clock, keyset_read_plan, make_config, metric_value

OFFSET = dt.timezone(dt.timedelta(hours=2))


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


# name -> (column type, how a time is written, resolution of the stored times in seconds)
FORMS: dict[str, tuple[Any, Callable[[float], Any], float]] = {
    "timestamp": (sa.DateTime(), lambda t: _utc(t).replace(tzinfo=None), 1e-3),
    "timestamptz": (sa.DateTime(timezone=True), _utc, 1e-3),
    "epoch_seconds": (sa.Float(), lambda t: t, 1e-3),
    "epoch_milliseconds": (sa.BigInteger(), lambda t: round(t * 1000), 1e-3),
    "iso_t_micro_z": (
        sa.Text(),
        lambda t: _utc(t).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        1e-3,
    ),
    "iso_space_seconds": (sa.String(32), lambda t: _utc(t).strftime("%Y-%m-%d %H:%M:%S"), 1.0),
    "iso_offset_millis": (
        sa.String(40),
        lambda t: _utc(t).astimezone(OFFSET).isoformat(timespec="milliseconds"),
        1e-3,
    ),
}


def _model(name: str) -> dict[str, Any]:
    return {
        "model_id": name,
        "kind": "regression",
        "source": {
            "table": f"{name}_scores",
            "id_column": "pid",
            "timestamp_column": "scored_at",
            "prediction_column": "score_value",
            "labels": {
                "table": f"{name}_outcomes",
                "prediction_id_column": "pred_ref",
                "column": "y",
                "arrival_column": "arrived_at",
            },
        },
        "features": {"x1": "numeric", "color": "categorical"},
        "segments": [{"column": "tier", "values": ["gold", "silver"]}],
        "drift_window": {"length": "10m", "bucket": "1m"},
        "performance_window": {"length": "20m", "bucket": "1m"},
        "min_samples": 50,
        "min_labeled": 10,
    }


def _write(engine: sa.Engine, name: str, column_type: Any, write: Callable, times, rng) -> None:
    metadata = sa.MetaData()
    scores = sa.Table(
        f"{name}_scores",
        metadata,
        sa.Column("pid", sa.String(32), primary_key=True),
        sa.Column("scored_at", column_type, nullable=False),
        sa.Column("score_value", sa.Float),
        sa.Column("x1", sa.Float),
        sa.Column("color", sa.String(16)),
        sa.Column("tier", sa.String(16)),
        sa.Index(f"ix_{name}_scored", "scored_at", "pid"),
    )
    outcomes = sa.Table(
        f"{name}_outcomes",
        metadata,
        sa.Column("pred_ref", sa.String(32), primary_key=True),
        sa.Column("y", sa.Float),
        sa.Column("arrived_at", column_type, nullable=False),
        sa.Index(f"ix_{name}_arrived", "arrived_at", "pred_ref"),
    )
    metadata.create_all(engine)
    n = len(times)
    x1 = rng.normal(0, 1, n)
    y = 3 * x1 + rng.normal(0, 1, n)
    color = rng.choice(["red", "green", "blue"], n)
    tier = rng.choice(["gold", "silver"], n)
    with engine.begin() as conn:
        conn.execute(
            scores.insert(),
            [
                {
                    "pid": f"p{i:05d}",
                    "scored_at": write(t),
                    "score_value": float(y[i] + rng.normal(0.1, 0.8)),
                    "x1": float(x1[i]),
                    "color": str(color[i]),
                    "tier": str(tier[i]),
                }
                for i, t in enumerate(times)
            ],
        )
        conn.execute(
            outcomes.insert(),
            [
                {"pred_ref": f"p{i:05d}", "y": float(y[i]), "arrived_at": write(t + 5.0)}
                for i, t in enumerate(times)
            ],
        )


def _times(resolution: float, rng: np.random.Generator) -> np.ndarray:
    baseline = rng.uniform(T0 - 7200, T0 - 3600, 1500)
    live = rng.uniform(T0 - 300, T0 - 10, 400)
    return np.round(np.concatenate([baseline, live]) / resolution) * resolution


def _iso(t: float, form: str) -> str:
    """`--from/--to` bounds written the ways users write them."""
    return {
        "z": _utc(t).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "offset": _utc(t).astimezone(dt.timezone(dt.timedelta(hours=-5))).isoformat(),
        "naive": _utc(t).strftime("%Y-%m-%d %H:%M:%S.%f"),
    }[form]


def _served(body: str, model_id: str) -> dict[str, float]:
    """Every sample of a model, keyed without its model_id; timings and versions left out."""
    skip = ("duration", "timestamp", "model_baseline_info", "reconciliation")
    out = {}
    for line in body.splitlines():
        if (
            line.startswith("#")
            or f'model_id="{model_id}"' not in line
            or any(word in line for word in skip)
        ):
            continue
        key, value = line.rsplit(" ", 1)
        key = key.replace(f'model_id="{model_id}",', "").replace(f'model_id="{model_id}"', "")
        out[key] = float(value)
    return out


@pytest.mark.parametrize("form", sorted(FORMS))
def test_each_time_form_gives_the_numbers_of_a_datetime_column(
    form: str, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    column_type, write, resolution = FORMS[form]
    reference_type, reference_write, _ = FORMS["timestamp"]
    rng = np.random.default_rng(7)
    times = _times(resolution, rng)
    engine = sa.create_engine(store_url)
    _write(engine, "app", column_type, write, times, np.random.default_rng(1))
    _write(engine, "ref", reference_type, reference_write, times, np.random.default_rng(1))
    config_file = tmp_path / "config.yml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "store": {"url": store_url},
                "exporter": {"min_refresh_interval": 0.001, "read_lag": 1},
                "models": [_model("app"), _model("ref")],
            }
        )
    )
    cli = ["--log.level", "warn"]

    assert main([*cli, "check-config", "--config", str(config_file)]) == 0
    assert "holds no time" not in capsys.readouterr().err

    start, end = T0 - 7200, T0 - 3600
    for model_id, bounds in (("app", ("z", "offset")), ("ref", ("naive", "z"))):
        args = ["--model", model_id, "--from", _iso(start, bounds[0]), "--to", _iso(end, bounds[1])]
        assert main([*cli, "baseline", "--config", str(config_file), *args]) == 0
    store = BaselineStore(engine)
    app, ref = store.load("app"), store.load("ref")
    assert app is not None and ref is not None
    assert app.rows == ref.rows == int(((times >= start) & (times <= end)).sum())
    assert app.to_json()["prediction"] == ref.to_json()["prediction"]

    config = make_config(store_url, models=[_model("app"), _model("ref")])
    service = MonitorService(config, clock=Clock(T0))
    client = create_app(config, service, warmup=False).test_client()
    service.start_warmup().join()
    body = client.get("/metrics").text
    served_app, served_ref = _served(body, "app"), _served(body, "ref")
    assert served_ref["model_window_predictions{}"] == int((times >= T0 - 600).sum())
    assert served_app.keys() == served_ref.keys()
    for key, value in served_ref.items():
        assert math.isclose(served_app[key], value, rel_tol=1e-9, abs_tol=1e-12), key
    assert served_app['model_monitor_unreadable_rows{stream="predictions"}'] == 0
    engine.dispose()


@pytest.mark.parametrize("form", ["iso_t_micro_z", "iso_offset_millis", "epoch_milliseconds"])
def test_reads_of_a_time_column_use_its_index_and_sort_nothing(form: str, store_url: str) -> None:
    """The bound is a value of the column's own kind, so the index on (time, id) serves the
    range and the order: no function on the column, no sort step."""
    column_type, write, resolution = FORMS[form]
    engine = sa.create_engine(store_url)
    _write(
        engine,
        "app",
        column_type,
        write,
        _times(resolution, np.random.default_rng(3)),
        np.random.default_rng(1),
    )
    source = ModelSource(engine, make_config(store_url, models=[_model("app")]).models[0])
    plan = keyset_read_plan(source, "app_scores")
    if engine.dialect.name == "sqlite":
        assert "USING INDEX ix_app_scored" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert "ix_app_scored" in plan, plan
        assert "Sort" not in plan, plan
    engine.dispose()


def test_rows_in_another_layout_are_reported_unreadable_not_hidden(store_url: str) -> None:
    """Most rows written `2027-01-15 07:55:00`, the newest `2027-01-15T07:59:00Z`: text order
    is not time order across the two, the reads (in the newest layout) miss the older rows,
    and the exporter says so: a gauge, a critical health finding, a log line."""
    engine = sa.create_engine(store_url)
    rng = np.random.default_rng(5)
    old = np.round(rng.uniform(T0 - 300, T0 - 60, 300))
    new = np.round(rng.uniform(T0 - 50, T0 - 10, 30))
    _write(engine, "app", sa.Text(), lambda t: _utc(t).strftime("%Y-%m-%d %H:%M:%S"), old, rng)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO app_scores (pid, scored_at, score_value, x1, color, tier) "
                "VALUES (:pid, :ts, 1.0, 0.5, 'red', 'gold')"
            ),
            [
                {"pid": f"n{i}", "ts": _utc(t).strftime("%Y-%m-%dT%H:%M:%SZ")}
                for i, t in enumerate(new)
            ],
        )
    config = make_config(store_url, models=[_model("app")], reconcile_interval=60)
    problems = check_mapping(engine, config.models[0])
    assert any("mix layouts" in p for p in problems), problems
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    client = create_app(config, service, warmup=False).test_client()
    service.start_warmup().join()
    for _ in range(2):  # missing at two whole-window checks in a row
        clock.advance(61)
        body = client.get("/metrics").text
    assert metric_value(body, "model_window_predictions", model_id="app") == 30
    assert metric_value(body, "model_monitor_unreadable_rows", stream="predictions") > 0
    health = client.get("/api/v1/models/app/health").get_json()
    assert health["status"] == "critical"
    assert "unreadable_rows" in {f["type"] for f in health["findings"]}
    engine.dispose()


@pytest.mark.parametrize(
    ("value", "layout", "fraction"),
    [
        ("2026-11-24T10:54:58.123456Z", TextLayout("T", 6, "Z"), 0.123456),
        ("2026-11-24 10:54:58", TextLayout(" ", 0, ""), 0.0),
        ("2026-11-24T12:54:58.123+02:00", TextLayout("T", 3, "+02:00"), 0.123),
        ("2026-11-24T05:54:58-0500", TextLayout("T", 0, "-0500"), 0.0),
    ],
)
def test_bounds_in_a_text_layout_mean_the_same_instant(
    value: str, layout: TextLayout, fraction: float
) -> None:
    """Hand-written cases (all 2026-11-24 10:54:58 UTC): the layout is read off the value, the
    value parses to that instant, and the bound rendered for each comparison selects the row
    exactly when it should."""
    assert TextLayout.of(value) == layout
    time = TimeFormat("text", layout=layout)
    instant = dt.datetime(2026, 11, 24, 10, 54, 58, tzinfo=dt.UTC).timestamp() + fraction
    assert time.to_epoch(pd.Series([value])).iloc[0] == pytest.approx(instant, abs=1e-6)
    assert time.bound(instant, "ge") <= value <= time.bound(instant, "le")
    assert value >= time.bound(instant, "lt")  # not before itself
    assert time.bound(instant + 1, "ge") > value > time.bound(instant - 1, "le")
    assert value < time.bound(instant + 1, "lt")


def _written(second: int, nanos: int, digits: int, layout: TextLayout) -> str:
    """An instant (whole seconds, nanoseconds) as a writer with `digits` fraction digits writes it
    in `layout`'s separator and offset (0 digits: no fraction at all, as `isoformat` writes a
    whole second)."""
    local = dt.datetime.fromtimestamp(second, dt.UTC) + layout.utc_offset
    text = local.strftime(f"%Y-%m-%d{layout.sep}%H:%M:%S")
    if digits:
        text += "." + f"{nanos:09d}"[:digits]
    return text + layout.offset


@given(
    sep=st.sampled_from(" T"),
    digits=st.sampled_from([0, 3, 6]),
    offset=st.sampled_from(["", "+02:00", "-03:00", "-0500", "Z"]),
    second=st.integers(1_700_000_000, 1_900_000_000),
    tick=st.integers(0, 999_999),
)
def test_a_bound_is_on_the_right_side_of_its_instant_however_many_digits_rows_have(
    sep: str, digits: int, offset: str, second: int, tick: int
) -> None:
    """Writers drop trailing fraction digits (Python's `isoformat` writes a whole second with no
    fraction at all): rows of the bound's own instant, and of its neighbours, written with any
    number of digits that holds them exactly, fall on the side of `>=` and `<` bounds their
    instant says, as text compares (SQLite's and Python's order); `<=` for rows of at most the
    layout's digits. `Z` sorts after the digits, so there only rows of the layout's own digits
    are in order, and are checked. Found by the fuzz test: a row at the window's first instant,
    written without a fraction, was never read."""
    layout = TextLayout(sep, digits, offset)
    time = TimeFormat("text", layout=layout)
    nanos = (tick % 10**digits) * 10 ** (9 - digits)  # the bound's instant, in the layout
    bound = {side: time.bound(second + nanos / 1e9, side) for side in ("ge", "lt", "le")}
    step = 10 ** (9 - max(digits, 1))
    for moved in (-(10**9), -step, -1, 0, 1, step, 10**9, -nanos):
        s, n = divmod(second * 10**9 + nanos + moved, 10**9)
        for written in range(10):
            if n % 10 ** (9 - written) or (offset == "Z" and written != digits):
                continue  # that many digits cannot hold the instant, or `Z` has no order
            value, at = _written(s, n, written, layout), (s - second) * 10**9 + n - nanos
            assert (value >= bound["ge"]) == (at >= 0), (value, bound)
            assert (value < bound["lt"]) == (at < 0), (value, bound)
            if written <= digits:
                assert (value <= bound["le"]) == (at <= 0), (value, bound)


# Values read in the same batch as the text under test, which make pandas parse the batch:
# missing, nanosecond digits (pandas then counts the whole batch in nanoseconds), another
# layout, no time, a number.
NANOSECONDS = "2026-11-24 10:54:58.123456789"
COMPANIONS = [None, NANOSECONDS, "2026-11-24T10:54:58Z", "not a time", 17]


@given(
    # Each field also just past its range: a 13th month, a 30th of February, a 61st second.
    fields=st.tuples(
        st.integers(0, 9999),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 24),
        st.integers(0, 60),
        st.integers(0, 61),
    ),
    fraction=st.integers(0, 999_999_999),
    digits=st.integers(0, 9),
    sep=st.sampled_from(" T"),
    # Text numpy reads and pandas reads otherwise or not at all, or the other way round.
    lead=st.sampled_from(["", " ", "+", "0", "-"]),
    tail=st.sampled_from(["", " ", "Z", "+02:00", "1"]),
    companion=st.sampled_from(COMPANIONS),
)
def test_a_text_times_epoch_is_its_own_whatever_is_read_with_it(
    fields: tuple[int, ...],
    fraction: int,
    digits: int,
    sep: str,
    lead: str,
    tail: str,
    companion: object,
) -> None:
    """The ledger keys a row by its epoch, and a row is read in different batches (a page, a
    reconciliation's keys): its epoch must be the same in each. Read alone, naive text of up to
    six digits takes numpy's path; with the companion, pandas'. Both give the same float, to
    the bit; and for plain ISO text the instant Python's own parser gives, NaN where it finds
    none."""
    year, month, day, hour, minute, second = fields
    if companion == NANOSECONDS and (lead == "-" or not 1678 <= year <= 2261):
        return  # out of a nanosecond count's range: pandas drops the value (NaT)
    value = f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}"
    if digits:
        value += f".{fraction % 10**digits:0{digits}d}"
    value = lead + value + tail
    time = TimeFormat("text", layout=TextLayout(sep, min(digits, 6), ""))
    alone = time.to_epoch(pd.Series([value])).iloc[0]
    together = time.to_epoch(pd.Series([value, companion], dtype=object)).iloc[0]
    assert np.array_equal([alone], [together], equal_nan=True)
    if lead or tail or digits > 6 or year == 0:  # forms Python's parser has views of its own on
        return
    try:
        reference = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        reference = math.nan
    assert math.isnan(alone) == math.isnan(reference)
    if not math.isnan(reference):
        assert alone == pytest.approx(reference, abs=4e-6)  # a few steps of a float this large
