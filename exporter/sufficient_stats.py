"""Mergeable sufficient statistics: the flat vectors a window bucket holds.

Every statistic is a sum (a count, a sum of values or of cross-products, a histogram cell), so
buckets merge by addition, shards merge by addition, and the metrics of a window are pure
functions of the sum of its live buckets. A `Layout` names the slice of the flat vector each
statistic occupies; `fold_drift` and `fold_performance` turn a batch of rows into one vector
per time bucket they touch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from exporter.baseline import (
    Baseline,
    CategoricalReference,
    NumericReference,
    loss_input_names,
    loss_inputs,
    prediction_values,
)
from exporter.config import ModelConfig
from exporter.drift.multivariate import Pca
from exporter.performance.loss_model import LossModel
from exporter.rows import ALL, ESCAPE, OTHER, Rows, category_value, per_value, present
from exporter.slices import Slice, resolve_all

SCORE_BINS = 1000  # score histogram resolution for ROC AUC (see docs/statistics.md for the bound)
PREDICTION = "__prediction__"  # key of the model output's drift statistics
LOG_LOSS_EPS = float(np.finfo(float).eps)  # clip to [eps, 1 - eps], as scikit-learn (>= 1.5) does
ESTIMATED_CELLS = ("est_tp", "est_fp", "est_fn", "est_tn")  # CBPE's expected confusion cells
CELLS = 1 << 18  # values of a block of the numeric fold (2 MB a temporary)


class Layout:
    """Named slices of a flat statistics vector."""

    def __init__(self) -> None:
        self.size = 0
        self._slices: dict[tuple[str, ...], slice] = {}
        self._starts: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}

    def add(self, *key: str, width: int = 1) -> None:
        self._slices[key] = slice(self.size, self.size + width)
        self.size += width

    def names(self, stat: str) -> list[str]:
        """The second key part of every `(stat, name)` statistic, in layout order."""
        return [key[1] for key in self._slices if key[0] == stat and len(key) == 2]

    def starts(self, stat: str, names: tuple[str, ...]) -> np.ndarray:
        """Where `(stat, name)` starts for each name (kept: every batch asks the same)."""
        made = self._starts.get((stat, names))
        if made is None:
            made = np.array([self._slices[stat, n].start for n in names], dtype=np.intp)
            self._starts[stat, names] = made
        return made

    def __contains__(self, key: tuple[str, ...]) -> bool:
        return key in self._slices

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
        self._cells = self.matrix.reshape(-1)  # a view: the same memory, one index per cell

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

    def count_many(
        self,
        stat: str,
        names: tuple[str, ...],
        rows: slice,
        mask: np.ndarray,
        index: np.ndarray | int = 0,
        weights: np.ndarray | None = None,
    ) -> None:
        """`count` for the statistics `(stat, name)` of several names at once: row j of
        `mask`, `index` and `weights` (names x `rows` of this batch) goes to names[j]. Added in
        place, cell by cell in row order (`np.add.at`): a `bincount` the size of the bucket
        matrix per call cost a batch spanning 1,440 buckets three times the feature-by-feature
        fold, and a small batch more than the adds."""
        starts = self.layout.starts(stat, names)[:, None]
        flat = (self._row[rows] * self.layout.size + starts + index)[mask]
        np.add.at(self._cells, flat, 1.0 if weights is None else weights[mask])

    def count_columns(self, key: tuple[str, ...], values: np.ndarray, mask: np.ndarray) -> None:
        """Add column j of `values` (rows x the statistic's width) at cell j, for the rows of
        `mask`: `count(key, j, mask, values[:, j])` for every j in one `bincount`, each cell's
        rows added in the same order, so the same sums. The correlation sums of 45 features,
        200 rows: 0.65 -> 0.04 ms; 10,000 rows over 60 buckets: 4-5 -> 1.2 ms."""
        part = self.layout[key]
        width = part.stop - part.start
        flat = self._row[mask, None] * width + np.arange(width)
        cells = np.bincount(
            flat.ravel(), weights=values[mask].ravel(), minlength=len(self.buckets) * width
        )
        self.matrix[:, part] += cells.reshape(len(self.buckets), width)

    def cross_products(self, key: tuple[str, ...], values: np.ndarray, mask: np.ndarray) -> None:
        """Add X^T X of the masked rows of each bucket (a k x k block, flattened)."""
        part = self.layout[key]
        for row in range(len(self.buckets)):
            x = values[(self._row == row) & mask]
            self.matrix[row, part] += (x.T @ x).ravel()


@dataclass(frozen=True)
class Groups:
    """The bounded sets of label values a model's statistics are kept for."""

    segments: dict[str, list[str]]  # segment column -> reported names (values + "other")
    slices: list[Slice]
    fairness: dict[str, list[str]]  # protected attribute -> groups (+ "other")

    @property
    def performance(self) -> list[str]:
        return [
            ALL,
            *(g for names in self.segments.values() for g in names),
            *(s.name for s in self.slices),
        ]


def model_groups(model: ModelConfig, baseline: Baseline | None) -> Groups:
    segments: dict[str, list[str]] = {}
    slices = resolve_all(model, baseline)
    if baseline is not None:
        multi = len(baseline.segments) > 1
        taken = {s.name for s in slices}  # slices share the `segment` label with the values
        for column, values in baseline.segments.items():
            names = [ESCAPE + v if v in taken else v for v in values]
            segments[column] = [f"{column}={v}" if multi else v for v in (*names, OTHER)]
    fairness: dict[str, list[str]] = {}
    for attribute in model.protected_attributes:
        listed = model.fairness.groups.get(attribute)
        if listed is not None:
            listed = [category_value(g) for g in listed]
        elif baseline is not None:
            by_size = baseline.groups.get(attribute, {})
            listed = sorted(by_size, key=lambda g: (-by_size[g]["count"], g))[
                : model.fairness.max_groups
            ]
        fairness[attribute] = [*(listed or []), OTHER]
    return Groups(segments, slices, fairness)


def drift_layout(model: ModelConfig, baseline: Baseline | None) -> Layout:
    """Statistics by prediction time: drift, data quality, correlations, fairness of outputs."""
    layout = Layout()
    layout.add("rows")
    for name, feature in model.features.items():
        layout.add("missing", name)
        if feature.type == "numeric":
            layout.add("type_error", name)
            layout.add("out_of_range", name)
            layout.add("below_sum", name)  # sum of values under the baseline minimum
            layout.add("above_sum", name)  # sum of values over the baseline maximum
        else:
            layout.add("new_category", name)
        if baseline is not None:
            layout.add("bins", name, width=baseline.features[name].n_bins)
    if baseline is not None:
        layout.add("bins", PREDICTION, width=baseline.prediction.n_bins)
        layout.add("below_sum", PREDICTION)
        layout.add("above_sum", PREDICTION)
    k = len(model.numeric_features)
    if baseline is not None and k >= 2:
        layout.add("corr_n")
        layout.add("corr_sum", width=k)
        layout.add("corr_cross", width=k * k)
    if multivariate(model, baseline) is not None:
        layout.add("mv_n")  # rows with every numeric feature present
        layout.add("mv_err")  # sum of their PCA reconstruction errors
    if loss_model(model, baseline) is not None:
        layout.add("dle_abs")  # sum of the rows' expected absolute errors
        layout.add("dle_sq")  # and of their expected squared errors
    elif estimates(model, baseline):
        for cell in ESTIMATED_CELLS:  # expected confusion cells at the threshold
            layout.add(cell)
        layout.add("est_pos", width=SCORE_BINS)  # score histogram weighted by P(class 1)
        layout.add("est_neg", width=SCORE_BINS)  # and by P(class 0)
    for attribute, groups in model_groups(model, baseline).fairness.items():
        for group in groups:
            for stat in ("fair_n", "fair_selected", "fair_output", "fair_output2"):
                layout.add(stat, attribute, group)
    return layout


def performance_layout(model: ModelConfig, baseline: Baseline | None) -> Layout:
    """Statistics of labelled predictions by prediction time: per segment, slice and group."""
    layout = Layout()
    layout.add("predictions")  # all predictions, labelled or not: the label coverage denominator
    groups = model_groups(model, baseline)
    for group in groups.performance:
        if model.kind == "regression":
            for stat in ("n", "err", "err2", "err4", "abs_err", "y", "y2"):
                layout.add(stat, group)
        else:
            for stat in ("n", "tp", "fp", "fn", "tn", "log_loss", "log_loss2", "brier", "brier2"):
                layout.add(stat, group)
            layout.add("score_pos", group, width=SCORE_BINS)
            layout.add("score_neg", group, width=SCORE_BINS)
    if loss_model(model, baseline) is not None:
        layout.add("dle_abs")  # labelled rows: sum of expected absolute errors under DLE
        layout.add("dle_gap2")  # and of (|error| - expected)², for the gap's variance
    elif estimates(model, baseline):
        layout.add("est_correct")  # labelled rows: expected correct predictions under CBPE
        layout.add("est_var")  # and the variance of the realised count around it
    label_stats = (
        ("fair_n", "fair_err", "fair_err2", "fair_err4", "fair_abs_err")
        if model.kind == "regression"
        else ("fair_tp", "fair_fp", "fair_fn", "fair_tn")
    )
    for attribute, names in groups.fairness.items():
        for group in names:
            for stat in label_stats:
                layout.add(stat, attribute, group)
    return layout


def multivariate(model: ModelConfig, baseline: Baseline | None) -> Pca | None:
    """The baseline's principal components, when on and fitted to the configured features."""
    if baseline is None or baseline.multivariate is None or not model.multivariate.enabled:
        return None
    pca = baseline.multivariate
    return pca if pca.features == model.numeric_features else None


def loss_model(model: ModelConfig, baseline: Baseline | None) -> LossModel | None:
    """The baseline's DLE loss models, when on and learned from the configured features."""
    if baseline is None or baseline.loss_model is None or not model.estimation.enabled:
        return None
    inputs = loss_input_names(model)
    return baseline.loss_model if baseline.loss_model.inputs == inputs else None


def expected_losses(
    model: ModelConfig, baseline: Baseline | None, rows: Rows, squared: bool = True
) -> np.ndarray | None:
    """DLE's expected absolute and squared error of each row (2 x rows), or without `squared`
    the absolute one alone (1 x rows, one loss model: all that labelled rows need); None
    without loss models. Computed once per batch read: when labels come with their
    predictions, the drift and the performance fold take their rows' columns of it."""
    losses = loss_model(model, baseline)
    if losses is None:
        return None
    assert baseline is not None
    x = loss_inputs(model, baseline.features, rows)
    return np.vstack(losses.predict(x) if squared else (losses.predict_absolute(x),))


def estimates(model: ModelConfig, baseline: Baseline | None) -> bool:
    """Performance is estimated before labels: CBPE for a classifier whose baseline has a
    calibration map, DLE for a regression whose baseline has loss models."""
    if model.kind == "regression":
        return loss_model(model, baseline) is not None
    return model.estimation.enabled and baseline is not None and baseline.calibration is not None


def score_bin(score: np.ndarray) -> np.ndarray:
    return np.minimum((score * SCORE_BINS).astype(int), SCORE_BINS - 1)


def selected(model: ModelConfig, rows: Rows) -> np.ndarray | None:
    """Predicted positive (classifier) or at/above the cut-off (regression); None if undefined."""
    if model.kind == "binary_classification":
        assert rows.score is not None
        return rows.score >= model.performance.classification_threshold
    cutoff = model.fairness.regression_cutoff
    return None if cutoff is None else rows.prediction >= cutoff


def group_index(values: np.ndarray, groups: list[str]) -> np.ndarray:
    """Index of each row's group in `groups`; rows of unlisted groups go to the last ("other")."""
    index = {g: i for i, g in enumerate(groups[:-1])}
    return per_value(values, lambda v: index.get(v, len(groups) - 1), int)


def _fold_numeric(
    acc: Accumulator, model: ModelConfig, baseline: Baseline | None, rows: Rows
) -> None:
    """Quality counts, fine bins and tail sums of every numeric feature, all features at once:
    a scrape's 200 rows of 45 features made 300 numpy calls feature by feature. Rows go in
    blocks of at most CELLS values, so a large batch's temporaries stay a few MB."""
    names = tuple(rows.numeric)
    if not names:
        return
    refs = {
        n: r
        for n in names
        if baseline is not None and isinstance(r := baseline.features[n], NumericReference)
    }
    position = {n: j for j, n in enumerate(names)}
    binned = tuple(n for n in names if n in refs)
    columns = np.array([position[n] for n in binned], dtype=np.intp)
    bins = baseline.numeric_bins(binned) if baseline is not None and binned else None
    ranges = {
        n: r
        for n in names
        if (r := model.features[n].valid_range or _edge_range(refs.get(n))) is not None
    }
    ranged = tuple(ranges)
    lo, hi = (np.array([[ranges[n][i]] for n in ranged], dtype=float) for i in (0, 1))
    at = np.array([position[n] for n in ranged], dtype=np.intp)
    step = max(1, CELLS // len(names))
    columns_of = [rows.numeric[n] for n in names]
    every = len(binned) == len(names)
    for start in range(0, len(rows), step):
        block = slice(start, start + step)
        # Features x rows: each feature's block is one contiguous copy.
        acc.count_many("missing", names, block, np.stack([c.missing[block] for c in columns_of]))
        acc.count_many(
            "type_error", names, block, np.stack([c.type_error[block] for c in columns_of])
        )
        values = np.stack([c.values[block] for c in columns_of])
        finite = np.isfinite(values)
        safe = np.where(finite, values, 0.0)
        if ranged:
            x, present = safe[at], finite[at]
            acc.count_many("out_of_range", ranged, block, present & ((x < lo) | (x > hi)))
        if bins is not None:
            x, present = (safe, finite) if every else (safe[columns], finite[columns])
            index = bins.bin(x)
            acc.count_many("bins", binned, block, present, index)
            acc.count_many("below_sum", binned, block, present & (index == 0), weights=x)
            acc.count_many(
                "above_sum", binned, block, present & (index == bins.n_bins - 1), weights=x
            )


def _edge_range(ref: NumericReference | None) -> tuple[float, float] | None:
    """A feature without a configured valid range is out of range beyond its baseline's."""
    return None if ref is None else (float(ref.edges[0]), float(ref.edges[-1]))


def _fold_with_baseline(
    acc: Accumulator,
    model: ModelConfig,
    baseline: Baseline,
    rows: Rows,
    output: np.ndarray,
    losses: np.ndarray | None,
    deferred: bool,
) -> None:
    """The statistics that need a baseline: the output's bins, the correlation sums, the PCA
    reconstruction errors, and the estimates before labels (DLE's expected losses, unless
    `deferred`; CBPE's expected confusion cells)."""
    layout = acc.layout
    ref = baseline.prediction
    bins = ref.bin(output)
    acc.count(("bins", PREDICTION), bins)
    acc.count(("below_sum", PREDICTION), mask=bins == 0, weights=output)
    acc.count(("above_sum", PREDICTION), mask=bins == ref.n_bins - 1, weights=output)
    names = model.numeric_features
    if len(names) >= 2 and (("corr_n",) in layout or ("mv_n",) in layout):
        raw = np.column_stack([rows.numeric[n].values for n in names])
        complete = np.isfinite(raw).all(axis=1)
        if ("corr_n",) in layout:
            shift = np.array([baseline.features[n].mean for n in names])
            x = np.where(complete[:, None], raw - shift, 0.0)
            acc.count(("corr_n",), mask=complete)
            acc.count_columns(("corr_sum",), x, complete)
            acc.cross_products(("corr_cross",), x, complete)
        pca = multivariate(model, baseline)
        if pca is not None:
            errors = np.zeros(len(rows))
            errors[complete] = pca.errors(raw[complete])
            acc.count(("mv_n",), mask=complete)
            acc.count(("mv_err",), mask=complete, weights=errors)
    if loss_model(model, baseline) is not None:
        if not deferred:
            fold_drift_losses(
                acc, expected_losses(model, baseline, rows) if losses is None else losses
            )
    elif estimates(model, baseline):
        _fold_estimates(acc, model, baseline, rows)


def fold_drift_losses(acc: Accumulator, losses: np.ndarray) -> None:
    """DLE's cells of a drift fold: the sums of its rows' expected absolute and squared errors
    (`expected_losses`)."""
    acc.count(("dle_abs",), weights=losses[0])
    acc.count(("dle_sq",), weights=losses[1])


def _fold_estimates(acc: Accumulator, model: ModelConfig, baseline: Baseline, rows: Rows) -> None:
    """CBPE's sums: each row is positive with the calibrated probability of its score."""
    assert rows.score is not None and baseline.calibration is not None
    p = baseline.calibration(rows.score)
    predicted = rows.score >= model.performance.classification_threshold
    for cell, mask, weights in (
        ("est_tp", predicted, p),
        ("est_fp", predicted, 1 - p),
        ("est_fn", ~predicted, p),
        ("est_tn", ~predicted, 1 - p),
    ):
        acc.count((cell,), mask=mask, weights=weights)
    bins = score_bin(rows.score)
    acc.count(("est_pos",), bins, weights=p)
    acc.count(("est_neg",), bins, weights=1 - p)


@np.errstate(over="ignore")  # an overflowed sum is unknown: see Totals
def fold_drift(
    layout: Layout,
    model: ModelConfig,
    baseline: Baseline | None,
    rows: Rows,
    bucket_of_row: np.ndarray,
    losses: np.ndarray | None = None,
    deferred: bool = False,
) -> Accumulator:
    """Rows -> drift sums in the bucket of each row's time (`losses`: their `expected_losses`,
    when the caller has them; `deferred`: the caller adds DLE's cells itself, with
    `fold_drift_losses`, once it has them)."""
    acc = Accumulator(layout, bucket_of_row)
    acc.count(("rows",))
    _fold_numeric(acc, model, baseline, rows)
    for name, values in rows.categorical.items():
        has_value = present(values)
        acc.count(("missing", name), mask=~has_value)
        ref = baseline.features[name] if baseline is not None else None
        if isinstance(ref, CategoricalReference):
            acc.count(("new_category", name), mask=has_value & ref.is_new(values))
            acc.count(("bins", name), ref.bin(values), mask=has_value)
    output = prediction_values(rows)
    if baseline is not None:
        _fold_with_baseline(acc, model, baseline, rows, output, losses, deferred)
    chosen = selected(model, rows)
    for attribute, groups in model_groups(model, baseline).fairness.items():
        index = group_index(rows.attributes[attribute], groups)
        for i, group in enumerate(groups):
            mask = index == i
            acc.count(("fair_n", attribute, group), mask=mask)
            acc.count(("fair_output", attribute, group), mask=mask, weights=output)
            acc.count(("fair_output2", attribute, group), mask=mask, weights=output * output)
            if chosen is not None:
                acc.count(("fair_selected", attribute, group), mask=mask & chosen)
    return acc


def groups_of_rows(
    groups: Groups, baseline: Baseline | None, rows: Rows
) -> Iterator[tuple[str, np.ndarray | None]]:
    """(group, row mask) for the overall group, each segment and each slice."""
    yield ALL, None
    for column, names in groups.segments.items():
        values = baseline.segments[column] if baseline is not None else ()
        index = group_index(rows.segments[column], [*values, OTHER])
        for i, name in enumerate(names):
            yield name, index == i
    for item in groups.slices:
        yield item.name, item.mask(rows)


@np.errstate(over="ignore")  # an overflowed sum is unknown: see Totals
def fold_performance(
    layout: Layout,
    model: ModelConfig,
    baseline: Baseline | None,
    rows: Rows,
    bucket_of_row: np.ndarray,
    absolute: np.ndarray | None = None,
    deferred: bool = False,
) -> Accumulator:
    """Labelled rows -> performance sums in the bucket of each prediction's time (`absolute`:
    their expected absolute errors, `expected_losses` row 0, when the caller has them;
    `deferred`: the caller adds DLE's cells itself, with `fold_performance_losses`)."""
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
            "err4": err**4,
            "abs_err": np.abs(err),
            "y": y - shift,
            "y2": (y - shift) ** 2,
        }
        if absolute is None and not deferred:
            losses = expected_losses(model, baseline, rows, squared=False)
            absolute = None if losses is None else losses[0]
        if absolute is not None:
            fold_performance_losses(acc, rows, absolute)
        per_group_stat = {
            "fair_n": None,
            "fair_err": err,
            "fair_err2": err * err,
            "fair_err4": err**4,
            "fair_abs_err": np.abs(err),
        }
    else:
        assert rows.score is not None
        p = np.clip(rows.score, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
        predicted = rows.score >= model.performance.classification_threshold
        positive = y == 1
        confusion = {
            "tp": predicted & positive,
            "fp": predicted & ~positive,
            "fn": ~predicted & positive,
            "tn": ~predicted & ~positive,
        }
        log_loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        brier = (rows.score - y) ** 2
        per_row = {
            "n": None,
            **{k: v.astype(float) for k, v in confusion.items()},
            "log_loss": log_loss,
            "log_loss2": log_loss**2,
            "brier": brier,
            "brier2": brier**2,
        }
        per_group_stat = {f"fair_{k}": v.astype(float) for k, v in confusion.items()}
        bins = score_bin(rows.score)
        if estimates(model, baseline):
            assert baseline is not None and baseline.calibration is not None
            p_estimated = baseline.calibration(rows.score)
            acc.count(("est_correct",), weights=np.where(predicted, p_estimated, 1 - p_estimated))
            acc.count(("est_var",), weights=p_estimated * (1 - p_estimated))
    groups = model_groups(model, baseline)
    for group, mask in groups_of_rows(groups, baseline, rows):
        in_group = np.ones(len(rows), dtype=bool) if mask is None else mask
        for stat, weights in per_row.items():
            acc.count((stat, group), mask=in_group, weights=weights)
        if model.kind == "binary_classification":
            acc.count(("score_pos", group), bins, mask=in_group & positive)
            acc.count(("score_neg", group), bins, mask=in_group & ~positive)
    for attribute, names in groups.fairness.items():
        index = group_index(rows.attributes[attribute], names)
        for i, group in enumerate(names):
            for stat, weights in per_group_stat.items():
                acc.count((stat, attribute, group), mask=index == i, weights=weights)
    return acc


def fold_performance_losses(acc: Accumulator, rows: Rows, absolute: np.ndarray) -> None:
    """DLE's cells of a regression's performance fold: the sums of its labelled rows' expected
    absolute errors and of their squared gaps to the realised ones."""
    assert rows.label is not None
    acc.count(("dle_abs",), weights=absolute)
    acc.count(("dle_gap2",), weights=(np.abs(rows.prediction - rows.label) - absolute) ** 2)


@dataclass(frozen=True)
class Totals:
    """The sums over a window's live buckets, with the layouts to read them."""

    drift_layout: Layout
    drift: np.ndarray
    performance_layout: Layout
    performance: np.ndarray

    def __post_init__(self) -> None:
        # Every folded value is finite (others are rejected or counted as type errors), so a
        # sum that is not finite overflowed (values near 1e154, squared): unknown, NaN, and
        # whatever is computed from it is absent rather than infinite.
        for name in ("drift", "performance"):
            sums = getattr(self, name)
            if not np.isfinite(sums).all():
                object.__setattr__(self, name, np.where(np.isfinite(sums), sums, np.nan))

    def same_as(self, other: Totals | None) -> bool:
        """The same sums in the same layouts (the same baseline): a report of one is a report
        of the other."""
        return (
            other is not None
            and other.drift_layout is self.drift_layout
            and other.performance_layout is self.performance_layout
            and _same(other.drift, self.drift)
            and _same(other.performance, self.performance)
        )


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal sums: the same array (a window's total kept since, `BucketRing.total`) or equal
    values, NaN included."""
    return a is b or np.array_equal(a, b, equal_nan=True)


def totals_of(model: ModelConfig, baseline: Baseline | None, rows: Rows) -> Totals:
    """All rows as one bucket: a batch job's or notebook's window (labelled rows: performance)."""
    return totals_of_chunks(model, baseline, [rows])


def totals_of_chunks(
    model: ModelConfig, baseline: Baseline | None, chunks: Iterable[Rows]
) -> Totals:
    """All rows of `chunks` as one bucket, folded a chunk at a time: the sums add up, so a frame
    of any length needs the memory of one chunk's parsed rows, not of the whole frame's."""
    dl, pl = drift_layout(model, baseline), performance_layout(model, baseline)
    drift, performance = np.zeros(dl.size), np.zeros(pl.size)
    for rows in chunks:
        one = np.zeros(len(rows), dtype=np.int64)
        losses = expected_losses(model, baseline, rows)  # once for both folds
        drift += fold_drift(dl, model, baseline, rows, one, losses).matrix.sum(axis=0)
        if rows.label is not None:
            labelled = np.isfinite(rows.label)
            performance += fold_performance(
                pl,
                model,
                baseline,
                rows.take(labelled),
                one[labelled],
                None if losses is None else losses[0, labelled],
            ).matrix.sum(axis=0)
            performance[pl["predictions",]] += len(rows)
    return Totals(dl, drift, pl, performance)
