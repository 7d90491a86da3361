"""SQLAlchemy engines whose every wait on the store is bounded (and whose JSON keeps NaN).

A store that hangs (a frozen proxy, a dead NAT entry, a server stuck on I/O) never answers, so
neither TCP nor the server can end the wait: PostgreSQL's `statement_timeout` only runs once the
server has the query. Three bounds together cover every wait:

- connecting: libpq's `connect_timeout` (SQLite opens a file);
- on the server: PostgreSQL `statement_timeout`, so a slow query ends cleanly;
- on the client: a deadline armed around every statement (one watchdog thread for all of them,
  `storage/watchdog.py`); when it passes, the connection is broken from our side (the socket
  shut down for PostgreSQL, `interrupt()` for SQLite), so the blocked call raises like any
  other store error and the connection is discarded.

The deadline covers `execute` and, for reads through `fetch_all` and `copy_out`, the fetch as
well: SQLite does its work while rows are fetched, PostgreSQL streams a COPY. SQLite's busy
timeout bounds waits for a writer's lock. Pool checkouts wait at most the connect timeout. There
is no pre-ping: its query would run outside the deadline; a connection found dead by a real
statement is invalidated with the rest of the pool, and the caller retries once.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from exporter.config import StoreTimeouts
from exporter.storage import json_codec
from exporter.storage.watchdog import WATCHDOG, Deadline

# Grace after the server-side timeout before the client breaks the connection, so that a merely
# slow query ends with the server's own error rather than a broken connection.
_CLIENT_GRACE = 1.0


# conn.info keys: the statement's armed deadline, "keep it armed past execute" (fetch_all), and
# the deadline's length (for calls that arm it themselves: copy_out).
_DEADLINE, _HOLD, _LIMIT = "deadline", "hold_deadline", "deadline_seconds"


class DeadlineExceededError(sa.exc.OperationalError):
    """A statement outlived the statement timeout and its connection was broken."""

    @classmethod
    def of(cls, statement: str | None, parameters: Any, limit: float) -> DeadlineExceededError:
        return cls(
            statement, parameters, TimeoutError(f"no answer from the store within {limit:g}s")
        )


def _break(dbapi_conn: Any) -> None:
    """End a blocked call on this DBAPI connection from another thread."""
    if hasattr(dbapi_conn, "interrupt"):  # sqlite3
        dbapi_conn.interrupt()
        return
    pgconn = getattr(dbapi_conn, "pgconn", None)  # psycopg 3
    if pgconn is None:
        return
    with contextlib.suppress(OSError, ValueError):
        # shutdown() acts on the socket, not the descriptor, so a duplicate is enough; the
        # blocked read then sees EOF and psycopg raises OperationalError.
        dup = socket.socket(fileno=os.dup(pgconn.socket))
        with contextlib.closing(dup):
            dup.shutdown(socket.SHUT_RDWR)


def _disarm(info: dict[Any, Any]) -> Deadline | None:
    """Cancel the deadline armed for the statement of a connection (its `info`), if any."""
    deadline = info.pop(_DEADLINE, None)
    if deadline is not None:
        deadline.cancel()
    return deadline


@contextlib.contextmanager
def _driver_call(conn: sa.Connection) -> Iterator[None]:
    """A call on the DBAPI connection of `conn` past `execute`: its deadline is disarmed at
    the end, and a driver error is translated the way SQLAlchemy translates one from
    `execute` (a fired deadline invalidates the connection: it was broken from our side)."""
    info = conn.info  # the pooled connection's: still there once `conn` is invalidated
    try:
        yield
    except conn.dialect.loaded_dbapi.Error as exc:
        deadline = _disarm(info)
        if deadline is not None and deadline.fired.is_set():
            conn.invalidate(exc)  # never hand it out again
            raise DeadlineExceededError.of(None, None, deadline.seconds) from exc
        dropped = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
        if dropped:  # as SQLAlchemy does for `execute`: the pool lets go of the connection
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(
            None,
            None,
            exc,
            conn.dialect.loaded_dbapi.Error,
            connection_invalidated=dropped,
            dialect=conn.dialect,
        ) from exc
    finally:
        _disarm(info)


def fetch_all(
    conn: sa.Connection, stmt: sa.Executable, params: dict[str, Any] | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names and rows of `stmt` run with `params`, as the driver's plain tuples,
    execute and fetch under one deadline.

    SQLAlchemy's `Row` objects cost more than the query on large reads (and pandas probes each
    for a `dtype` when it builds a frame from them), so the rows come from the DBAPI cursor.
    """
    info = conn.info  # the pooled connection's: still there once `conn` is invalidated
    info[_HOLD] = True
    try:
        result = conn.execute(stmt, params)
        with _driver_call(conn):
            return list(result.keys()), result.cursor.fetchall()
    finally:
        info.pop(_HOLD, None)
        _disarm(info)


