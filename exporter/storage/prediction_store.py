"""The prediction store: default schema and the source that reads any mapped table.

This is one of the two places that talk SQL (with `logging/`). Every identifier comes from the
config and reaches the database only through SQLAlchemy's quoting (reflected `Table` objects and
`label()`), never through string formatting.

Reads use keyset pagination on (order column, id), with a plain lower bound on the order column
before the row-value comparison, so that each read is one index range scan over the rows that
are new, whatever the size of the table.

A model makes the same few statements on every refresh, with new bounds. Each is built once per
shape (which bounds it has), its bounds as bind parameters, and run with their values: building
and compiling a 55-column select took longer than an idle read itself (issue 11).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from exporter.config import Config, ModelConfig
from exporter.storage.copy_pages import CopyPages
from exporter.storage.engine import autocommit, fetch_all
from exporter.storage.time_format import (
    SECOND_PREFIX,
    TEXT_TIME_PATTERN,
    TimeFormat,
    declared_kind,
    detect,
    mixed_layouts,
)

BASELINE_TABLE = "model_monitor_baselines"
AUDIT_TABLE = "model_monitor_audit"
METRICS_TABLE = "model_monitor_metrics"

# Canonical names of the columns a source returns, whatever the user's table calls them.
ID, TS, PREDICTION, SCORE, LATENCY, LABEL, ARRIVAL, MATCHED = (
    "id",
    "ts",
    "prediction",
    "score",
    "latency",
    "label",
    "arrival",
    "matched",  # the prediction's id as found by a label's join; null: no such prediction
)


def feature_key(name: str) -> str:
    return f"f.{name}"


def segment_key(column: str) -> str:
    return f"seg.{column}"


def attribute_key(column: str) -> str:
    return f"attr.{column}"


def _split(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return schema or None, name


def metadata_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table, sa.Table]:
    """The project's own tables: versioned baselines, audit trail, metrics history."""
    baselines = sa.Table(
        BASELINE_TABLE,
        metadata,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.String(200), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("content", sa.JSON, nullable=False),
    )
    audit = sa.Table(
        AUDIT_TABLE,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False, index=True),
        sa.Column("model_id", sa.String(200), nullable=True, index=True),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
    )
    metrics = sa.Table(
        METRICS_TABLE,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("segment", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Index("ix_model_monitor_metrics_model_at", "model_id", "at"),
    )
    return baselines, audit, metrics


def default_tables(model: ModelConfig, metadata: sa.MetaData) -> list[sa.Table]:
    """Tables for a model whose mapping names tables that do not exist yet.

    The mapping doubles as the schema: a user without a predictions table of their own gets one
    whose columns are exactly the names the config maps, so the same config reads it.
    """
    src = model.source
    columns: dict[str, sa.Column] = {}

    def add(name: str | None, type_: Any, **kw: Any) -> None:
        if name and name not in columns:
            columns[name] = sa.Column(name, type_, **kw)

    add(src.id_column, sa.String(64), primary_key=True)
    add(src.timestamp_column, sa.DateTime, nullable=False)
    add(src.model_column, sa.String(200))
    add(src.prediction_column, sa.Float)
    add(src.score_column, sa.Float)
    add(src.latency_column, sa.Float)
    for name, feature in model.features.items():
        add(model.feature_column(name), sa.Float if feature.type == "numeric" else sa.String(200))
    for segment in model.segments:
        add(segment.column, sa.String(200))
    for attribute in model.protected_attributes:
        add(attribute, sa.String(200))
    labels = src.labels
    if labels is not None and labels.table is None:
        add(labels.column, sa.Float)
        add(labels.arrival_column, sa.DateTime)
    schema, name = _split(src.table)
    table = sa.Table(name, metadata, *columns.values(), schema=schema)
    # Reads range over (time, id) within one model: on a shared table the model leads the
    # index, or every model's reads would scan every other model's rows.
    model_first = [table.c[src.model_column]] if src.model_column else []
    sa.Index(
        f"ix_{name}_ts_id", *model_first, table.c[src.timestamp_column], table.c[src.id_column]
    )
    if labels is not None and labels.table is None and labels.arrival_column:
        sa.Index(
            f"ix_{name}_arrival_id",
            *model_first,
            table.c[labels.arrival_column],
            table.c[src.id_column],
        )
    tables = [table]
    if labels is not None and labels.table is not None:
        lschema, lname = _split(labels.table)
        label_table = sa.Table(
            lname,
            metadata,
            sa.Column(labels.prediction_id_column, sa.String(64), primary_key=True),
            sa.Column(labels.column, sa.Float),
            sa.Column(labels.arrival_column or "labeled_at", sa.DateTime, nullable=False),
            schema=lschema,
        )
        sa.Index(
            f"ix_{lname}_arrival",
            label_table.c[labels.arrival_column or "labeled_at"],
            label_table.c[labels.prediction_id_column],
        )
        tables.append(label_table)
    return tables


def create_project_tables(engine: Engine) -> None:
    """The project's own tables (baselines, audit, metrics history), if missing."""
    metadata = sa.MetaData()
    metadata_tables(metadata)
    metadata.create_all(engine)


def create_schema(engine: Engine, config: Config) -> None:
    """Create the project's tables and any mapped table that does not exist yet."""
    metadata = sa.MetaData()
    metadata_tables(metadata)
    existing = sa.inspect(engine)
    for model in config.models:
        for table in default_tables(model, sa.MetaData()):
            shared = table.key in metadata.tables  # models may share a table: create it once
            if not shared and not existing.has_table(table.name, schema=table.schema):
                table.to_metadata(metadata)
    metadata.create_all(engine)


_NUMBER = sa.Integer | sa.Float | sa.Numeric


def check_mapping(engine: Engine, model: ModelConfig) -> list[str]:
    """Problems that would stop the exporter reading this model right: missing tables or
    columns, and columns whose type cannot hold what is mapped onto them (a number on a text
    column would read as nothing but rejected rows)."""
    inspector = sa.inspect(engine)
    problems: list[str] = []
    src = model.source
    dialect = engine.dialect.name
    binary = model.kind == "binary_classification"

    def check_table(
        table: str, wanted: dict[str, str | None], kinds: dict[str, str], where: str
    ) -> None:
        schema, name = _split(table)
        if not inspector.has_table(name, schema=schema):
            problems.append(f"{where}.table: table {table!r} does not exist in the store")
            return
        have = {c["name"]: c["type"] for c in inspector.get_columns(name, schema=schema)}
        for key, column in wanted.items():
            if column is None:
                continue
            if column not in have:
                problems.append(
                    f"{key}: column {column!r} is not in table {table!r} "
                    f"(it has: {', '.join(sorted(have))})"
                )
                continue
            type_, kind = have[column], kinds.get(key)
            if kind == "time" and declared_kind(type_, dialect) is None:
                problems.append(
                    f"{key}: column {column!r} has type {type_}, which holds no time; fix: map "
                    "a TIMESTAMP/DATETIME column, epoch seconds or milliseconds as a number, or "
                    "ISO-8601 text"
                )
            allowed = _NUMBER | sa.Boolean if binary and kind == "binary" else _NUMBER
            if kind in ("number", "binary") and not isinstance(type_, allowed):
                problems.append(
                    f"{key}: column {column!r} has type {type_}, but it must hold numbers; fix: "
                    f"map a numeric column, or cast it in a view "
                    f"(CREATE VIEW ... AS SELECT CAST({column} AS DOUBLE PRECISION) ...)"
                    + (
                        ""
                        if kind == "binary" or not key.startswith("features.")
                        else ", or declare the feature `categorical`"
                    )
                )

    wanted: dict[str, str | None] = {
        "source.id_column": src.id_column,
        "source.timestamp_column": src.timestamp_column,
        "source.prediction_column": src.prediction_column,
        "source.score_column": src.score_column,
        "source.latency_column": src.latency_column,
        "source.model_column": src.model_column,
    }
    kinds = {
        "source.timestamp_column": "time",
        "source.prediction_column": "binary",
        "source.score_column": "number",
        "source.latency_column": "number",
        "source.labels.column": "binary",
        "source.labels.arrival_column": "time",
    }
    wanted |= {f"features.{n}.column": model.feature_column(n) for n in model.features}
    kinds |= {
        f"features.{n}.column": "number" for n, f in model.features.items() if f.type == "numeric"
    }
    wanted |= {f"segments.{s.column}": s.column for s in model.segments}
    wanted |= {f"protected_attributes.{a}": a for a in model.protected_attributes}
    if src.labels is not None and src.labels.table is None:
        wanted["source.labels.column"] = src.labels.column
        wanted["source.labels.arrival_column"] = src.labels.arrival_column
    check_table(src.table, wanted, kinds, "source")
    if src.labels is not None and src.labels.table is not None:
        check_table(
            src.labels.table,
            {
                "source.labels.prediction_id_column": src.labels.prediction_id_column,
                "source.labels.column": src.labels.column,
                "source.labels.arrival_column": src.labels.arrival_column,
            },
            kinds,
            "source.labels",
        )
    if not problems:
        problems += _check_times(ModelSource(engine, model))
    return problems


def _check_times(source: ModelSource) -> list[str]:
    """Text time columns whose newest and oldest rows mix layouts: text order is then not
    time order, and reads by range would miss rows."""
    problems = []
    streams: list[Stream] = ["predictions"]
    labels = source.model.source.labels
    if labels is not None and labels.arrival_column is not None:
        streams.append("labels")
    for stream in streams:
        time = source.time_format(stream)
        if time.kind != "text":
            continue
        samples = source.newest_times(stream, 1000) + source.oldest_times(stream, 1000)
        layouts = mixed_layouts(samples)
        if len(layouts) > 1:
            found = ", ".join(sorted(repr(x.render(0)) for x in layouts))
            key = "timestamp_column" if stream == "predictions" else "labels.arrival_column"
            problems.append(
                f"source.{key}: the text times mix layouts ({found}), so their text order is not "
                "their time order; fix: write one layout (ISO-8601 in UTC) or use a TIMESTAMP "
                "column"
            )
    return problems


def describe_times(engine: Engine, model: ModelConfig) -> list[str]:
    """How each mapped time column stores time, as detected (what check-config prints)."""
    source = ModelSource(engine, model)
    labels = model.source.labels
    out = [f"source.timestamp_column: {source.time_format('predictions').describe()}"]
    if labels is not None and labels.arrival_column is not None:
        out.append(f"source.labels.arrival_column: {source.time_format('labels').describe()}")
    return out


@dataclass(frozen=True)
class Cursor:
    """Keyset position in a stream: the last (order value, id) read, in the column's own type."""

    order: Any
    key: Any


@dataclass(frozen=True)
class Span:
    """Which rows of a stream a read covers: start <= time <= until, time < before (if given),
    (time, id) after the cursor (if given), id among `ids` (if given). Times are epoch seconds."""

    start: float
    until: float
    after: Cursor | None = None
    before: float | None = None
    ids: tuple[Any, ...] | None = None  # only these ids (reconciliation fetching what it lacks)

    @property
    def shape(self) -> tuple[bool, bool, bool]:
        """Which optional bounds the span has: what its statement's WHERE terms are."""
        return (self.after is not None, self.before is not None, self.ids is not None)


Stream = Literal["predictions", "labels"]


@dataclass(frozen=True)
class RowCounts:
    """What `ModelSource.count_rows` counted: rows per bucket, and the total of each whole span;
    and, of text times, the rows per whole-second prefix that is no instant (a 61st second), which
    sort among the times but belong to no bucket."""

    by_bucket: dict[int, int]
    totals: list[int]
    unplaced: dict[str, int] = field(default_factory=dict)


@lru_cache(maxsize=256)
def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    """A frame of no rows with these columns, as `from_records` makes it (object columns)."""
    return pd.DataFrame.from_records([], columns=list(columns))


class ModelSource:
    """Reads one model's predictions and labels from the mapped tables, newest-first never."""

    def __init__(self, engine: Engine, model: ModelConfig, bulk: CopyPages | None = None) -> None:
        self.engine = engine
        self._reads = autocommit(engine)
        self.model = model
        self.bulk = bulk  # the reader of bulk pages where one serves the store (copy_pages.py)
        self._tables: dict[str, sa.Table] = {}
        self._formats: dict[Stream, TimeFormat] = {}
        # statements by what they are and their shape (time formats included: see `_statement`)
        self._statements: dict[tuple[Any, ...], sa.Select[Any]] = {}

    def _table(self, name: str) -> sa.Table:
        if name not in self._tables:
            schema, bare = _split(name)
            self._tables[name] = sa.Table(
                bare, sa.MetaData(), schema=schema, autoload_with=self.engine
            )
        return self._tables[name]

    def forget_tables(self) -> None:
        """Drop reflected tables, e.g. after an outage during which a table was re-created."""
        self._tables.clear()
        self._formats.clear()
        self._statements.clear()

    def forget_guessed_formats(self) -> None:
        """Detect again the formats guessed from an empty column (once per refresh): the first
        rows decide, e.g. epoch seconds or milliseconds."""
        self._formats = {k: f for k, f in self._formats.items() if f.confirmed}

    def time_format(self, stream: Stream) -> TimeFormat:
        """How a stream's order column stores time, detected from its type and newest values:
        the newest values that look like ISO-8601 text, else the newest numbers (SQLite keeps
        any value in any column, and sorts text after numbers, so plain "newest" could be a
        stray word)."""
        if stream not in self._formats:
            _, column, _, _ = self._stream_order(stream, raw=True)
            dialect = self.engine.dialect.name
            if dialect == "sqlite" or declared_kind(column.type, dialect) == "text":
                text = sa.type_coerce(column, sa.String())
                samples = self._stored_times(stream, 20, where=text.like(TEXT_TIME_PATTERN))
                if not samples and dialect == "sqlite":
                    numeric = sa.func.typeof(column).in_(("integer", "real"))
                    samples = self._stored_times(stream, 20, where=numeric)
            else:  # the type says it all; the newest value tells epoch units apart
                samples = self._stored_times(stream, 20)
            self._formats[stream] = detect(column, dialect, samples)
        return self._formats[stream]

    def newest_times(self, stream: Stream, limit: int) -> list[Any]:
        """The stored values of a stream's newest `limit` times, newest first, unconverted."""
        return self._stored_times(stream, limit)

    def oldest_times(self, stream: Stream, limit: int) -> list[Any]:
        return self._stored_times(stream, limit, newest=False)

    def _stored_times(
        self, stream: Stream, limit: int, newest: bool = True, where: Any = None
    ) -> list[Any]:
        _, column, _, filters = self._stream_order(stream, raw=True)
        if where is not None:
            filters = [*filters, where]
        stmt = (
            sa.select(sa.type_coerce(column, sa.String()))
            .where(*filters, column.is_not(None))
            .order_by(column.desc() if newest else column)
            .limit(limit)
        )
        with self._reads.connect() as conn:
            return list(conn.execute(stmt).scalars())

    def _prediction_columns(self, table: sa.Table) -> list[sa.ColumnElement[Any]]:
        src, model = self.model.source, self.model
        cols = [
            table.c[src.id_column].label(ID),
            self.time_format("predictions").expression(table.c[src.timestamp_column]).label(TS),
            table.c[src.prediction_column].label(PREDICTION),
        ]
        if src.score_column:
            cols.append(table.c[src.score_column].label(SCORE))
        if src.latency_column:
            cols.append(table.c[src.latency_column].label(LATENCY))
        cols += [table.c[model.feature_column(n)].label(feature_key(n)) for n in model.features]
        cols += [table.c[s.column].label(segment_key(s.column)) for s in model.segments]
        cols += [table.c[a].label(attribute_key(a)) for a in model.protected_attributes]
        return cols

    def _model_filter(self, table: sa.Table) -> list[sa.ColumnElement[bool]]:
        src = self.model.source
        if not src.model_column:
            return []
        return [table.c[src.model_column] == (src.model_value or self.model.model_id)]

    def _statement(
        self, key: tuple[Any, ...], build: Callable[[], sa.Select[Any]]
    ) -> sa.Select[Any]:
        """The statement `build` makes, built once per `key`. Keys name the time formats the
        statement was built with, so a format detected anew (a guessed one replaced) gets its
        own statement."""
        stmt = self._statements.get(key)
        if stmt is None:
            stmt = self._statements[key] = build()
        return stmt

    @staticmethod
    def _range(
        order: sa.ColumnElement[Any],
        key: sa.ColumnElement[Any],
        shape: tuple[bool, bool, bool],
        prefix: str = "",
    ) -> list[sa.ColumnElement[bool]]:
        """The WHERE terms of one read of `shape` (`Span.shape`), their values bind parameters
        named after `prefix` (`_bounds` gives them): one lower bound on the order column for the
        index to start its range scan at (the cursor's, once there is one), then the keyset.
        `order` is already in the form `TimeFormat.expression` gives."""
        after, before, ids = shape

        def value(name: str, of: sa.ColumnElement[Any]) -> sa.BindParameter[Any]:
            return sa.bindparam(prefix + name, type_=of.type)

        terms = [order >= value("lower", order), order <= value("until", order)]
        if after:
            terms.append(
                sa.tuple_(order, key)
                > sa.tuple_(value("after_order", order), value("after_key", key))
            )
        if before:
            terms.append(order < value("before", order))
        if ids:
            terms.append(key.in_(sa.bindparam(prefix + "ids", type_=key.type, expanding=True)))
        return terms

    @staticmethod
    def _bounds(time: TimeFormat, span: Span, prefix: str = "") -> dict[str, Any]:
        """The values of `_range`'s parameters for `span`; bounds are values of the column's
        kind."""
        after = span.after
        values = {
            "lower": after.order if after is not None else time.bound(span.start, "ge"),
            "until": time.bound(span.until, "le"),
        }
        if after is not None:
            values |= {"after_order": after.order, "after_key": after.key}
        if span.before is not None:
            values["before"] = time.bound(span.before, "lt")
        if span.ids is not None:
            values["ids"] = list(span.ids)
        return {prefix + name: value for name, value in values.items()}

    def _on(self, conn: sa.Connection | None) -> contextlib.AbstractContextManager[sa.Connection]:
        """`conn` (a caller's snapshot, left open), or a read connection of its own."""
        return contextlib.nullcontext(conn) if conn is not None else self._reads.connect()

    def _fetch(
        self,
        stmt: sa.Select[Any],
        params: dict[str, Any] | None = None,
        bulk: bool = False,
        conn: sa.Connection | None = None,
    ) -> pd.DataFrame:
        """The rows of `stmt` run with `params`, as a frame, from the driver's plain tuples
        (`fetch_all`), or for a `bulk` page (a rebuild's, a backlog's) through `CopyPages`
        where the store has it; on `conn` if given (a snapshot's)."""
        params = params or {}
        if bulk and self.bulk is not None and conn is None:
            frame = self.bulk.read(stmt, params)
            if frame is not None:
                return frame
        with self._on(conn) as c:
            columns, rows = fetch_all(c, stmt, params)
        if not rows:  # most live reads: a copy of a kept empty frame is 100x cheaper to make
            return _empty(tuple(columns)).copy()
        return pd.DataFrame.from_records(rows, columns=columns)

    def _predictions_from(
        self, with_labels: bool
    ) -> tuple[sa.Table, sa.FromClause, list[sa.ColumnElement[Any]]]:
        """The predictions table, what to select from, and the columns (label included when
        labels are read together with predictions, or `with_labels` asks for it; then also a
        label's arrival where the predictions table holds it)."""
        src = self.model.source
        table = self._table(src.table)
        columns = self._prediction_columns(table)
        labels = src.labels
        from_: sa.FromClause = table
        if labels is not None and (with_labels or labels.arrival_column is None):
            if labels.table is None:
                columns.append(table.c[labels.column].label(LABEL))
                if self.labels_in_predictions:
                    arrival = table.c[labels.arrival_column]
                    columns.append(self.time_format("labels").expression(arrival).label(ARRIVAL))
            else:
                label_table = self._table(labels.table)
                from_ = table.outerjoin(
                    label_table,
                    table.c[src.id_column] == label_table.c[labels.prediction_id_column],
                )
                columns.append(label_table.c[labels.column].label(LABEL))
        return table, from_, columns

    @property
    def labels_in_predictions(self) -> bool:
        """Labels by arrival in the predictions table itself (no label table of their own)."""
        labels = self.model.source.labels
        return labels is not None and labels.table is None and labels.arrival_column is not None

    def predictions_query(
        self, span: Span, limit: int, with_labels: bool = False
    ) -> sa.Select[Any]:
        """The statement `read_predictions` runs, its values bound (its plan is checked in the
        tests)."""
        stmt, params = self._predictions_query(span, limit, with_labels)
        return stmt.params(params)

    def _predictions_query(
        self, span: Span, limit: int, with_labels: bool
    ) -> tuple[sa.Select[Any], dict[str, Any]]:
        time = self.time_format("predictions")

        def build() -> sa.Select[Any]:
            src = self.model.source
            table, from_, columns = self._predictions_from(with_labels)
            ts, key = time.expression(table.c[src.timestamp_column]), table.c[src.id_column]
            return (
                sa.select(*columns)
                .select_from(from_)
                .where(*self._model_filter(table), *self._range(ts, key, span.shape))
                .order_by(ts, key)
                .limit(limit)
            )

        arrival = self.time_format("labels") if with_labels and self.labels_in_predictions else None
        stmt = self._statement(
            ("predictions", time, arrival, span.shape, limit, with_labels), build
        )
        return stmt, self._bounds(time, span)

    def predictions_in(
        self, span: Span, width: int
    ) -> tuple[sa.Table, list[sa.ColumnElement[bool]], dict[str, Any], sa.ColumnElement[Any]]:
        """The predictions table, the WHERE terms of `span` (this model's rows, the index range
        of a read) with their values, and the key its rows group by into buckets of `width`
        seconds (`TimeFormat.bucket_key`): what a statement that sums a read's rows in the
        database needs (storage/push_down.py)."""
        src = self.model.source
        time = self.time_format("predictions")
        table = self._table(src.table)
        column = table.c[src.timestamp_column]
        where = [
            *self._model_filter(table),
            *self._range(time.expression(column), table.c[src.id_column], span.shape),
        ]
        bucket = time.bucket_key(column, width, self.engine.dialect.name)
        return table, where, self._bounds(time, span), bucket

    def read_predictions(
        self,
        span: Span,
        limit: int,
        with_labels: bool = False,
        bulk: bool = False,
        conn: sa.Connection | None = None,
    ) -> pd.DataFrame:
        """Up to `limit` predictions in `span`, in (time, id) order (`bulk`, `conn`: see
        `_fetch`)."""
        stmt, params = self._predictions_query(span, limit, with_labels)
        return self._fetch(stmt, params, bulk=bulk, conn=conn)

    def read_labels(self, span: Span, limit: int, bulk: bool = False) -> pd.DataFrame:
        """Up to `limit` label arrivals in `span`, joined to their predictions.

        A label whose prediction is not in the table comes back with a null MATCHED column
        (outer join), so it can be counted as rejected instead of vanishing.
        """
        time = self.time_format("labels")

        def build() -> sa.Select[Any]:
            labels = self.model.source.labels
            assert labels is not None
            predictions = self._table(self.model.source.table)
            from_, arrival, key, filters = self._stream_order("labels")
            if labels.table is not None:
                from_ = from_.outerjoin(
                    predictions,
                    sa.and_(
                        key == predictions.c[self.model.source.id_column],
                        *self._model_filter(predictions),
                    ),
                )
            columns = [c for c in self._prediction_columns(predictions) if c.name != ID]
            label = self._table(labels.table or self.model.source.table).c[labels.column]
            return (
                sa.select(
                    key.label(ID),
                    predictions.c[self.model.source.id_column].label(MATCHED),
                    *columns,
                    label.label(LABEL),
                    arrival.label(ARRIVAL),
                )
                .select_from(from_)
                .where(*filters, *self._range(arrival, key, span.shape))
                .order_by(arrival, key)
                .limit(limit)
            )

        # the predictions' time format is in the selected columns
        key = ("labels", time, self.time_format("predictions"), span.shape, limit)
        return self._fetch(self._statement(key, build), self._bounds(time, span), bulk)

    def _stream_order(
        self, stream: Stream, raw: bool = False
    ) -> tuple[sa.FromClause, sa.ColumnElement[Any], sa.ColumnElement[Any], list[Any]]:
        """Where a stream's rows are: their table, order and key columns, and filters. Labels
        in their own table are counted there alone (the join to predictions adds no rows).
        The order column comes as `TimeFormat.expression` gives it, or as declared if `raw`."""
        src = self.model.source
        predictions = self._table(src.table)
        if stream == "predictions":
            table, order = predictions, predictions.c[src.timestamp_column]
            key, filters = predictions.c[src.id_column], self._model_filter(predictions)
        else:
            labels = src.labels
            assert labels is not None and labels.arrival_column is not None
            if labels.table is None:
                table, order = predictions, predictions.c[labels.arrival_column]
                key, filters = predictions.c[src.id_column], self._model_filter(predictions)
            else:
                table = self._table(labels.table)
                order, key, filters = (
                    table.c[labels.arrival_column],
                    table.c[labels.prediction_id_column],
                    [],
                )
        if not raw:
            order = self.time_format(stream).expression(order)
        return table, order, key, filters

    def read_keys(
        self, stream: Stream, span: Span, limit: int, conn: sa.Connection | None = None
    ) -> pd.DataFrame:
        """Only the (id, time) of up to `limit` rows of a stream in `span`: a narrow read for
        reconciliation to find which rows it has not counted, before fetching those whole
        (`conn`: see `_fetch`)."""
        time = self.time_format(stream)

        def build() -> sa.Select[Any]:
            from_, order, key, filters = self._stream_order(stream)
            return (
                sa.select(key.label(ID), order.label(ARRIVAL if stream == "labels" else TS))
                .select_from(from_)
                .where(*filters, *self._range(order, key, span.shape))
                .order_by(order, key)
                .limit(limit)
            )

        stmt = self._statement(("keys", stream, time, span.shape, limit), build)
        return self._fetch(stmt, self._bounds(time, span), conn=conn)

    def edge_keys(self, stream: Stream, start: float, limit: int) -> pd.DataFrame:
        """(id, stored time) of the `limit` newest rows of a stream and of the `limit` rows just
        before `start` by the column's own order: a check of the reads that does not trust
        their bounds. Rows that sort outside a read's range but whose time lies inside it are
        rows no read can return (a text layout the bounds do not match, mixed UTC offsets)."""
        from_, order, key, filters = self._stream_order(stream)
        below = order < self.time_format(stream).bound(start, "ge")
        frames = []
        for where in ([], [below]):
            stmt = (
                sa.select(key.label(ID), order.label(ARRIVAL if stream == "labels" else TS))
                .select_from(from_)
                .where(*filters, order.is_not(None), *where)
                .order_by(order.desc(), key.desc())
                .limit(limit)
            )
            frames.append(self._fetch(stmt))
        return pd.concat(frames, ignore_index=True).drop_duplicates(ID)

    def count_query(
        self, stream: Stream, width: int, by_bucket: Sequence[Span], whole: Sequence[Span] = ()
    ) -> sa.Executable:
        """The statement `count_rows` runs, its values bound (its plan is checked in the
        tests)."""
        stmt, params = self._count_query(stream, width, by_bucket, whole)
        return stmt.params(params)

    def _count_query(
        self, stream: Stream, width: int, by_bucket: Sequence[Span], whole: Sequence[Span]
    ) -> tuple[sa.Select[Any], dict[str, Any]]:
        """A `UNION ALL` of one indexed range count per span, grouped by bucket for the spans
        of `by_bucket`. Rows: (part, bucket, count)."""
        time = self.time_format(stream)
        spans = [*by_bucket, *whole]

        def build() -> sa.Select[Any]:
            from_, column, _, filters = self._stream_order(stream, raw=True)
            bucket = time.bucket_key(column, width, self.engine.dialect.name).label("bucket")
            order = time.expression(column)

            def count(part: int, span: Span) -> sa.Select[Any]:
                grouped = part < len(by_bucket)
                stmt = sa.select(
                    sa.literal(part).label("part"),
                    bucket if grouped else sa.null().label("bucket"),
                    sa.func.count().label("n"),
                ).select_from(from_)
                stmt = stmt.where(*filters, *self._range(order, column, span.shape, f"s{part}_"))
                return stmt.group_by(bucket) if grouped else stmt

            counts = [count(part, span) for part, span in enumerate(spans)]
            return counts[0] if len(counts) == 1 else sa.union_all(*counts)

        shapes = (len(by_bucket), tuple(span.shape for span in spans))
        stmt = self._statement(("counts", stream, time, width, shapes), build)
        params: dict[str, Any] = {}
        for part, span in enumerate(spans):
            params |= self._bounds(time, span, f"s{part}_")
        return stmt, params

    def count_rows(
        self,
        stream: Stream,
        width: int,
        by_bucket: Sequence[Span],
        whole: Sequence[Span] = (),
        conn: sa.Connection | None = None,
    ) -> RowCounts:
        """Rows of a stream per time bucket of `width` seconds in each span of `by_bucket`, and
        in all of each span of `whole`, counted by the database in one statement
        (`count_query`); where `by_bucket` spans share a bucket, the later span's count stands.

        The rebuild uses it to learn how many predictions the older part of the performance
        window holds without reading them; reconciliation compares it with the rows counted. A
        whole count walks the index range and nothing else; a count per bucket also works out
        each row's bucket and groups by it, about ten times the cost on SQLite (issue 11).
        `conn`: see `_fetch`.
        """
        with self._on(conn) as c:
            rows = c.execute(*self._count_query(stream, width, by_bucket, whole)).all()
        totals = [0] * len(whole)
        parts: list[dict[int, int]] = [{} for _ in by_bucket]
        grouped = []
        for row in rows:
            if row[0] < len(by_bucket):
                grouped.append(row)
            else:
                totals[row[0] - len(by_bucket)] = int(row[2])
        buckets = self.time_format(stream).buckets([b for _, b, _ in grouped], width).tolist()
        unplaced: dict[str, int] = {}
        for bucket, (part, key, n) in zip(buckets, grouped, strict=True):
            if bucket >= 0:  # text prefixes of one second may share a bucket: add them up
                parts[part][bucket] = parts[part].get(bucket, 0) + int(n)
            elif isinstance(key, str):  # no instant: its rows lie in one span (bounds are)
                unplaced[key] = int(n)
        merged: dict[int, int] = {}
        for part_counts in parts:
            merged |= part_counts
        return RowCounts(merged, totals, unplaced)

    def unplaced_keys(self, stream: Stream, prefix: str, span: Span) -> pd.DataFrame:
        """(id, stored time) of the rows up to `span`'s end whose time is text beginning with
        `prefix`, a whole-second prefix `count_rows` found to be no instant: they sort together,
        from `prefix` on, so the index range starts there."""
        from_, order, key, filters = self._stream_order(stream)
        time = self.time_format(stream)
        start = sa.bindparam("prefix", prefix, type_=order.type)
        stmt = (
            sa.select(key.label(ID), order.label(ARRIVAL if stream == "labels" else TS))
            .select_from(from_)
            .where(
                *filters,
                order >= start,
                order <= sa.bindparam("until", time.bound(span.until, "le"), type_=order.type),
                sa.func.substr(order, 1, SECOND_PREFIX) == start,
            )
            .order_by(order, key)
        )
        return self._fetch(stmt)

    def count_unordered(self, stream: Stream) -> int:
        """Rows of a stream without a time (NULL, or text that is not a time), which no read by
        time can ever return.

        Labels in the predictions table are only counted when present: a NULL arrival there
        means "no label yet", not a bad row.
        """
        labels = self.model.source.labels
        if stream == "labels" and (labels is None or labels.table is None):
            return 0
        from_, column, _, filters = self._stream_order(stream)
        untimed = column.is_(None)
        if self.time_format(stream).kind == "text":  # text that is no time sorts outside any range
            untimed = sa.or_(untimed, column.not_like(TEXT_TIME_PATTERN))
        stmt = sa.select(sa.func.count()).select_from(from_).where(*filters, untimed)
        with self._reads.connect() as conn:
            return int(conn.execute(stmt).scalar_one())
