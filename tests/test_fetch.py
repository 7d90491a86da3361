"""Reads fetch the driver's plain tuples under the statement's deadline (`engine.fetch_all`).

SQLite does a query's work while its rows are fetched, after `execute` has returned: a read whose
rows come slowly must still end at the deadline, and a driver error raised while fetching must
reach the exporter as the SQLAlchemy error it handles, not as a raw driver exception.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from exporter.config import StoreTimeouts
from exporter.storage.engine import DeadlineExceededError, create_engine, fetch_all

# Every natural number, lazily: the first row at once, then a scan that never yields another.
_ONE_ROW_THEN_NOTHING = sa.text(
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
    "SELECT x FROM n WHERE x = 1 OR x < 0"
)
# Five rows, then an integer overflow while the sixth is computed.
_OVERFLOW_AT_ROW_SIX = sa.text(
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 10) "
    "SELECT CASE WHEN x > 5 THEN abs(-9223372036854775807 - 1) ELSE x END FROM n"
)


def _engine(tmp_path: Path) -> sa.Engine:
    return create_engine(f"sqlite:///{tmp_path / 'store.db'}", StoreTimeouts(statement=0.2))


def test_a_read_whose_rows_come_slowly_ends_at_the_deadline(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    started = time.monotonic()
    with engine.connect() as conn, pytest.raises(DeadlineExceededError, match=r"within 1\.2s"):
        fetch_all(conn, _ONE_ROW_THEN_NOTHING)
    # Bounded: the deadline (0.2 s statement + 1 s grace), not the query, ended it. Before the
    # fetch was covered this read never returned.
    assert time.monotonic() - started < 30
    with engine.connect() as conn:  # the broken connection was discarded, not handed out again
        assert fetch_all(conn, sa.text("SELECT 7 AS seven")) == (["seven"], [(7,)])


def test_a_driver_error_while_fetching_is_a_sqlalchemy_error(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    with engine.connect() as conn:
        with pytest.raises(sa.exc.OperationalError, match="integer overflow") as raised:
            fetch_all(conn, _OVERFLOW_AT_ROW_SIX)
        assert not isinstance(raised.value, DeadlineExceededError)
        # The deadline was disarmed with the error: a later read on the connection is not cut.
        time.sleep(1.5)
        assert fetch_all(conn, sa.text("SELECT 1 AS one, 'a' AS letter")) == (
            ["one", "letter"],
            [(1, "a")],
        )
