"""Drift sums computed by the database itself: the push-down route of issue 11.

Every drift statistic of a bucket is a sum (`sufficient_stats`), so the database that holds the
predictions can compute it with `GROUP BY bucket` and send only the sums: on an analytical
engine the scan then runs where the data is and in its own parallel, columnar way, and a window
of any size costs the exporter a few thousand numbers. The statements are built by SQLAlchemy
from the model's mapping (identifiers quoted, values bound), one dialect-neutral form for
SQLite, PostgreSQL and DuckDB:

- the counts and sums of each bucket: accepted and rejected rows, per numeric feature its
  missing, wrong-typed and out-of-range values and the sums under and over the baseline's
  range, the output's tail sums, and the correlation sums of the complete rows;
- the fine bins of each numeric feature and of the output, by a binary search over the
  baseline's edges written as nested `CASE` (seven comparisons a value for 100 bins), each
  row's bins grouped in one pass;
- the rows per stored value of each categorical feature and protected attribute (with the
  output sums fairness needs), which are then named and binned in Python exactly as the row
  fold names them (`rows.category_column`), once per distinct value.

What the route cannot do is said by `unsupported`: DLE's expected losses are tree predictions,
CBPE's are an interpolated calibration map and the multivariate error a projection, per row
and in Python, so models with them are folded from rows. Rows SQL cannot vouch for (on SQLite:
text in a numeric column, a text time its date functions read otherwise than Python) are left
out of the sums and their ids returned, for the caller to fold as rows: the route's buckets
are the row fold's, to rounding (`tests/test_push_down.py`, on SQLite, PostgreSQL and DuckDB).
The refresher rebuilds a window from these sums where `store.push_down` says so
(docs/architecture.md, Push-down).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from exporter.baseline import Baseline, CategoricalReference, NumericReference
from exporter.config import ModelConfig
from exporter.rows import category_column, present
from exporter.storage.prediction_store import ModelSource, Span
from exporter.storage.time_format import TimeFormat
from exporter.sufficient_stats import (
    PREDICTION,
    Layout,
    estimates,
    group_index,
    loss_model,
    model_groups,
    multivariate,
)

INF = float("inf")
FIRST_PART_ROWS = 100_000  # rows of the first part of `drift_sums_in_parts`


def unsupported(model: ModelConfig, baseline: Baseline | None) -> str | None:
    """Why the model's drift sums cannot all be computed by the database, or None."""
    if loss_model(model, baseline) is not None:
        return "DLE's expected losses are tree predictions per row (estimation.enabled)"
    if estimates(model, baseline):
        return "CBPE's expected cells need the calibration map per row (estimation.enabled)"
    if multivariate(model, baseline) is not None:
        return "the multivariate error is a projection per row (multivariate.enabled)"
    return None


@dataclass(frozen=True)
class BucketSums:
    """What the database summed over a span: the drift vector of each bucket, the rows it
    rejected by reason, and the ids of the rows it left to the exporter (see the module)."""

    buckets: np.ndarray
    matrix: np.ndarray  # buckets x layout.size
    rejected: dict[str, int]
    left_ids: list[Any]


