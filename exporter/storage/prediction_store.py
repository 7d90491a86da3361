"""The prediction store: default schema and the source that reads any mapped table.

This is one of the two places that talk SQL (with `logging/`). Every identifier comes from the
config and reaches the database only through SQLAlchemy's quoting (reflected `Table` objects and
`label()`), never through string formatting.

Reads use keyset pagination on (order column, id), with a plain lower bound on the order column
before the row-value comparison, so that each read is one index range scan over the rows that
are new, whatever the size of the table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from exporter.config import Config, ModelConfig

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
    sa.Index(f"ix_{name}_ts_id", table.c[src.timestamp_column], table.c[src.id_column])
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
            if not existing.has_table(table.name, schema=table.schema):
                table.to_metadata(metadata)
    metadata.create_all(engine)


def check_mapping(engine: Engine, model: ModelConfig) -> list[str]:
    """Problems that would stop the exporter reading this model: missing tables or columns."""
    inspector = sa.inspect(engine)
    problems: list[str] = []
    src = model.source

    def check_table(table: str, wanted: dict[str, str | None], where: str) -> None:
        schema, name = _split(table)
        if not inspector.has_table(name, schema=schema):
            problems.append(f"{where}.table: table {table!r} does not exist in the store")
            return
        have = {c["name"]: c["type"] for c in inspector.get_columns(name, schema=schema)}
        for key, column in wanted.items():
            if column is not None and column not in have:
                problems.append(
                    f"{key}: column {column!r} is not in table {table!r} "
                    f"(it has: {', '.join(sorted(have))})"
                )
        ts = wanted.get("source.timestamp_column") or wanted.get("source.labels.arrival_column")
        if ts in have and not isinstance(
            have[ts], sa.DateTime | sa.Numeric | sa.Integer | sa.Float
        ):
            problems.append(
                f"{where}: column {ts!r} has type {have[ts]}; it must be a DATETIME/TIMESTAMP "
                "or a number of epoch seconds"
            )

    wanted: dict[str, str | None] = {
        "source.id_column": src.id_column,
        "source.timestamp_column": src.timestamp_column,
        "source.prediction_column": src.prediction_column,
        "source.score_column": src.score_column,
        "source.latency_column": src.latency_column,
        "source.model_column": src.model_column,
    }
    wanted |= {f"features.{n}.column": model.feature_column(n) for n in model.features}
    wanted |= {f"segments.{s.column}": s.column for s in model.segments}
    wanted |= {f"protected_attributes.{a}": a for a in model.protected_attributes}
    if src.labels is not None and src.labels.table is None:
        wanted["source.labels.column"] = src.labels.column
        wanted["source.labels.arrival_column"] = src.labels.arrival_column
    check_table(src.table, wanted, "source")
    if src.labels is not None and src.labels.table is not None:
        check_table(
            src.labels.table,
            {
                "source.labels.prediction_id_column": src.labels.prediction_id_column,
                "source.labels.column": src.labels.column,
                "source.labels.arrival_column": src.labels.arrival_column,
            },
            "source.labels",
        )
    return problems


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


Stream = Literal["predictions", "labels"]


_EPOCH = pd.Timestamp(0, tz="UTC")


class TimeCodec:
    """Converts between epoch seconds and the native type of a time column."""

    def __init__(self, column: sa.Column) -> None:
        self.numeric = isinstance(column.type, sa.Numeric | sa.Integer | sa.Float)
        self.aware = bool(getattr(column.type, "timezone", False))

    def to_native(self, epoch: float) -> Any:
        if self.numeric:
            return epoch
        value = dt.datetime.fromtimestamp(epoch, dt.UTC)
        return value if self.aware else value.replace(tzinfo=None)

    def to_epoch(self, values: pd.Series) -> pd.Series:
        """Epoch seconds as float; NaN where the value is missing or not a time."""
        if self.numeric:
            return pd.to_numeric(values, errors="coerce").astype(float)
        stamps = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
        seconds = (stamps - _EPOCH) / pd.Timedelta(seconds=1)  # whatever the datetime resolution
        return pd.Series(seconds, index=values.index, dtype=float)


class ModelSource:
    """Reads one model's predictions and labels from the mapped tables, newest-first never."""

    def __init__(self, engine: Engine, model: ModelConfig) -> None:
        self.engine = engine
        self.model = model
        self._tables: dict[str, sa.Table] = {}

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

    def _prediction_columns(self, table: sa.Table) -> list[sa.ColumnElement[Any]]:
        src, model = self.model.source, self.model
        cols = [
            table.c[src.id_column].label(ID),
            table.c[src.timestamp_column].label(TS),
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

    def prediction_time_codec(self) -> TimeCodec:
        table = self._table(self.model.source.table)
        return TimeCodec(table.c[self.model.source.timestamp_column])

    def label_time_codec(self) -> TimeCodec:
        labels = self.model.source.labels
        assert labels is not None and labels.arrival_column is not None
        table = self._table(labels.table or self.model.source.table)
        return TimeCodec(table.c[labels.arrival_column])

    @staticmethod
    def _range(
        order: sa.ColumnElement[Any],
        key: sa.ColumnElement[Any],
        codec: TimeCodec,
        span: Span,
    ) -> list[sa.ColumnElement[bool]]:
        """The WHERE terms of one read: one lower bound on the order column for the index to
        start its range scan at (the cursor's, once there is one), then the keyset."""
        after = span.after
        lower = after.order if after is not None else codec.to_native(span.start)
        terms = [order >= lower, order <= codec.to_native(span.until)]
        if after is not None:
            terms.append(sa.tuple_(order, key) > (after.order, after.key))
        if span.before is not None:
            terms.append(order < codec.to_native(span.before))
        if span.ids is not None:
            terms.append(key.in_(span.ids))
        return terms

    def _fetch(self, stmt: sa.Select[Any]) -> pd.DataFrame:
        """The rows of `stmt` as a frame, built column by column: `DataFrame.from_records` on
        SQLAlchemy rows probes every row for a `dtype` (an exception each, pandas 3), which
        cost more than the query itself."""
        with self.engine.connect() as conn:
            result = conn.execute(stmt)
            columns, rows = list(result.keys()), result.all()
        if not rows:
            return pd.DataFrame(columns=columns)
        return pd.DataFrame(dict(zip(columns, map(list, zip(*rows, strict=True)), strict=True)))

    def _predictions_from(
        self, with_labels: bool
    ) -> tuple[sa.Table, sa.FromClause, list[sa.ColumnElement[Any]]]:
        """The predictions table, what to select from, and the columns (label included when
        labels are read together with predictions, or `with_labels` asks for it)."""
        src = self.model.source
        table = self._table(src.table)
        columns = self._prediction_columns(table)
        labels = src.labels
        from_: sa.FromClause = table
        if labels is not None and (with_labels or labels.arrival_column is None):
            if labels.table is None:
                columns.append(table.c[labels.column].label(LABEL))
            else:
                label_table = self._table(labels.table)
                from_ = table.outerjoin(
                    label_table,
                    table.c[src.id_column] == label_table.c[labels.prediction_id_column],
                )
                columns.append(label_table.c[labels.column].label(LABEL))
        return table, from_, columns

    def read_predictions(self, span: Span, limit: int, with_labels: bool = False) -> pd.DataFrame:
        """Up to `limit` predictions in `span`, in (time, id) order."""
        src = self.model.source
        table, from_, columns = self._predictions_from(with_labels)
        ts, key = table.c[src.timestamp_column], table.c[src.id_column]
        stmt = (
            sa.select(*columns)
            .select_from(from_)
            .where(*self._model_filter(table), *self._range(ts, key, TimeCodec(ts), span))
            .order_by(ts, key)
            .limit(limit)
        )
        return self._fetch(stmt)

    def read_labels(self, span: Span, limit: int) -> pd.DataFrame:
        """Up to `limit` label arrivals in `span`, joined to their predictions.

        A label whose prediction is not in the table comes back with a null MATCHED column
        (outer join), so it can be counted as rejected instead of vanishing.
        """
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
        stmt = (
            sa.select(
                key.label(ID),
                predictions.c[self.model.source.id_column].label(MATCHED),
                *columns,
                self._table(labels.table or self.model.source.table).c[labels.column].label(LABEL),
                arrival.label(ARRIVAL),
            )
            .select_from(from_)
            .where(*filters, *self._range(arrival, key, TimeCodec(arrival), span))
            .order_by(arrival, key)
            .limit(limit)
        )
        return self._fetch(stmt)

    def _stream_order(
        self, stream: Stream
    ) -> tuple[sa.FromClause, sa.ColumnElement[Any], sa.ColumnElement[Any], list[Any]]:
        """Where a stream's rows are: their table, order and key columns, and filters. Labels
        in their own table are counted there alone (the join to predictions adds no rows)."""
        src = self.model.source
        predictions = self._table(src.table)
        if stream == "predictions":
            columns = (predictions.c[src.timestamp_column], predictions.c[src.id_column])
            return predictions, *columns, self._model_filter(predictions)
        labels = src.labels
        assert labels is not None and labels.arrival_column is not None
        if labels.table is None:
            columns = (predictions.c[labels.arrival_column], predictions.c[src.id_column])
            return predictions, *columns, self._model_filter(predictions)
        table = self._table(labels.table)
        return table, table.c[labels.arrival_column], table.c[labels.prediction_id_column], []

    def read_keys(self, stream: Stream, span: Span, limit: int) -> pd.DataFrame:
        """Only the (id, time) of up to `limit` rows of a stream in `span`: a narrow read for
        reconciliation to find which rows it has not counted, before fetching those whole."""
        from_, order, key, filters = self._stream_order(stream)
        stmt = (
            sa.select(key.label(ID), order.label(ARRIVAL if stream == "labels" else TS))
            .select_from(from_)
            .where(*filters, *self._range(order, key, TimeCodec(order), span))
            .order_by(order, key)
            .limit(limit)
        )
        return self._fetch(stmt)

    def count_by_bucket(self, stream: Stream, span: Span, width: int) -> dict[int, int]:
        """Rows of a stream per time bucket of `width` seconds in `span`, counted by the database.

        The rebuild uses it to learn how many predictions the older part of the performance
        window holds without reading them; reconciliation compares it with the rows counted.
        """
        from_, column, _, filters = self._stream_order(stream)
        codec = TimeCodec(column)
        sqlite_text = self.engine.dialect.name == "sqlite" and not codec.numeric
        if sqlite_text:
            # SQLite's date functions round to milliseconds (12.9996 s becomes 13 s, the next
            # bucket) and parse every row; the stored text's whole seconds floor exactly and
            # cost a substring. The database groups by second, Python maps seconds to buckets.
            key = sa.func.substr(column, 1, 19)
        elif self.engine.dialect.name == "sqlite":  # SQLite may lack floor(); epochs are positive
            key = sa.cast(column, sa.Integer) // width
        else:
            epoch = column if codec.numeric else sa.extract("epoch", column)
            key = sa.func.floor(epoch / width)
        key = key.label("bucket")
        stmt = (
            sa.select(key, sa.func.count())
            .select_from(from_)
            .where(*filters, *self._range(column, column, codec, span))
            .group_by(key)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not sqlite_text:
            return {int(b): int(n) for b, n in rows}
        seconds = pd.to_datetime([b for b, _ in rows], format="%Y-%m-%d %H:%M:%S", utc=True)
        buckets = (seconds - _EPOCH) // pd.Timedelta(seconds=width)
        counts = pd.Series([n for _, n in rows], dtype="int64").groupby(buckets.to_numpy()).sum()
        return {int(b): int(n) for b, n in counts.items()}

    def count_unordered(self, stream: Stream) -> int:
        """Rows of a stream without a time (NULL), which no read by time can ever return.

        Labels in the predictions table are only counted when present: a NULL arrival there
        means "no label yet", not a bad row.
        """
        labels = self.model.source.labels
        if stream == "labels" and (labels is None or labels.table is None):
            return 0
        from_, column, _, filters = self._stream_order(stream)
        stmt = sa.select(sa.func.count()).select_from(from_).where(*filters, column.is_(None))
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())
