"""How a time column stores instants, and how to compare with it without losing its index.

Applications store times as a DATETIME/TIMESTAMP (with or without time zone), as epoch seconds
or milliseconds in a number column, or as ISO-8601 text (SQLite has no datetime type, so every
SQLite "DATETIME" is text or a number underneath). The format is detected per column from its
declared type and its newest value, and every bound of a read is rendered in that format, so the
database compares the column with a value of its own kind and an index on it is used: no
function is applied to the column.

Text compares as text, so a bound is written in the layout the column's rows use (separator,
fractional digits, UTC offset) and rounded to the layout's resolution in the direction that
keeps the comparison exact. Rows in other layouts still parse to the right instant (any ISO-8601
form; naive means UTC); only their place in the text order may differ, which
docs/architecture.md ("Time columns") spells out.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa

Kind = Literal["datetime", "epoch", "text"]
Side = Literal["ge", "le", "lt"]  # the comparison a bound is rendered for

_NAIVE_EPOCH = dt.datetime(1970, 1, 1)

# Epoch units told apart by magnitude: 1e11 s is the year 5138, 1e11 ms is 1973.
_EPOCH_UNITS = {1e9: "nanoseconds", 1e6: "microseconds", 1e3: "milliseconds", 1.0: "seconds"}

_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})(?:(?P<sep>[T ])\d{2}:\d{2}(?::\d{2}(?:\.(?P<frac>\d{1,9}))?)?)?"
    r"\s*(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?$"
)

# Values that can be a time in ISO text start with a four-digit year; the rest never parse.
TEXT_TIME_PATTERN = "____-__-__%"
SECOND_PREFIX = len("2026-11-24 10:54:58")  # the whole-second part of ISO text
# A batch of naive ISO-8601 times of at most six fractional digits, one per line.
_NAIVE_TIME = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?"
_NAIVE_BATCH = re.compile(rf"(?:{_NAIVE_TIME}\n)*{_NAIVE_TIME}", re.ASCII)


@dataclass(frozen=True)
class TextLayout:
    """How one ISO-8601 text column writes its instants."""

    sep: str = " "  # between date and time: "T" or " "
    digits: int = 6  # fractional-second digits written
    offset: str = ""  # "" (naive, taken as UTC), "Z", or a fixed offset such as "+02:00"

    @classmethod
    def of(cls, value: str) -> TextLayout | None:
        """The layout of one stored value; None when it is not ISO-8601 text."""
        match = _ISO.match(value.strip())
        if match is None:
            return None
        return cls(
            sep=match["sep"] or " ",
            digits=len(match["frac"] or ""),
            offset=match["offset"] or "",
        )

    @property
    def utc_offset(self) -> dt.timedelta:
        if self.offset in ("", "Z"):
            return dt.timedelta(0)
        sign = -1 if self.offset[0] == "-" else 1
        digits = self.offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
        return sign * dt.timedelta(hours=hours, minutes=minutes)

    def render(self, ticks: int, shortest: bool = False) -> str:
        """An instant, counted in this layout's resolution (10**-digits s), as it is written;
        `shortest`: without the fraction's trailing zeros (see `TimeFormat.bound`)."""
        whole, fraction = divmod(ticks, 10**self.digits)
        local = dt.datetime.fromtimestamp(whole, dt.UTC) + self.utc_offset
        text = local.strftime(f"%Y-%m-%d{self.sep}%H:%M:%S")
        if self.digits:
            digits = f"{fraction:0{self.digits}d}"
            if shortest:
                digits = digits.rstrip("0")
            text += f".{digits}" if digits else ""
        return text + self.offset

    @property
    def sorts_shorter_first(self) -> bool:
        """Whether an instant written with fewer fractional digits sorts before the same instant
        written with more (`12` < `12.5` < `12.500`): true where what follows the seconds sorts
        before `.` and the digits (the end of naive text, `+` and `-` of an offset), not for `Z`."""
        return self.offset[:1] in ("", "+", "-")

    def ticks(self, epoch: float, side: Side) -> int:
        """`epoch` in this layout's resolution, rounded the way `side` needs to stay exact: up
        for `>=` and `<`, down for `<=`. A float within a third of a tick of a whole tick is
        that tick (an epoch double resolves about 0.2 us today)."""
        ticks = float(epoch) * 10**self.digits
        nearest = round(ticks)
        if abs(ticks - nearest) < 1 / 3:
            return nearest
        return math.floor(ticks) if side == "le" else math.ceil(ticks)