def _finite(v: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """Neither NULL, NaN nor infinite: NaN sorts above +inf in PostgreSQL and DuckDB, and
    SQLite stores no NaN, so two comparisons say it on every dialect."""
    return sa.and_(v > _value(-INF), v < _value(INF))


def _value(x: float) -> sa.BindParameter[Any]:
    return sa.bindparam(None, float(x), type_=sa.Double())


def _flag(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
    """1 where `condition` holds, else 0 (NULL included)."""
    return sa.case((condition, 1), else_=0)


def _where(condition: sa.ColumnElement[bool], value: Any) -> sa.ColumnElement[Any]:
    """`value` where `condition` holds, else 0."""
    return sa.case((condition, value), else_=0.0)


def _rank(v: sa.ColumnElement[Any], edges: np.ndarray, lo: int, hi: int) -> Any:
    """How many of `edges[lo:hi]` are <= v, given that those before lo are: a binary search
    as nested CASE (numpy.searchsorted(edges, v, side="right") for lo=0, hi=len)."""
    if lo == hi:
        return sa.literal(lo)
    mid = (lo + hi) // 2
    return sa.case(
        (v >= _value(edges[mid]), _rank(v, edges, mid + 1, hi)), else_=_rank(v, edges, lo, mid)
    )


def fine_bin(v: sa.ColumnElement[Any], ref: NumericReference) -> sa.ColumnElement[Any]:
    """`NumericReference.bin` of a finite value, in SQL."""
    edges = ref.edges
    return sa.case(
        (v < _value(edges[0]), 0),
        (v > _value(edges[-1]), len(edges)),
        else_=1 + _rank(v, edges[1:-1], 0, len(edges) - 2),
    )


def _sqlite_text_bucket(
    time: TimeFormat, column: sa.ColumnElement[Any], width: int
) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[bool]]:
    """The bucket number of a SQLite text time, and the rows whose text it cannot vouch for.
    Grouping by the whole-second prefix (`TimeFormat.bucket_key`) would make a group per
    second and feature; SQLite's date functions read the prefix exactly, but they also take
    what Python does not (2027-02-30 is 2 March to them), another layout, another offset. So
    the bucket is computed only for text whose prefix reads back unchanged and whose rest is
    the layout's (fraction digits, then its offset); any other row is left to the row fold."""
    assert time.layout is not None
    text = time.expression(column)
    prefix = sa.func.substr(text, 1, 19)
    offset = time.layout.offset
    canonical = sa.func.strftime("%Y-%m-%d %H:%M:%S", prefix) == sa.func.replace(prefix, "T", " ")
    rest = sa.func.substr(text, 20, sa.func.length(text) - 19 - len(offset))
    exact = sa.and_(
        canonical,
        sa.func.substr(text, -len(offset)) == offset if offset else sa.true(),
        sa.func.length(text) >= 19 + len(offset),
        sa.or_(  # no fraction, or a point and digits
            rest == "",
            sa.and_(
                sa.func.substr(rest, 1, 1) == ".",
                sa.func.length(rest) > 1,
                sa.not_(sa.func.substr(rest, 2).op("GLOB")("*[^0-9]*")),
            ),
        ),
    )
    seconds = sa.cast(sa.func.strftime("%s", prefix), sa.Integer)
    shift = int(time.layout.utc_offset.total_seconds())
    return (seconds - shift) // width, sa.not_(sa.func.coalesce(exact, sa.false()))


class _Query:
    """What every statement of one model and span shares: the per-row terms of the span's
    rows (bucket, acceptance, numeric columns as doubles as the row fold makes them, fine
    bins, completeness), each computed once a row in a subquery (`rows`): inlined into every
    sum that uses them, the 40 comparisons of "complete" were repeated in each of 230
    correlation sums (20,000 rows: 6.4 s on SQLite). Statements group by terms named `mm_*`
    in a subquery of their own, so no column of the user's table can shadow them and
    PostgreSQL sees one expression where its bound values repeat."""

    def __init__(
        self, source: ModelSource, baseline: Baseline | None, span: Span, width: int
    ) -> None:
        model = source.model
        self.model = model
        self.dialect = source.engine.dialect.name
        table, where, self.params, bucket = source.predictions_in(span, width)
        src = model.source
        column = table.c
        time = source.time_format("predictions")
        self.buckets = partial(time.buckets, width=width)  # bucket numbers of bucket keys
        untyped: list[sa.ColumnElement[bool]] = []
        if source.engine.dialect.name == "sqlite" and time.kind == "text":
            bucket, inexact = _sqlite_text_bucket(time, column[src.timestamp_column], width)
            self.buckets = partial(np.asarray, dtype=np.int64)
            untyped.append(inexact)
        prediction = sa.cast(column[src.prediction_column], sa.Double())
        score = sa.cast(column[src.score_column], sa.Double()) if src.score_column else None
        numeric = [
            sa.cast(column[model.feature_column(n)], sa.Double()) for n in model.numeric_features
        ]
        # SQLite keeps any value in any column: a row with text in a numeric column is typed by
        # the row fold (pandas' to_numeric), so the sums leave it to the caller.
        raw = [column[src.prediction_column]]
        raw += [column[model.feature_column(n)] for n in model.numeric_features]
        if src.score_column:
            raw.append(column[src.score_column])
        if source.engine.dialect.name == "sqlite":
            kinds = ("integer", "real", "null")
            untyped += [sa.func.typeof(c).not_in(kinds) for c in raw]
        accepted = [_finite(prediction)]  # as rows.parse_rows accepts a prediction
        if score is not None:
            accepted += [_finite(score), score >= _value(0), score <= _value(1)]
        if model.kind == "binary_classification":
            accepted.append(prediction.in_([_value(0), _value(1)]))
        # The fine bin of each binned numeric column and of the output (-1: none), computed
        # once a row here: grouping by (bucket, column, bin) picks one of them per column.
        output = score if score is not None else prediction
        self.binned = (
            []
            if baseline is None
            else [
                (n, v, r)
                for n, v in zip(model.numeric_features, numeric, strict=True)
                if isinstance(r := baseline.features[n], NumericReference)
            ]
            + [(PREDICTION, output, baseline.prediction)]
        )
        self.terms: dict[str, sa.ColumnElement[Any]] = {
            "mm_bucket": bucket,
            "mm_ok": _flag(sa.and_(*accepted)),
            "mm_prediction": prediction,
            "mm_output": output,
            "mm_complete": _flag(sa.and_(sa.true(), *(_finite(v) for v in numeric))),
        }
        self.terms |= {
            f"mm_b{j}": sa.case((_finite(v), fine_bin(v, ref)), else_=-1)
            for j, (_, v, ref) in enumerate(self.binned)
        }
        self.terms |= {f"mm_x{i}": v for i, v in enumerate(numeric)}
        self.numeric = {n: f"mm_x{i}" for i, n in enumerate(model.numeric_features)}
        self.categories = {n: f"mm_c{i}" for i, n in enumerate(model.categorical_features)}
        self.terms |= {self.categories[n]: column[model.feature_column(n)] for n in self.categories}
        self.attributes = {a: f"mm_a{i}" for i, a in enumerate(model.protected_attributes)}
        self.terms |= {self.attributes[a]: column[a] for a in self.attributes}
        self.table = table
        self.typed = [*where, sa.not_(sa.or_(*untyped))] if untyped else where
        self._built: dict[str, Any] = {}
        self.left = (
            sa.select(column[src.id_column]).select_from(table).where(*where, sa.or_(*untyped))
            if untyped
            else None
        )

    def built(self, name: str, build: Callable[[], Any]) -> Any:
        """What `build` makes, made once: the parts of a span share their statements (the
        span's bounds are bind parameters, `params`), so each is built and compiled once."""
        if name not in self._built:
            self._built[name] = build()
        return self._built[name]

    def rows(self, *names: str, centre: dict[str, float] | None = None) -> sa.Subquery:
        """The span's typed rows with their bucket, acceptance and the terms `names`, each
        computed once a row (`_once`), and only the terms a statement needs. `centre`
        (term -> shift) adds `mm_z_<term>`: the term less its shift where the row is complete
        (`mm_complete` among `names`), else NULL, which sums skip: a correlation sum is then
        one product, not a test of 20 features for each of 230 sums."""
        terms = [self.terms[n].label(n) for n in ("mm_bucket", "mm_ok", *names)]
        stmt = self._once(sa.select(*terms).select_from(self.table).where(*self.typed))
        if centre is None:
            return stmt.subquery("mm_rows")
        base = stmt.subquery("mm_base")
        complete = base.c.mm_complete == 1
        centred = [
            sa.case((complete, base.c[n] - _value(shift))).label(f"mm_z_{n}")
            for n, shift in centre.items()
        ]
        return self._once(sa.select(*base.c, *centred)).subquery("mm_rows")

    def _once(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        """`stmt` as a subquery the planner computes once a row: `OFFSET 0` where the planner
        would inline it (SQLite, PostgreSQL); DuckDB finds common terms itself, and the barrier
        costs it its parallel plan (1M rows: 2.8 s with it, 1.7 s without, for the counts)."""
        return stmt.offset(0) if self.dialect in ("sqlite", "postgresql") else stmt

    @staticmethod
    def grouped(
        rows: sa.Subquery,
        keys: list[sa.ColumnElement[Any]],
        sums: list[sa.ColumnElement[Any]],
        accepted: bool = True,
        also: sa.FromClause | None = None,
    ) -> sa.Select[Any]:
        """Per bucket and `keys`: the row count and the sum of each of `sums` over `rows` (the
        accepted ones, unless not `accepted`), each joined to every row of `also` if given.
        Columns: bucket, keys, n, sums."""
        terms = [rows.c.mm_bucket.label("mm_bucket")]
        terms += [k.label(f"mm_k{i}") for i, k in enumerate(keys)]
        terms += [s.label(f"mm_s{i}") for i, s in enumerate(sums)]
        from_ = rows if also is None else rows.join(also, sa.true())
        stmt = sa.select(*terms).select_from(from_)
        if accepted:
            stmt = stmt.where(rows.c.mm_ok == 1)
        grouped = stmt.subquery("mm_terms")
        by = [grouped.c.mm_bucket, *(grouped.c[f"mm_k{i}"] for i in range(len(keys)))]
        return sa.select(
            *by, sa.func.count(), *(sa.func.sum(grouped.c[f"mm_s{i}"]) for i in range(len(sums)))
        ).group_by(*by)


class _Cells:
    """Values for cells of a layout by bucket key, added up into one matrix at the end."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.keys: list[Any] = []
        self.cells: list[np.ndarray] = []
        self.values: list[np.ndarray] = []

    def add(self, keys: list[Any], cell: np.ndarray | int, values: Any) -> None:
        self.keys.extend(keys)
        self.cells.append(np.broadcast_to(np.asarray(cell, dtype=np.intp), (len(keys),)))
        self.values.append(np.broadcast_to(np.asarray(values, dtype=float), (len(keys),)))

    def matrix(self, buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bucket ids and their vectors; `buckets` are the ids of `keys` (-1: dropped)."""
        cells = np.concatenate([np.zeros(0, np.intp), *self.cells])
        values = np.concatenate([np.zeros(0), *self.values])
        timed = buckets >= 0
        ids, row = np.unique(buckets[timed], return_inverse=True)
        matrix = np.zeros((len(ids), self.layout.size))
        np.add.at(matrix, (row, cells[timed]), values[timed])
        return ids, matrix


def _scalar_sums(
    q: _Query, layout: Layout, baseline: Baseline | None
) -> tuple[sa.Subquery, list[tuple[int, sa.ColumnElement[Any]]]]:
    """The rows, and the layout cell and per-row term of every count and sum that is one
    number a bucket."""
    model = q.model
    corr = ("corr_n",) in layout
    centre = (
        {q.numeric[n]: baseline.features[n].mean for n in model.numeric_features}
        if corr and baseline is not None
        else None
    )
    complete = ("mm_complete",) if centre is not None else ()
    rows = q.rows("mm_output", *complete, *q.numeric.values(), centre=centre)
    output = rows.c.mm_output
    cells: list[tuple[int, sa.ColumnElement[Any]]] = []

    def add(key: tuple[str, ...], term: sa.ColumnElement[Any], offset: int = 0) -> None:
        cells.append((layout[key].start + offset, term))

    for name, term in q.numeric.items():
        v = rows.c[term]
        add(("missing", name), _flag(sa.or_(v.is_(None), v > _value(INF))))
        add(("type_error", name), _flag(v.in_([_value(INF), _value(-INF)])))
        ref = baseline.features[name] if baseline is not None else None
        ref = ref if isinstance(ref, NumericReference) else None
        valid = model.features[name].valid_range or (
            None if ref is None else (float(ref.edges[0]), float(ref.edges[-1]))
        )
        if valid is not None:
            outside = sa.or_(v < _value(valid[0]), v > _value(valid[1]))
            add(("out_of_range", name), _flag(sa.and_(_finite(v), outside)))
        if ref is not None:
            add(("below_sum", name), _where(sa.and_(_finite(v), v < _value(ref.edges[0])), v))
            add(("above_sum", name), _where(sa.and_(_finite(v), v > _value(ref.edges[-1])), v))
    if baseline is not None:
        ref = baseline.prediction
        add(("below_sum", PREDICTION), _where(output < _value(ref.edges[0]), output))
        add(("above_sum", PREDICTION), _where(output > _value(ref.edges[-1]), output))
    if centre is not None:
        z = [rows.c[f"mm_z_{term}"] for term in centre]
        add(("corr_n",), rows.c.mm_complete)
        for i in range(len(z)):
            add(("corr_sum",), z[i], i)
            for j in range(i, len(z)):
                add(("corr_cross",), z[i] * z[j], i * len(z) + j)
    return rows, cells


def _add_scalars(
    conn: sa.Connection, q: _Query, layout: Layout, baseline: Baseline | None, cells: _Cells
) -> tuple[list[Any], np.ndarray]:
    """Each bucket's counts and sums into `cells`; the bucket key, acceptance (1/0) and row
    count of every group."""

    def build() -> tuple[sa.Select[Any], list[tuple[int, sa.ColumnElement[Any]]]]:
        source, sums = _scalar_sums(q, layout, baseline)
        return q.grouped(source, [source.c.mm_ok], [t for _, t in sums], False), sums

    stmt, sums = q.built("scalars", build)
    rows = conn.execute(stmt, q.params).all()
    ok = [r for r in rows if r[1] == 1]
    keys = [r[0] for r in ok]
    cells.add(keys, layout["rows",].start, [r[2] for r in ok])
    for i, (cell, _) in enumerate(sums):
        cells.add(keys, cell, [r[3 + i] or 0.0 for r in ok])
    if ("corr_cross",) in layout:  # the sums above the diagonal, mirrored below it
        k = len(q.model.numeric_features)
        start = layout["corr_cross",].start
        for i in range(k):
            for j in range(i + 1, k):
                upper = [c for c, _ in sums].index(start + i * k + j)
                cells.add(keys, start + j * k + i, [r[3 + upper] or 0.0 for r in ok])
    return [r[0] for r in rows], np.array([(r[1], r[2]) for r in rows], dtype=np.int64)


def _add_bins(conn: sa.Connection, q: _Query, layout: Layout, cells: _Cells) -> None:
    """Rows per bucket and fine bin of each binned numeric feature and of the output, in one
    pass over the rows: each row is joined to the list of binned columns and grouped by
    (bucket, column, its bin); a `UNION ALL` of one grouping per column read the rows once
    per column."""

    def build() -> sa.Select[Any]:
        which = sa.union_all(  # not VALUES: SQLite cannot name the columns of one
            *(sa.select(sa.literal(j, sa.Integer).label("mm_j")) for j in range(len(q.binned)))
        ).subquery("mm_binned")
        rows = q.rows(*(f"mm_b{j}" for j in range(len(q.binned))))
        fine = sa.case(
            *((which.c.mm_j == j, rows.c[f"mm_b{j}"]) for j in range(len(q.binned))), else_=-1
        )
        return q.grouped(rows, [which.c.mm_j, fine], [], also=which)

    rows = [r for r in conn.execute(q.built("bins", build), q.params).all() if r[2] >= 0]
    starts = np.array([layout["bins", n].start for n, _, _ in q.binned], dtype=np.intp)
    part = np.array([r[1] for r in rows], dtype=np.intp)
    index = np.array([r[2] for r in rows], dtype=np.intp)
    cells.add([r[0] for r in rows], starts[part] + index, [r[3] for r in rows])


def _add_categories(
    conn: sa.Connection, q: _Query, layout: Layout, baseline: Baseline | None, cells: _Cells
) -> None:
    """Rows per bucket and stored value of each categorical feature, and of each protected
    attribute with the sums of the output; the values are named as the row fold names them
    (`category_column`), once each."""
    model = q.model
    for name, term in q.categories.items():

        def build(term: str = term) -> sa.Select[Any]:
            source = q.rows(term)
            return q.grouped(source, [source.c[term]], [])

        rows = conn.execute(q.built(term, build), q.params).all()
        keys, n, names = _named(rows)
        has = present(names)
        cells.add(keys, layout["missing", name].start, n * ~has)
        ref = baseline.features[name] if baseline is not None else None
        if isinstance(ref, CategoricalReference):
            cells.add(keys, layout["new_category", name].start, n * (has & ref.is_new(names)))
            cells.add(keys, layout["bins", name].start + ref.bin(names), n * has)
    threshold = model.performance.classification_threshold
    cutoff = model.fairness.regression_cutoff
    selects = model.kind == "binary_classification" or cutoff is not None
    stats = ["fair_output", "fair_output2"] + (["fair_selected"] if selects else [])
    for attribute, groups in model_groups(model, baseline).fairness.items():
        term = q.attributes[attribute]

        def build(term: str = term) -> sa.Select[Any]:
            source = q.rows(term, "mm_output", "mm_prediction")
            output, prediction = source.c.mm_output, source.c.mm_prediction
            terms = [output, output * output]
            if model.kind == "binary_classification":
                terms.append(_flag(output >= _value(threshold)))
            elif cutoff is not None:
                terms.append(_flag(prediction >= _value(cutoff)))
            return q.grouped(source, [source.c[term]], terms)

        rows = conn.execute(q.built(term, build), q.params).all()
        keys, n, names = _named(rows)
        index = group_index(names, groups)
        for i, stat in enumerate(["fair_n", *stats]):
            starts = np.array([layout[stat, attribute, g].start for g in groups], dtype=np.intp)
            values = n if i == 0 else np.array([r[2 + i] or 0.0 for r in rows], dtype=float)
            cells.add(keys, starts[index], values)


def _named(rows: list[Any]) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Bucket keys, counts and category names of (bucket, value, n, ...) rows."""
    names = category_column(pd.Series([r[1] for r in rows], dtype=object))
    return [r[0] for r in rows], np.array([r[2] for r in rows], dtype=float), names


class _Summer:
    """Sums of a span's parts in one layout, built up part by part; each statement is built
    once per part shape (its bounds are bind parameters). Refuses a model it cannot sum."""

    def __init__(
        self, source: ModelSource, layout: Layout, baseline: Baseline | None, width: int
    ) -> None:
        reason = unsupported(source.model, baseline)
        if reason is not None:
            raise ValueError(f"model {source.model.model_id}: drift sums need rows: {reason}")
        self.source, self.layout, self.baseline, self.width = source, layout, baseline, width
        self.cells = _Cells(layout)
        self.queries: dict[tuple[bool, bool, bool], _Query] = {}
        self.keys: list[Any] = []
        self.groups = [np.zeros((0, 2), np.int64)]
        self.left: list[Any] = []

    def add(self, conn: sa.Connection, span: Span) -> None:
        q = self.queries.get(span.shape)
        if q is None:
            q = self.queries[span.shape] = _Query(self.source, self.baseline, span, self.width)
        else:
            q.params = self.source.predictions_in(span, self.width)[2]
        found, counted = _add_scalars(conn, q, self.layout, self.baseline, self.cells)
        self.keys += found
        self.groups.append(counted)
        if q.binned:
            _add_bins(conn, q, self.layout, self.cells)
        _add_categories(conn, q, self.layout, self.baseline, self.cells)
        if q.left is not None:
            self.left += conn.execute(q.left, q.params).scalars()

    def result(self) -> BucketSums:
        buckets = next(iter(self.queries.values())).buckets  # the same for every shape
        ids, matrix = self.cells.matrix(buckets(self.cells.keys))
        timed = buckets(self.keys) >= 0
        ok, n = np.concatenate(self.groups).T
        rejected = {
            # a text time whose second is no time at all: as parse_rows, not a bad prediction
            "invalid_timestamp": int(n[~timed].sum()),
            "invalid_prediction": int(n[timed & (ok == 0)].sum()),
        }
        return BucketSums(ids, matrix, rejected, self.left)


def drift_sums_in_parts(
    source: ModelSource,
    layout: Layout,
    baseline: Baseline | None,
    width: int,
    span: Span,
    conn: sa.Connection,
    budget: float,
    first: int | None = None,
) -> tuple[BucketSums, list[Span]]:
    """The drift vector of every bucket of `width` seconds with rows in `span`, summed by the
    database on `conn` (a snapshot: all its statements see the same rows), in `layout`, cut
    at bucket edges into parts each summed within
    about `budget` seconds (the statement timeout: a part is several statements, none of
    which takes it all): the first part is of `first`
    rows (`FIRST_PART_ROWS`) by the store's own count, each next one as many rows as the
    parts before summed in `budget` at the rate they took. A fixed size was either too small
    for DuckDB (100,000 rows: twice the time of one part, its planning repeated per
    statement) or too large for PostgreSQL. Also returns the parts."""
    summer = _Summer(source, layout, baseline, width)
    first = FIRST_PART_ROWS if first is None else first
    counts = source.count_rows("predictions", width, [span], conn=conn).by_bucket
    buckets = sorted(counts)
    parts: list[Span] = []
    start, at, most, done, took = span.start, 0, first, 0, 0.0
    while True:
        rows, end = 0, at
        while end < len(buckets) and (rows == 0 or rows + counts[buckets[end]] <= most):
            rows += counts[buckets[end]]
            end += 1
        last = end >= len(buckets)
        part = replace(span, start=start, before=None if last else float(buckets[end] * width))
        began = time.perf_counter()
        summer.add(conn, part)
        took += time.perf_counter() - began
        parts.append(part)
        if last:
            return summer.result(), parts
        done += rows
        start, at = float(buckets[end] * width), end
        most = max(first, int(done / max(took, 1e-3) * budget))
