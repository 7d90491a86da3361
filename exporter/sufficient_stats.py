"""Mergeable sufficient statistics: the flat vectors a window bucket holds.

Every statistic is a sum (a count, a sum of values, a histogram cell), so buckets merge by
addition, shards merge by addition, and the metrics of a window are pure functions of the sum of
its live buckets. A `Layout` names the slice of the flat vector each statistic occupies; the
`fold_*` functions turn a batch of rows into one such vector per time bucket they touch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from exporter.baseline import Baseline, CategoricalReference, NumericReference, prediction_values
from exporter.config import ModelConfig
from exporter.rows import Rows

SCORE_BINS = 1000  # score histogram resolution for ROC AUC (see docs/statistics.md for the bound)
ALL = "all"
PREDICTION = "__prediction__"  # key of the model output's drift statistics
LOG_LOSS_EPS = 1e-15  # probabilities are clipped to [eps, 1 - eps], as scikit-learn does


class Layout:
    """Named slices of a flat statistics vector."""

    def __init__(self) -> None:
        self.size = 0
        self._slices: dict[tuple[str, ...], slice] = {}

    def add(self, *key: str, width: int = 1) -> None:
        self._slices[key] = slice(self.size, self.size + width)
        self.size += width

    def names(self, stat: str) -> list[str]:
        """The second key part of every `(stat, name)` statistic, in layout order."""
        return [key[1] for key in self._slices if key[0] == stat and len(key) == 2]

    def __getitem__(self, key: tuple[str, ...]) -> slice:
        return self._slices[key]

    def read(self, vector: np.ndarray, *key: str) -> np.ndarray:
        return vector[self._slices[key]]

    def scalar(self, vector: np.ndarray, *key: str) -> float:
        return float(vector[self._slices[key]][0])


class Accumulator:
    """One batch's contributions, a row per distinct time bucket; built with bincount, not loops."""

    def __init__(self, layout: Layout, bucket_of_row: np.ndarray) -> None:
        self.layout = layout
        self.buckets, self._row = np.unique(bucket_of_row, return_inverse=True)
        self.matrix = np.zeros((len(self.buckets), layout.size))

    def count(
        self,
        key: tuple[str, ...],
        index: np.ndarray | int = 0,
        mask: np.ndarray | None = None,
        weights: np.ndarray | None = None,
    ) -> None:
        """Add 1 (or `weights`) at cell `index` of statistic `key` for each row (where `mask`)."""
        part = self.layout[key]
        width = part.stop - part.start
        rows = self._row
        index = np.broadcast_to(np.asarray(index), rows.shape)
        if mask is not None:
            rows, index = rows[mask], index[mask]
            weights = None if weights is None else weights[mask]
        if len(rows) == 0:
            return
        flat = rows * width + index
        cells = np.bincount(flat, weights=weights, minlength=len(self.buckets) * width)
        self.matrix[:, part] += cells.reshape(len(self.buckets), width)


def numeric_references(baseline: Baseline | None) -> dict[str, NumericReference]:
    if baseline is None:
        return {}
    refs = {n: r for n, r in baseline.features.items() if isinstance(r, NumericReference)}
    refs[PREDICTION] = baseline.prediction
    return refs


def drift_layout(model: ModelConfig, baseline: Baseline | None) -> Layout:
    """Statistics by prediction time: drift and data quality. Bins exist only with a baseline."""
    layout = Layout()
    layout.add("rows")
    for name, feature in model.features.items():
        layout.add("missing", name)
        if feature.type == "numeric":
            layout.add("type_error", name)
            layout.add("out_of_range", name)
        else:
            layout.add("new_category", name)
        if baseline is not None:
            layout.add("bins", name, width=baseline.features[name].n_bins)
    if baseline is not None:
        layout.add("bins", PREDICTION, width=baseline.prediction.n_bins)
    return layout


def segment_groups(model: ModelConfig, baseline: Baseline | None) -> dict[str, list[str]]:
    """Segment column -> reported segment names (values, plus "other" for the rest)."""
    if baseline is None:
        return {}
    names: dict[str, list[str]] = {}
    multi = len(baseline.segments) > 1
    for column, values in baseline.segments.items():
        names[column] = [f"{column}={v}" if multi else v for v in (*values, "other")]
    return names