@dataclass(frozen=True)
class TimeFormat:
    """The representation of one time column: what a bound looks like, how values parse."""

    kind: Kind
    scale: float = 1.0  # epoch: units per second (1, 1e3, 1e6, 1e9)
    aware: bool = False  # datetime: the column keeps a time zone
    layout: TextLayout | None = None  # text
    confirmed: bool = True  # False: guessed from an empty column, detect again later

    def describe(self) -> str:
        if self.kind == "epoch":
            return f"epoch {_EPOCH_UNITS[self.scale]}"
        if self.kind == "datetime":
            return "timestamp with time zone" if self.aware else "timestamp (UTC)"
        assert self.layout is not None
        sample = self.layout.render(
            1_764_000_000 * 10**self.layout.digits + 123456789 % 10**self.layout.digits
        )
        return f"ISO-8601 text like {sample!r}"

    def expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The column as selected and compared: text stays the stored text (no conversion by
        SQLAlchemy, so a malformed value is a rejected row rather than an exception), and no SQL
        function wraps it, so its index serves every comparison."""
        return sa.type_coerce(column, sa.String()) if self.kind == "text" else column

    def bound(self, epoch: float, side: Side) -> Any:
        """`epoch` as a value of the column, rounded so that `column >= / <= / < value` selects
        exactly the rows at or after / at or before / before that instant.

        Writers need not write every fraction digit: Python's `isoformat` drops a zero fraction
        (`12:00:00`, then `12:00:00.500000`). Where the shorter form sorts first
        (`TextLayout.sorts_shorter_first`), a lower bound (`>=`, and `<`, whose bound is the first
        instant left out) is written in its shortest form, which sorts at or before every way
        of writing that instant and after every earlier instant, so a row at the bound's very
        instant is on the right side of it however many digits it has."""
        if self.kind == "epoch":
            return epoch * self.scale
        if self.kind == "datetime":
            value = dt.datetime.fromtimestamp(epoch, dt.UTC)
            return value if self.aware else value.replace(tzinfo=None)
        layout = self.layout
        assert layout is not None
        shortest = side != "le" and layout.sorts_shorter_first
        return layout.render(layout.ticks(epoch, side), shortest=shortest)

    def native(self, epoch: float) -> Any:
        """`epoch` as a value to store (the prediction logger writing into this column)."""
        return self.bound(epoch, "le")

    def to_epoch(self, values: pd.Series) -> pd.Series:
        """Epoch seconds as float; NaN where the value is missing or not a time.

        A value's epoch depends on the value alone, not on the values read with it nor on
        which parser read it: the ledger keys rows by it, and one row may be read in several
        batches (a page, then a reconciliation's keys), by numpy (`_layout_epoch`) in one and
        pandas in another, which counts a batch in microseconds, or nanoseconds once a value has
        more digits. Both go through `_seconds`.
        """
        if self.kind == "epoch":
            return pd.to_numeric(values, errors="coerce").astype(float) / self.scale
        if self.kind == "text":
            fast = self._layout_epoch(values)
            if fast is not None:
                return pd.Series(fast, index=values.index)
            if pd.api.types.infer_dtype(values, skipna=True) != "string":  # checked in C
                # A number in a text column (SQLite keeps any value) is no time, not an epoch.
                values = values.astype(object).where(values.map(lambda v: isinstance(v, str)))
            stamps = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
        elif values.dtype.kind == "M":  # instants already (the driver's datetimes): naive is UTC
            stamps = values
        else:
            stamps = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
        instants = stamps.array
        per_second = 10 ** {"s": 0, "ms": 3, "us": 6, "ns": 9}[instants.unit]
        seconds = _seconds(instants.asi8, per_second)
        seconds[instants.isna()] = np.nan
        return pd.Series(seconds, index=values.index)

    def _layout_epoch(self, values: pd.Series) -> np.ndarray | None:
        """The epochs of text that is all naive ISO-8601 of at most six fractional digits
        (SQLite's DATETIME as SQLAlchemy writes it), parsed by numpy: about a third of pandas' cost
        for a scrape's few hundred rows, the same instants. None, for pandas to parse, when a
        value is in another form or is no real instant (numpy then rejects the batch), and for
        a large batch (a rebuild's page), which pandas parses faster."""
        layout = self.layout
        if layout is None or layout.offset or layout.digits > 6 or not 0 < len(values) < 2_000:
            return None  # from about 3,000 values on, pandas' parser is the faster
        text = values.to_numpy(dtype=object)
        # Only that shape: numpy also reads forms pandas does not ("+2026-...", "02026-...",
        # a leading space), reads others otherwise ("now"), and warns about offsets.
        try:
            joined = "\n".join(text)
        except TypeError:  # a value that is not text
            return None
        if joined.count("\n") != len(text) - 1 or _NAIVE_BATCH.fullmatch(joined) is None:
            return None
        try:
            ticks = text.astype("datetime64[us]").view(np.int64)
        except ValueError:  # a field out of range (a 61st second, a 30th of February)
            return None
        return _seconds(ticks, 10**6)

    def bucket_key(self, column: sa.ColumnElement[Any], width: int, dialect: str) -> Any:
        """What the database groups by to count rows per bucket of `width` seconds; `buckets`
        turns its result into bucket numbers. Text groups by its whole-second prefix (exact,
        cheap, no date parsing per row); the rest by arithmetic on the value."""
        if self.kind == "text":
            return sa.func.substr(self.expression(column), 1, SECOND_PREFIX)
        if dialect == "sqlite":  # SQLite may lack floor(); epochs are positive
            seconds = column if self.scale == 1.0 else column / self.scale
            return sa.cast(seconds, sa.Integer) // width
        seconds = column / self.scale if self.kind == "epoch" else sa.extract("epoch", column)
        return sa.func.floor(seconds / width)

    def buckets(self, keys: list[Any], width: int) -> np.ndarray:
        """Bucket numbers of `bucket_key` results; -1 where a text prefix is not a time."""
        if self.kind != "text":
            return np.asarray(keys, dtype=np.int64)
        assert self.layout is not None
        offset = self.layout.utc_offset.total_seconds()
        out = np.full(len(keys), -1, dtype=np.int64)
        for i, key in enumerate(keys):  # a bucket per key: a few dozen, parsed one by one
            try:
                local = dt.datetime.fromisoformat(key)
            except (TypeError, ValueError):
                continue
            seconds = (local.replace(tzinfo=None) - _NAIVE_EPOCH).total_seconds() - offset
            out[i] = math.floor(seconds / width)
        return out


def declared_kind(column_type: sa.types.TypeEngine[Any], dialect: str) -> Kind | None:
    """What a column's declared type allows; None: it cannot hold a time."""
    if isinstance(column_type, sa.Integer | sa.Float | sa.Numeric):
        return "epoch"
    if isinstance(column_type, sa.DateTime | sa.TIMESTAMP):
        return "text" if dialect == "sqlite" else "datetime"
    if isinstance(column_type, sa.String):
        return "text"
    return None


def detect(column: sa.Column[Any], dialect: str, samples: list[Any]) -> TimeFormat:
    """The format of `column` from its declared type and its newest values (`samples`, newest
    first; may be empty). SQLite stores whatever it is given, so there the values decide."""
    kind = declared_kind(column.type, dialect)
    if kind is None:
        raise ValueError(f"column {column.name!r} has type {column.type}, which holds no time")
    if dialect == "sqlite":
        values = [v for v in samples if v is not None]
        if values:
            kind = "epoch" if isinstance(values[0], int | float) else "text"
    if kind == "datetime":
        return TimeFormat("datetime", aware=bool(getattr(column.type, "timezone", False)))
    if kind == "epoch":
        numbers = [abs(float(v)) for v in samples if isinstance(v, int | float)]
        if not numbers:
            return TimeFormat("epoch", confirmed=False)
        scale = next(s for s in _EPOCH_UNITS if numbers[0] >= 1e8 * s or s == 1.0)
        return TimeFormat("epoch", scale=scale)
    layouts = [TextLayout.of(v) for v in samples if isinstance(v, str)]
    layouts = [layout for layout in layouts if layout is not None]
    if not layouts:  # an empty column: write and read the layout SQLAlchemy uses for DATETIME
        return TimeFormat("text", layout=TextLayout(), confirmed=False)
    newest = layouts[0]
    return TimeFormat("text", layout=TextLayout(newest.sep, newest.digits, newest.offset))


def mixed_layouts(samples: list[Any]) -> set[TextLayout]:
    """The distinct separators/offsets among text samples (fractional digits aside): more than
    one means text order is not time order across them."""
    layouts = {TextLayout.of(v) for v in samples if isinstance(v, str)}
    return {TextLayout(x.sep, 0, x.offset) for x in layouts if x is not None}


def _seconds(ticks: np.ndarray, per_second: int) -> np.ndarray:
    """Epoch seconds of instants counted in 1/`per_second` s: the whole seconds plus the rest in
    nanoseconds, integers up to the last step, so an instant has one float at every resolution
    (a count of today's nanoseconds is past a float's exact integers)."""
    whole, rest = np.divmod(ticks, per_second)
    return whole.astype(float) + (rest * (10**9 // per_second)) / 1e9