def copy_out(conn: sa.Connection, sql: str, params: dict[str, Any]) -> bytes:
    """All that `sql`, a PostgreSQL `COPY ... TO STDOUT`, writes, under the statement deadline
    (psycopg runs COPY outside `execute`, so the deadline is armed here)."""
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    conn.info[_DEADLINE] = WATCHDOG.arm(conn.info[_LIMIT], lambda: _break(dbapi_conn))
    with _driver_call(conn), dbapi_conn.cursor() as cursor, cursor.copy(sql, params) as copy:
        return b"".join(copy)


def autocommit(engine: Engine) -> Engine:
    """`engine` for reads, on PostgreSQL with its connections in autocommit. Every read of the
    exporter is one statement on a connection of its own, so a transaction around it only adds
    two round trips (BEGIN, and ROLLBACK when the pool takes the connection back): an idle
    model's refresh made 18 instead of 6 (9.1 -> 6.8 ms). pysqlite begins no transaction for a
    read, and its isolation switch costs a PRAGMA each way, so SQLite's engine is left as it is.
    Writes keep `engine.begin()`."""
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


@contextlib.contextmanager
def snapshot(engine: Engine) -> Iterator[sa.Connection]:
    """A connection whose statements all see the same committed rows, for reads that must
    agree with each other (sums and the keys they cover): one transaction, repeatable read on
    PostgreSQL (its snapshot is taken by the first statement). pysqlite begins no transaction
    for a read, so SQLite's is begun by hand; in WAL mode it keeps its snapshot to the end.
    DuckDB's driver begins one itself (checked by hand: a row committed meanwhile stays
    unseen). Rolled back: it only reads."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        elif engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            if not conn.invalidated:  # a statement past its deadline broke the connection
                conn.rollback()


def create_engine(url: str, timeouts: StoreTimeouts | None = None) -> Engine:
    """An engine with connect, statement and lock-wait timeouts (see the module docstring)."""
    timeouts = timeouts or StoreTimeouts()
    sqlite = url.startswith("sqlite")
    kwargs: dict[str, Any] = {
        "future": True,
        "json_serializer": json_codec.dumps,  # NaN and infinity survive PostgreSQL's json
        "json_deserializer": json_codec.loads,
    }
    if sqlite:
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": timeouts.statement}
    else:
        kwargs["pool_timeout"] = timeouts.connect
    engine = sa.create_engine(url, **kwargs)

    if sqlite:

        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_conn: Any, _record: Any) -> None:  # readers never block the logger
            dbapi_conn.execute("PRAGMA journal_mode=WAL")

    elif engine.dialect.name == "postgresql":

        @sa.event.listens_for(engine, "do_connect")
        def _pg_session(_dialect: Any, _rec: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
            # Added to whatever options the URL carries (a search_path, say), not replacing them.
            # No bitmap scans: on a table the planner has no statistics for yet (freshly filled,
            # before autovacuum analyzes it), it estimates a keyset range at a few rows and reads
            # it by bitmap and sort, every remaining row of the window for each page (a rebuild
            # of a million rows: 109 s instead of 21 s); an index scan gives the rows in order.
            # No sequential scans where an index serves: every statement of the exporter is a
            # range of a time index, and its cost must follow the rows in that range, not the
            # table's history. Before vacuum has marked the pages all-visible, the planner prices
            # an index-only count above a (parallel) scan of the whole table: a reconciliation
            # count of 45,000 of a million rows took 124 ms and both cores, 27 ms by the index.
            # No parallel workers: on a table without statistics the planner guesses a thousand
            # rows a range and starts two workers for a reconciliation count (Gather over a
            # Parallel Append), 5-25 ms of start-up for ranges read in a fraction of that; and
            # the other cores are the exporter's own.
            ms = int(timeouts.statement * 1000)
            options = (
                f"-c statement_timeout={ms} -c enable_bitmapscan=off -c enable_seqscan=off "
                "-c max_parallel_workers_per_gather=0"
            )
            cparams["options"] = f"{cparams.get('options', '')} {options}".strip()
            cparams.setdefault("connect_timeout", max(1, round(timeouts.connect)))

    limit = timeouts.statement + _CLIENT_GRACE

    @sa.event.listens_for(engine, "connect")
    def _limit(_dbapi_conn: Any, record: Any) -> None:
        record.info[_LIMIT] = limit

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _arm(conn: sa.Connection, *_: Any) -> None:
        dbapi_conn = conn.connection.dbapi_connection
        conn.info[_DEADLINE] = WATCHDOG.arm(limit, lambda: _break(dbapi_conn))

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _after(conn: sa.Connection, *_: Any) -> None:
        if not conn.info.get(_HOLD):
            _disarm(conn.info)

    @sa.event.listens_for(engine, "handle_error")
    def _error(context: sa.engine.ExceptionContext) -> Exception | None:
        if context.connection is None:
            return None
        deadline = _disarm(context.connection.info)
        if deadline is not None and deadline.fired.is_set():
            context.is_disconnect = True  # the connection is broken: never hand it out again
            return DeadlineExceededError.of(context.statement, context.parameters, limit)
        return None

    return engine
