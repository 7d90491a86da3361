"""Validation of raw rows read from the store: typed arrays out, rejected rows counted by reason.

Pure (pandas/numpy only). A malformed value never raises: a row that cannot be used at all is
rejected under one of a fixed set of reasons (bounded label values), and a feature value that is
missing or of the wrong type is kept as a data-quality count instead of rejecting the row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from exporter.config import ModelConfig
from exporter.storage.prediction_store import (
    ID,
    LABEL,
    LATENCY,
    PREDICTION,
    SCORE,
    attribute_key,
    feature_key,
    segment_key,
)

# Every value the `reason` label of model_monitor_rows_rejected_total can take.
REJECT_REASONS = (
    "invalid_timestamp",  # prediction time or label arrival missing (NULL) or not a time
    "invalid_prediction",  # prediction (or classifier score) missing, not a number, or out of range
    "invalid_label",  # label missing, not a number, or not 0/1 for a classifier
    "label_unknown_prediction",  # a label whose prediction id is not in the predictions table
    "label_of_rejected_prediction",  # a label (own table) whose prediction was rejected
    "expired",  # row older than its window by the time it was read
    "future_timestamp",  # a label whose prediction is stamped later than now (clock skew)
)


@dataclass
class Rejections:
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, mask: np.ndarray, ids: pd.Series) -> None:
        n = int(mask.sum())
        if n:
            self.counts[reason] += n
            self.examples.setdefault(reason, str(ids[mask].iloc[0]))

    def merge(self, other: Rejections) -> None:
        self.counts.update(other.counts)
        for reason, example in other.examples.items():
            self.examples.setdefault(reason, example)


@dataclass
class NumericColumn:
    values: np.ndarray  # float, NaN where missing or invalid
    missing: np.ndarray  # bool: null or NaN in the store
    type_error: np.ndarray  # bool: present but not a finite number


@dataclass
class Rows:
    """Accepted rows of one batch, as arrays aligned by position."""

    ts: np.ndarray
    prediction: np.ndarray
    score: np.ndarray | None
    latency: np.ndarray | None  # seconds, NaN where not logged
    numeric: dict[str, NumericColumn]
    categorical: dict[str, np.ndarray]  # object arrays, None where missing
    segments: dict[str, np.ndarray]
    attributes: dict[str, np.ndarray]
    label: np.ndarray | None
    # The store's rows only: each prediction's ledger key (`ledger.row_keys` of its id and
    # time), by which a label finds what its prediction's fold computed (`LossMemo`).
    key: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def concat(cls, parts: Iterable[Rows], rows: int) -> Rows:
        """The rows of `parts`, at most `rows` of them in all, one after the other. Each field is
        allocated once and each part copied in as it comes, so a part can go before the next
        is made: the peak is the rows themselves plus one part, however a part's arrays share
        memory (a parsed chunk's numeric columns are views of one block, which joining field
        by field would keep whole until its last column is joined)."""
        joined: dict[tuple[str, ...], np.ndarray] = {}
        absent: set[tuple[str, ...]] = set()
        n = 0
        for part in parts:
            m = len(part)
            for key, array in part._fields().items():
                if array is None:
                    absent.add(key)
                    continue
                if key not in joined:
                    joined[key] = np.empty(rows, dtype=array.dtype)
                # A field's type is the parse's, the same in every part ("safe" says so).
                np.copyto(joined[key][n : n + m], array, casting="safe")
            n += m
        return cls._from_fields({key: array[:n] for key, array in joined.items()}, absent)

    def _fields(self) -> dict[tuple[str, ...], np.ndarray | None]:
        """Every array of the rows, by a key that names where it goes (see `_from_fields`)."""
        out: dict[tuple[str, ...], np.ndarray | None] = {
            ("ts",): self.ts,
            ("prediction",): self.prediction,
            ("score",): self.score,
            ("latency",): self.latency,
            ("label",): self.label,
            ("key",): self.key,
        }
        for name, column in self.numeric.items():
            for part in ("values", "missing", "type_error"):
                out["numeric", name, part] = getattr(column, part)
        for group in ("categorical", "segments", "attributes"):
            for name, values in getattr(self, group).items():
                out[group, name] = values
        return out

    @classmethod
    def _from_fields(
        cls, fields: dict[tuple[str, ...], np.ndarray], absent: set[tuple[str, ...]]
    ) -> Rows:
        numeric = dict.fromkeys(key[1] for key in fields if key[0] == "numeric")  # in order
        return cls(
            ts=fields["ts",],
            prediction=fields["prediction",],
            score=None if ("score",) in absent else fields["score",],
            latency=None if ("latency",) in absent else fields["latency",],
            numeric={
                n: NumericColumn(
                    *(fields["numeric", n, p] for p in ("values", "missing", "type_error"))
                )
                for n in numeric
            },
            categorical={k[1]: v for k, v in fields.items() if k[0] == "categorical"},
            segments={k[1]: v for k, v in fields.items() if k[0] == "segments"},
            attributes={k[1]: v for k, v in fields.items() if k[0] == "attributes"},
            label=None if ("label",) in absent else fields["label",],
            key=None if ("key",) in absent else fields["key",],
        )

    def take(self, mask: np.ndarray) -> Rows:
        """The rows where `mask` holds; these rows themselves where it holds for all (the
        usual batch: 150 arrays of a 50-feature model not copied for nothing). Rows are never
        changed in place, so sharing them is safe."""
        if mask.all():
            return self

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[mask]

        return Rows(
            ts=self.ts[mask],
            prediction=self.prediction[mask],
            score=pick(self.score),
            latency=pick(self.latency),
            numeric={
                k: NumericColumn(c.values[mask], c.missing[mask], c.type_error[mask])
                for k, c in self.numeric.items()
            },
            categorical={k: v[mask] for k, v in self.categorical.items()},
            segments={k: v[mask] for k, v in self.segments.items()},
            attributes={k: v[mask] for k, v in self.attributes.items()},
            label=pick(self.label),
            key=pick(self.key),
        )


def _checked(values: np.ndarray, missing: np.ndarray) -> NumericColumn:
    """`values` (floats of any shape; `missing`: null or NaN in the store) with NaN wherever they
    are not a finite number, and the type errors: present, but not a finite number."""
    finite = np.isfinite(values)
    return NumericColumn(np.where(finite, values, np.nan), missing, ~missing & ~finite)


def numeric_column(raw: pd.Series) -> NumericColumn:
    """Coerce a column to float, telling missing values (null, NaN) from wrong types."""
    if raw.dtype.kind in "fiu":  # numbers already (the common case): no coercion to pay for
        values = raw.to_numpy(dtype=float)
        return _checked(values, np.isnan(values))
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return _checked(values, raw.isna().to_numpy())


def numeric_columns(frame: pd.DataFrame, keys: list[str]) -> list[NumericColumn]:
    """`numeric_column` of each of the columns `keys`. Those that hold numbers already (the
    common case) are converted as one block: column by column, pandas' access to each column
    cost more than the conversion (45 numeric features: 1.0 ms against 0.2 ms for 200 rows)."""
    at = frame.columns.get_indexer(keys)
    if (at < 0).any():
        raise KeyError([k for k, i in zip(keys, at, strict=True) if i < 0])
    kinds = frame.dtypes.iloc[at]
    numbers = np.array([d.kind in "fiu" for d in kinds], dtype=bool)
    out: dict[int, NumericColumn] = {}  # by position in `keys`
    if numbers.any():
        values = frame.take(at[numbers], axis=1).to_numpy(dtype=float)  # rows x columns
        block = _checked(values, np.isnan(values))
        for j, k in enumerate(np.flatnonzero(numbers)):
            out[k] = NumericColumn(block.values[:, j], block.missing[:, j], block.type_error[:, j])
    for k in np.flatnonzero(~numbers):
        out[k] = numeric_column(frame.iloc[:, at[k]])
    return [out[k] for k in range(len(keys))]


def present(values: np.ndarray) -> np.ndarray:
    """Where a category array (None for missing, see `category_column`) holds a value."""
    return np.not_equal(values, None)


# Label values the exporter itself gives: the overall figures (`segment="all"`) and the pooled
# rest of a category, segment or group (`"other"`). A data value never takes one of them.
ALL, OTHER = "all", "other"
RESERVED_VALUES = frozenset({ALL, OTHER})
ESCAPE = "~"


def category_value(value: str) -> str:
    """A data value as the exporter names it: unchanged, unless it is one of the reserved values
    or starts with the escape mark, then it gains one more mark in front (`all` -> `~all`,
    `~x` -> `~~x`). Distinct values stay distinct and none becomes a reserved value."""
    return ESCAPE + value if value in RESERVED_VALUES or value.startswith(ESCAPE) else value


def category_column(raw: pd.Series) -> np.ndarray:
    """Categories as strings (see `category_value`); None where missing (null or NaN). Each
    distinct value is named once, however many rows hold it."""
    codes, uniques = pd.factorize(raw, use_na_sentinel=True)
    names = [category_value(v if isinstance(v, str) else _format_category(v)) for v in uniques]
    return np.array([*names, None], dtype=object)[codes]  # code -1 (missing): the last, None


def per_value(values: np.ndarray, fn: Callable[[Any], Any], dtype: type) -> np.ndarray:
    """`fn` of each element of a category array, calling `fn` once per distinct value (None
    included): the per-row Python of a lookup, without the rows."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return np.array([*(fn(v) for v in uniques), fn(None)], dtype=dtype)[codes]


