"""How reads reach the store.

They fetch the driver's plain tuples under the statement's deadline (`engine.fetch_all`): SQLite
does a query's work while its rows are fetched, after `execute` has returned, so a read whose
rows come slowly must still end at the deadline, and a driver error raised while fetching must
reach the exporter as the SQLAlchemy error it handles, not as a raw driver exception.

On PostgreSQL a keyset read is an index range scan in (time, id) order even on a table the
planner has no statistics for (freshly filled, before autovacuum analyzes it), where it would
otherwise read every remaining row of the window by bitmap and sort them, for every page.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from exporter.config import StoreTimeouts
from exporter.storage.engine import DeadlineExceededError, create_engine, fetch_all
from exporter.storage.prediction_store import ID, TS, Cursor, ModelSource, Span, create_schema
from tests.conftest import REGRESSION_MODEL, T0, make_config, regression_rows

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


def _filled(url: str, n: int) -> tuple[sa.Engine, ModelSource, sa.Table]:
    """The exporter's engine and source over a predictions table of `n` rows, 20 a second up
    to T0, that autovacuum leaves alone (no statistics, no pages marked all-visible)."""
    config = make_config(url, [REGRESSION_MODEL])
    model, src = config.models[0], config.models[0].source
    engine = create_engine(url)
    create_schema(engine, config)
    table = sa.Table(src.table, sa.MetaData(), autoload_with=engine)
    data = regression_rows(np.random.default_rng(0), n)
    # The fill is the test's, not the exporter's: 100,000 rows on a machine busy with the rest of
    # the suite can take longer than the exporter's statement timeout.
    filler = create_engine(url, StoreTimeouts(statement=120.0))
    with filler.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text(f"ALTER TABLE {table.name} SET (autovacuum_enabled = false)"))
        conn.execute(
            sa.insert(table),
            [
                {
                    src.id_column: f"p{i:06d}",
                    src.timestamp_column: dt.datetime.fromtimestamp(
                        T0 - n * 0.05 + i * 0.05, dt.UTC
                    ).replace(tzinfo=None),
                    src.prediction_column: float(data["prediction"][i]),
                    src.latency_column: float(data["latency"][i]),
                    "x1": float(data["x1"][i]),
                    "x2": float(data["x2"][i]),
                    "color": str(data["color"][i]),
                    "tier": str(data["tier"][i]),
                }
                for i in range(n)
            ],
        )
    filler.dispose()
    return engine, ModelSource(engine, model), table


@pytest.mark.postgres
def test_a_keyset_read_on_a_never_analyzed_table_is_an_ordered_index_scan(pg_url: str) -> None:
    n = 50_000
    engine, source, table = _filled(pg_url, n)
    with engine.connect() as conn:
        analyzed = sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)")
        assert conn.execute(analyzed, {"t": table.name}).scalar_one() < 0  # the planner guesses
    first = source.read_predictions(Span(T0 - 7200, T0), n // 2)  # a rebuild half way through
    after = Cursor(first.iloc[-1][TS], first.iloc[-1][ID])
    stmt = source.predictions_query(Span(T0 - 7200, T0, after=after), 10_000)
    sql = stmt.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN ANALYZE {sql}"))
    engine.dispose()
    # The page's rows straight from the index, in order: not the other half of the table
    # gathered by bitmap and sorted for the first 10,000 of them.
    assert "Index Scan" in plan, plan
    assert "Sort" not in plan and "Bitmap" not in plan, plan
    assert "rows=10000 loops=1" in plan.splitlines()[1], plan


def test_a_sweep_count_walks_the_time_index_only(store_url: str) -> None:
    """The sweep's counts (the whole count of a stretch, a count per slice of the lookback) range
    over the time index, whatever the table's size: on PostgreSQL also on an analyzed table whose
    pages vacuum has not yet marked all-visible, where the planner would price a scan of the
    whole table (in parallel) below the index's heap visits; and on a table never analyzed
    without parallel workers, which the planner, guessing a thousand rows a range, starts for
    a count read in a fraction of their start-up."""
    engine, source, table = _filled(store_url, 100_000)  # T0 - 5,000 s .. T0
    # A long stretch (a short reconcile_interval): 40% of the table.
    stretch, lookback = Span(T0 - 4000, T0 - 2000, before=T0 - 2000), Span(T0 - 60, T0)
    sql = source.count_query("predictions", 1, [lookback], [stretch]).compile(
        engine, compile_kwargs={"literal_binds": True}
    )
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = " | ".join(r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert plan.count("USING COVERING INDEX ix_reg_predictions_ts_id") == 2, plan
            assert "SCAN reg_predictions" not in plan, plan
        else:
            # Parallel plans priced as free: whatever the planner guesses, no workers start.
            for cost in (
                "parallel_setup_cost",
                "parallel_tuple_cost",
                "min_parallel_index_scan_size",
            ):
                conn.exec_driver_sql(f"SET {cost} = 0")
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN ANALYZE {sql}"))
            assert "Gather" not in plan and "Parallel" not in plan, plan
            conn.exec_driver_sql("RESET ALL")
            conn.exec_driver_sql(f"ANALYZE {table.name}")
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN ANALYZE {sql}"))
            assert plan.count("Index Only Scan using ix_reg_predictions_ts_id") == 2, plan
            assert "Seq Scan" not in plan, plan
    assert source.count_rows("predictions", 1, [], [stretch]).totals == [2000 * 20]
    engine.dispose()
