"""Bulk pages read by PostgreSQL COPY (storage/copy_pages.py) give exactly the driver's rows.

The reference is the row route itself: psycopg's values, built into a frame as every other read
builds it. A page by COPY must equal it value for value, on every column type COPY is used for,
on values chosen where text round trips break (NaN, infinities, the smallest subnormal, an empty
string beside NULL, quotes, commas and newlines, a non-UTC session time zone), and a rebuild
through COPY pages must give the same buckets as one through rows. A COPY that hangs is bounded
like any other statement.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from exporter.config import StoreTimeouts
from exporter.service import MonitorService
from exporter.storage.copy_pages import CopyPages
from exporter.storage.engine import DeadlineExceededError, create_engine
from exporter.storage.prediction_store import ModelSource
from tests.conftest import REGRESSION_MODEL, T0, Clock, make_config, seed_regression

ODD_TEXT = ["", "a,b", 'say "hi"', "two\nlines", "ünïcødé", "\\N", "NULL", " pad ", None]
ODD_FLOATS = [math.nan, math.inf, -math.inf, 5e-324, -0.0, 0.1, 1e308, 1 / 3, None]
ODD_REALS = [math.nan, math.inf, -math.inf, 1e-45, -0.0, 0.1, 3.4e38, 1 / 3, None]  # float4


def _odd_table(engine: sa.Engine) -> sa.Table:
    """A table of every type COPY pages read, holding the values where text round trips break."""
    table = sa.Table(
        "odd",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("f8", sa.Double),
        sa.Column("f4", sa.REAL),
        sa.Column("i4", sa.Integer),
        sa.Column("i2", sa.SmallInteger),
        sa.Column("t", sa.Text),
        sa.Column("v", sa.String(20)),
        sa.Column("c", sa.CHAR(5)),
        sa.Column("ts", sa.DateTime),
        sa.Column("tz", sa.DateTime(timezone=True)),
    )
    table.create(engine)
    stamp = pd.Timestamp("2027-01-15 02:10:00.003585")
    rows = [
        {
            "id": i,
            "f8": f,
            "f4": r,
            "i4": None if i % 4 == 3 else i * 1000,
            "i2": -i,
            "t": s,
            "v": s if s is None or len(s) <= 20 else s[:20],
            "c": None if s is None else s[:5],
            "ts": None if i == 5 else (stamp + pd.Timedelta(days=i)).to_pydatetime(),
            "tz": None if i == 6 else (stamp + pd.Timedelta(hours=i)).tz_localize("UTC"),
        }
        for i, (f, r, s) in enumerate(zip(ODD_FLOATS, ODD_REALS, ODD_TEXT, strict=True))
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(table), rows)
    return table


def _in_utc(frame: pd.DataFrame) -> pd.DataFrame:
    """Times with a zone shown in UTC: psycopg gives them in the session's zone, Arrow in UTC;
    the instants are what must agree."""
    return frame.apply(
        lambda c: c.dt.tz_convert("UTC") if isinstance(c.dtype, pd.DatetimeTZDtype) else c
    )


def _row_route(engine: sa.Engine, stmt: sa.Select) -> pd.DataFrame:
    model = make_config(str(engine.url), models=[REGRESSION_MODEL]).models[0]
    return ModelSource(engine, model)._fetch(stmt)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_copy_page_equals_the_drivers_rows(pg_url: str, zone: str) -> None:
    engine = create_engine(f"{pg_url}%20-cTimeZone%3D{zone.replace('/', '%2F')}")
    table = _odd_table(engine)
    stmt = sa.select(*(c.label(f"f.{c.name}") for c in table.c)).order_by(table.c.id)
    by_copy = CopyPages.for_engine(engine).read(stmt)
    by_rows = _row_route(engine, stmt)
    assert by_copy is not None
    pd.testing.assert_frame_equal(_in_utc(by_copy), _in_utc(by_rows), check_dtype=False)
    # Dtypes may differ only in the zone shown; kinds, NULL against "", and -0.0 must not.
    assert [by_copy[c].dtype.kind for c in by_copy] == [by_rows[c].dtype.kind for c in by_rows]
    assert by_copy["f.t"].isna().tolist() == [s is None for s in ODD_TEXT]
    assert np.signbit(by_copy["f.f8"].to_numpy()[4]) and np.signbit(by_rows["f.f8"].to_numpy()[4])
    # REAL: the driver's value is the float the column's text reads to (0.1, not 0.100000001).
    assert by_copy["f.f4"][5] == by_rows["f.f4"][5] == 0.1
    engine.dispose()


@pytest.mark.parametrize(
    "column",
    [
        sa.Column("x", sa.Numeric(10, 3)),
        sa.Column("x", sa.Boolean),
        sa.Column("x", sa.Uuid),
        sa.Column("x", sa.Date),
        sa.Column("x", sa.JSON),
    ],
    ids=["numeric", "boolean", "uuid", "date", "json"],
)
def test_a_type_copy_cannot_read_back_exactly_is_left_to_the_rows(
    pg_url: str, column: sa.Column
) -> None:
    engine = create_engine(pg_url)
    table = sa.Table("other", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), column)
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(table), [{"id": 1, "x": None}])
    assert CopyPages.for_engine(engine).read(sa.select(table)) is None
    engine.dispose()


def test_no_copy_reader_for_other_stores(tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    assert CopyPages.for_engine(engine) is None


def _buckets(service: MonitorService) -> dict[str, np.ndarray]:
    window = service.refreshers["reg"].window
    assert window is not None
    return {
        "drift ids": window.drift.ids,
        "drift": window.drift.values,
        "performance ids": window.performance.ids,
        "performance": window.performance.values,
    }


def test_rebuild_by_copy_pages_equals_rebuild_by_rows(pg_url: str, monkeypatch) -> None:
    """Pages of 100 rows, each read ahead while the last is folded: every route, same buckets."""
    base = make_config(pg_url, models=[REGRESSION_MODEL], batch_rows=100)
    seed_regression(base, np.random.default_rng(11), n_live=1_000, tiers=("gold", "silver"))
    copied: list[int] = []
    read = CopyPages.read

    def counted(self: CopyPages, stmt: sa.Select, params: dict) -> pd.DataFrame | None:
        frame = read(self, stmt, params)
        copied.append(0 if frame is None else len(frame))
        return frame

    monkeypatch.setattr(CopyPages, "read", counted)
    buckets = {}
    for route in ("copy", "rows"):
        config = base.model_copy(
            update={"store": base.store.model_copy(update={"bulk_reads": route})}
        )
        service = MonitorService(config, clock=Clock(T0))
        service.refreshers["reg"].refresh()
        report = service.refreshers["reg"].report
        assert report is not None and report.window_predictions == 1_000
        buckets[route] = _buckets(service)
        service.engine.dispose()
    # Each stream's first page is a plain read, the nine after it come by COPY (then one empty).
    assert sum(copied) == 2 * 900 and len([n for n in copied if n]) == 2 * 9
    for name, by_rows in buckets["rows"].items():
        np.testing.assert_allclose(buckets["copy"][name], by_rows, rtol=0, atol=1e-9, err_msg=name)


@pytest.mark.timeout(60)
def test_a_copy_to_a_hanging_store_ends_at_the_statement_deadline(proxied_pg, pg_url) -> None:
    proxy, proxied = proxied_pg
    _odd_table(create_engine(pg_url))
    engine = create_engine(proxied, StoreTimeouts(connect=1, statement=1))
    stmt = sa.select(sa.table("odd", sa.column("id", sa.BigInteger)).c.id)
    reader = CopyPages.for_engine(engine)
    assert len(reader.read(stmt)) == len(ODD_TEXT)  # a pooled connection, through the proxy
    proxy.hang()
    with pytest.raises(DeadlineExceededError):
        reader.read(stmt)
    proxy.restore()
    assert len(reader.read(stmt)) == len(ODD_TEXT)  # the broken connection was not reused
    engine.dispose()