def _format_category(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_rows(
    frame: pd.DataFrame,
    model: ModelConfig,
    ts_epoch: pd.Series,
    label: Literal["none", "required", "optional"] = "none",
    keys: np.ndarray | None = None,
) -> tuple[Rows, Rejections]:
    """Turn a raw frame (canonical column names) into accepted rows and counted rejections.

    `label="required"` rejects rows without a valid label (a label stream); `"optional"` keeps
    them with NaN (a baseline, where only some predictions are labelled). `keys`: each frame
    row's prediction key (`Rows.key`).
    """
    rejections = Rejections()
    ids = frame[ID] if ID in frame else pd.Series(range(len(frame)))
    ts = ts_epoch.to_numpy(dtype=float)
    ok = np.isfinite(ts)
    rejections.add("invalid_timestamp", ~ok, ids)

    prediction = numeric_column(frame[PREDICTION]).values
    bad = ~np.isfinite(prediction)
    score = None
    if SCORE in frame:
        score = numeric_column(frame[SCORE]).values
        bad |= ~np.isfinite(score) | (score < 0) | (score > 1)
    if model.kind == "binary_classification":
        bad |= ~np.isin(prediction, (0.0, 1.0))
    rejections.add("invalid_prediction", ok & bad, ids)
    ok &= ~bad

    labels = None
    if label != "none":
        labels = numeric_column(frame[LABEL]).values
        bad = ~np.isfinite(labels)
        if model.kind == "binary_classification":
            bad |= ~np.isin(labels, (0.0, 1.0))
        if label == "required":
            rejections.add("invalid_label", ok & bad, ids)
            ok &= ~bad
        else:
            labels = np.where(bad, np.nan, labels)

    latency = None
    if LATENCY in frame:
        latency = numeric_column(frame[LATENCY]).values
        if model.source.latency_unit == "milliseconds":
            latency = latency / 1000.0
        latency = np.where(latency >= 0, latency, np.nan)

    numeric = [n for n, f in model.features.items() if f.type == "numeric"]
    rows = Rows(
        ts=ts,
        prediction=prediction,
        score=score,
        latency=latency,
        numeric=dict(
            zip(numeric, numeric_columns(frame, [feature_key(n) for n in numeric]), strict=True)
        ),
        categorical={
            n: category_column(frame[feature_key(n)])
            for n, f in model.features.items()
            if f.type == "categorical"
        },
        segments={s.column: category_column(frame[segment_key(s.column)]) for s in model.segments},
        attributes={
            a: category_column(frame[attribute_key(a)]) for a in model.protected_attributes
        },
        label=labels,
        key=keys,
    )
    return rows.take(ok), rejections


def feature_types(data: pd.DataFrame, categorical: list[str] | None = None) -> dict[str, str]:
    """Every column of a notebook's frame as a feature: numeric if its dtype is, unless listed
    in `categorical`."""
    listed = set(categorical or [])
    return {
        str(c): "numeric"
        if c not in listed and pd.api.types.is_numeric_dtype(data[c])
        else "categorical"
        for c in data.columns
    }


def from_dataframe(
    model: ModelConfig,
    data: pd.DataFrame,
    predictions: object,
    actuals: object | None = None,
    scores: object | None = None,
) -> Rows:
    """Rows from a notebook's DataFrame of features (by feature or column name) and arrays.

    Segment and protected-attribute columns are taken from `data` when present. For a classifier,
    `predictions` may be the probabilities themselves (then the class is derived with the
    configured threshold) or classes with the probabilities in `scores`.
    """
    n = len(data)
    values = np.asarray(predictions, dtype=float)
    if model.kind == "binary_classification" and scores is None:
        scores, values = (
            values,
            (values >= model.performance.classification_threshold).astype(float),
        )

    def column(name: str, mapped: str | None = None) -> object:
        """The frame's own column (its dtype kept: no re-inference of text), or all missing."""
        for key in (name, mapped):
            if key is not None and key in data:
                return data[key].reset_index(drop=True)
        return np.full(n, None, dtype=object)

    columns: dict[str, object] = {ID: np.arange(n), PREDICTION: values}
    if scores is not None:
        columns[SCORE] = np.asarray(scores, dtype=float)
    if actuals is not None:
        columns[LABEL] = np.asarray(actuals, dtype=float)
    for name in model.features:
        columns[feature_key(name)] = column(name, model.feature_column(name))
    for segment in model.segments:
        columns[segment_key(segment.column)] = column(segment.column)
    for attribute in model.protected_attributes:
        columns[attribute_key(attribute)] = column(attribute)
    frame = pd.DataFrame(columns, index=pd.RangeIndex(n))
    rows, _ = parse_rows(
        frame, model, pd.Series(np.zeros(n)), label="none" if actuals is None else "optional"
    )
    return rows
