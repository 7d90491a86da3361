"""Pages of a long PostgreSQL read as typed columns: `COPY (query) TO STDOUT` as CSV, parsed by
Arrow.

A rebuild or a backlog reads the store in keyset pages of `batch_rows`. Through psycopg each
value becomes a Python object and pandas infers each column's type again: 0.38-0.41 s for a
50,000-row page of 28 columns. As COPY output the same page arrives in 0.13 s, and Arrow's CSV
reader types it in C++ off the GIL (0.18-0.26 s all told), so with the next page read on a second
thread (`ModelRefresher._pages`) nearly all of it overlaps the fold.

The statement is the row route's own (same plan), inside `COPY`, on the engine's connection:
the server's `statement_timeout` and the client deadline (`engine.copy_out`) bound it like any
other read. The frame is the row route's: each column's type comes from the statement, and
only types whose text form Arrow reads to exactly psycopg's value are read this way (floats,
shortest round-trip text since PostgreSQL 12, correctly rounded both ways; integers; text;
timestamps, with or without time zone); a statement with any other column (numeric, boolean,
uuid, ...) is read as rows. NULL is an unquoted empty field and an empty string a quoted one.

ADBC, which reads PostgreSQL's binary COPY, was measured faster still (0.14 s a page) but is not
used: its libpq connection exposes no socket to break, and a cancel request waits on the very
server that hangs. For SQLite, ADBC's driver links a second SQLite library into the process,
whose POSIX locks on the same file break the first's (a WAL database fails with "disk I/O
error" at once, see sqlite.org/howtocorrupt.html, 2.2); SQLite pages are read as rows.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from exporter.storage.engine import autocommit, copy_out


def arrow_type(type_: sa.types.TypeEngine[Any]) -> pa.DataType | None:
    """The Arrow type that reads a column of `type_` from COPY text to psycopg's value, or None
    where there is none (then the statement is read as rows)."""
    if isinstance(type_, sa.Float):  # not its base, Numeric: psycopg gives that as a Decimal
        return pa.float64()
    if isinstance(type_, sa.Integer):
        return pa.int64()
    if isinstance(type_, sa.String):
        return pa.string()
    if isinstance(type_, sa.DateTime):
        return pa.timestamp("us", "UTC") if type_.timezone else pa.timestamp("us")
    return None


class CopyPages:
    """Reads statements of one PostgreSQL store by COPY (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reads = autocommit(engine)

    @classmethod
    def for_engine(cls, engine: Engine) -> CopyPages | None:
        """The reader for `engine`'s store, or None where pages are read as rows (not
        PostgreSQL through psycopg)."""
        if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
            return None
        return cls(engine)

    def read(
        self, stmt: sa.Select[Any], params: dict[str, Any] | None = None
    ) -> pd.DataFrame | None:
        """The rows of `stmt` run with `params`, as the row route's frame, or None when they
        are to be read as rows: a column of a type not read this way, a list parameter (its
        SQL is only written at execution), or no rows at all."""
        columns = {c.name: arrow_type(c.type) for c in stmt.selected_columns}
        if None in columns.values():
            return None
        compiled = stmt.compile(dialect=self.engine.dialect)
        if any(bind.expanding for bind in compiled.binds.values()):
            return None
        sql = f"COPY ({compiled.string}) TO STDOUT (FORMAT csv, HEADER)"
        with self._reads.connect() as conn:
            text = copy_out(conn, sql, compiled.construct_params(params))
        table = pa_csv.read_csv(
            pa.py_buffer(text),
            convert_options=pa_csv.ConvertOptions(
                column_types=columns,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        return table.to_pandas() if table.num_rows else None