def performance_layout(model: ModelConfig, baseline: Baseline | None) -> Layout:
    """Statistics of labelled predictions by prediction time, overall and per segment."""
    layout = Layout()
    layout.add("predictions")  # all predictions, labelled or not: the label coverage denominator
    groups = [ALL] + [g for names in segment_groups(model, baseline).values() for g in names]
    for group in groups:
        if model.kind == "regression":
            for stat in ("n", "err", "err2", "abs_err", "y", "y2"):
                layout.add(stat, group)
        else:
            for stat in ("n", "tp", "fp", "fn", "tn", "log_loss", "brier"):
                layout.add(stat, group)
            layout.add("score_pos", group, width=SCORE_BINS)
            layout.add("score_neg", group, width=SCORE_BINS)
    return layout


def score_bin(score: np.ndarray) -> np.ndarray:
    return np.minimum((score * SCORE_BINS).astype(int), SCORE_BINS - 1)


def fold_drift(
    layout: Layout,
    model: ModelConfig,
    baseline: Baseline | None,
    rows: Rows,
    bucket_of_row: np.ndarray,
) -> Accumulator:
    acc = Accumulator(layout, bucket_of_row)
    acc.count(("rows",))
    for name, column in rows.numeric.items():
        acc.count(("missing", name), mask=column.missing)
        acc.count(("type_error", name), mask=column.type_error)
        finite = np.isfinite(column.values)
        ref = baseline.features[name] if baseline is not None else None
        valid_range = model.features[name].valid_range
        if valid_range is None and isinstance(ref, NumericReference):
            valid_range = (ref.edges[0], ref.edges[-1])
        if valid_range is not None:
            values = np.where(finite, column.values, valid_range[0])
            outside = finite & ((values < valid_range[0]) | (values > valid_range[1]))
            acc.count(("out_of_range", name), mask=outside)
        if isinstance(ref, NumericReference):
            acc.count(("bins", name), ref.bin(np.where(finite, column.values, 0.0)), mask=finite)
    for name, values in rows.categorical.items():
        present = values != None  # noqa: E711 - elementwise on an object array
        acc.count(("missing", name), mask=~present)
        ref = baseline.features[name] if baseline is not None else None
        if isinstance(ref, CategoricalReference):
            acc.count(("new_category", name), mask=present & ref.is_new(values))
            acc.count(("bins", name), ref.bin(values), mask=present)
    if baseline is not None:
        acc.count(("bins", PREDICTION), baseline.prediction.bin(prediction_values(rows)))
    return acc


def groups_of_rows(
    model: ModelConfig, baseline: Baseline | None, rows: Rows
) -> Iterator[tuple[str, np.ndarray | None]]:
    """(group, row mask) for the overall group and each segment."""
    yield ALL, None
    for column, names in segment_groups(model, baseline).items():
        values = baseline.segments[column] if baseline is not None else ()
        index = {v: i for i, v in enumerate(values)}
        seg = np.fromiter(
            (index.get(v, len(values)) for v in rows.segments[column]), dtype=int, count=len(rows)
        )
        for i, name in enumerate(names):
            yield name, seg == i


def fold_performance(
    layout: Layout,
    model: ModelConfig,
    baseline: Baseline | None,
    rows: Rows,
    bucket_of_row: np.ndarray,
) -> Accumulator:
    """Labelled rows -> performance sums in the bucket of each prediction's time."""
    assert rows.label is not None
    acc = Accumulator(layout, bucket_of_row)
    y = rows.label
    if model.kind == "regression":
        shift = baseline.label_mean if baseline is not None else 0.0
        err = rows.prediction - y
        per_row = {
            "n": None,
            "err": err,
            "err2": err * err,
            "abs_err": np.abs(err),
            "y": y - shift,
            "y2": (y - shift) ** 2,
        }
    else:
        assert rows.score is not None
        p = np.clip(rows.score, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
        predicted = rows.score >= model.performance.classification_threshold
        positive = y == 1
        per_row = {
            "n": None,
            "tp": (predicted & positive).astype(float),
            "fp": (predicted & ~positive).astype(float),
            "fn": (~predicted & positive).astype(float),
            "tn": (~predicted & ~positive).astype(float),
            "log_loss": -(y * np.log(p) + (1 - y) * np.log(1 - p)),
            "brier": (rows.score - y) ** 2,
        }
        bins = score_bin(rows.score)
    for group, mask in groups_of_rows(model, baseline, rows):
        for stat, weights in per_row.items():
            acc.count((stat, group), mask=mask, weights=weights)
        if model.kind == "binary_classification":
            in_group = positive if mask is None else positive & mask
            acc.count(("score_pos", group), bins, mask=in_group)
            acc.count(
                ("score_neg", group), bins, mask=(~positive if mask is None else ~positive & mask)
            )
    return acc


@dataclass(frozen=True)
class Totals:
    """The sums over a window's live buckets, with the layouts to read them."""

    drift_layout: Layout
    drift: np.ndarray
    performance_layout: Layout
    performance: np.ndarray
