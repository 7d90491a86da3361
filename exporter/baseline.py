"""The reference distributions a window is compared with, captured from training or past data.

Pure: a `Rows` batch in, a `Baseline` out, JSON both ways. Numeric features get fine quantile bins
(the window counts into them, so KS and Wasserstein have resolution) grouped into deciles for PSI;
categorical features get their top-K categories plus a pooled "other". From the labelled rows
come what estimation before labels needs (a classifier's calibration map, a regression's loss
models), and from the numeric features their correlations and principal components
(docs/estimation.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from exporter.config import ModelConfig
from exporter.drift import multivariate as mv
from exporter.drift import statistical as st
from exporter.drift.binning import EdgeCounters
from exporter.performance.estimation import Calibration
from exporter.performance.loss_model import LossModel
from exporter.rows import Rows, category_value, per_value, present

FINE_BINS = 100  # quantile bins the window counts into
PSI_BINS = 10  # quantile bins PSI is computed on (groups of FINE_BINS / PSI_BINS)
TOP_CATEGORIES = 20  # categories kept per categorical feature; the rest pool as "other"
KNOWN_CATEGORIES = 1000  # distinct baseline values remembered to tell "new" from "rare"
CHUNK = 50_000  # rows a capture works on at once, to keep its temporaries small


def _percent(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class NumericReference:
    """Fine bins: [underflow, edges[0]..edges[-1] split at the inner edges, overflow]."""

    edges: np.ndarray
    counts: np.ndarray
    psi_bins: np.ndarray  # for each fine bin, the index of the PSI bin it belongs to
    mean: float
    std: float
    missing: int

    @property
    def n_bins(self) -> int:
        return len(self.counts)

    @property
    def n_psi_bins(self) -> int:
        return int(self.psi_bins.max()) + 1

    @functools.cached_property
    def bin_labels(self) -> tuple[str, ...]:
        """PSI bins named by the baseline percentiles they span (`p10-p20`), with the
        out-of-range ends. Unlike the bins' edges, which move with every new baseline, these
        names stay the same across baselines, so a dashboard's series continue; the edges are in
        the health report. Computed once per reference: every scrape names the same bins."""
        share = np.concatenate([[0.0], np.cumsum(self.counts) / max(self.counts.sum(), 1.0)])
        share *= 100
        names = []
        for b in range(self.n_psi_bins):
            if b == 0:
                names.append("below_baseline")
            elif b == self.n_psi_bins - 1:
                names.append("above_baseline")
            else:
                fine = np.flatnonzero(self.psi_bins == b)
                low, high = (_percent(share[i]) for i in (fine.min(), fine.max() + 1))
                names.append(f"p{low}-p{high}")
        if len(set(names)) < len(names):  # bins narrower than 0.05% of the baseline: number them
            names = [f"{name}#{b}" for b, name in enumerate(names)]
        return tuple(names)

    def bin(self, x: np.ndarray) -> np.ndarray:
        """Fine bin of each finite value: 0 below the baseline minimum, last above its maximum
        (`NumericBins` of this reference alone)."""
        return self._bins.bin(x[None, :])[0]

    @functools.cached_property
    def _bins(self) -> NumericBins:
        """Made once per reference: every batch bins against the same edges."""
        return NumericBins.of([self])

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "numeric",
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "psi_bins": self.psi_bins.tolist(),
            "mean": self.mean,
            "std": self.std,
            "missing": self.missing,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NumericReference:
        return cls(
            edges=np.asarray(data["edges"], dtype=float),
            counts=np.asarray(data["counts"], dtype=float),
            psi_bins=np.asarray(data["psi_bins"], dtype=int),
            mean=data["mean"],
            std=data["std"],
            missing=data["missing"],
        )

    @classmethod
    def capture(cls, values: np.ndarray, missing: int = 0) -> NumericReference:
        values = values[np.isfinite(values)]
        if len(values) == 0:
            raise ValueError("no finite values to take a baseline from")
        # The same quantiles from a sorted copy: numpy's sort is vectorised, while selecting 101
        # order statistics from unsorted values costs about twice as long. The copy is ours, so
        # `quantile` may partition it in place rather than copy it again.
        quantiles = np.quantile(
            np.sort(values), np.linspace(0.0, 1.0, FINE_BINS + 1), overwrite_input=True
        )
        edges = np.unique(quantiles)
        coarse = np.unique(quantiles[:: FINE_BINS // PSI_BINS])
        if len(edges) == 1:  # a constant feature: one closed bin [v, v]
            edges = coarse = np.array([edges[0], edges[0]])
        # PSI bin of each fine bin: underflow, the decile holding its left edge, overflow.
        inner = np.searchsorted(coarse[1:-1], edges[:-1], side="right") + 1
        psi_bins = np.concatenate([[0], inner, [inner.max() + 1]])
        empty = cls(
            edges,
            np.zeros(len(edges) + 1),
            psi_bins,
            float(values.mean()),
            float(values.std()),
            missing,
        )
        counts = np.zeros(empty.n_bins)
        for start in range(0, len(values), CHUNK):  # the bins' temporaries: few MB for any length
            counts += np.bincount(empty.bin(values[start : start + CHUNK]), minlength=empty.n_bins)
        return replace(empty, counts=counts)


@dataclass(frozen=True)
class CategoricalReference:
    """Top categories with counts, then the pooled rest ("other")."""

    categories: tuple[str, ...]
    counts: np.ndarray  # len(categories) + 1
    known: frozenset[str]  # every baseline value (up to KNOWN_CATEGORIES)
    missing: int

    @property
    def n_bins(self) -> int:
        return len(self.counts)

    def bin(self, values: np.ndarray) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.categories)}
        other = len(self.categories)
        return per_value(values, lambda v: index.get(v, other), int)

    def is_new(self, values: np.ndarray) -> np.ndarray:
        return per_value(values, lambda v: v not in self.known, bool)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "categorical",
            "categories": list(self.categories),
            "counts": self.counts.tolist(),
            "known": sorted(self.known),
            "missing": self.missing,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CategoricalReference:
        return cls(
            tuple(data["categories"]),
            np.asarray(data["counts"], dtype=float),
            frozenset(data["known"]),
            data["missing"],
        )

    @classmethod
    def capture(cls, values: np.ndarray, missing: int = 0) -> CategoricalReference:
        tally: dict[str, int] = {}
        for start in range(0, len(values), CHUNK):  # a chunk at a time: few MB for any length
            codes, uniques = pd.factorize(values[start : start + CHUNK], use_na_sentinel=True)
            found = np.bincount(codes[codes >= 0], minlength=len(uniques))
            for name, count in zip(uniques, found, strict=True):
                tally[str(name)] = tally.get(str(name), 0) + int(count)  # None (-1): not counted
        names = np.array(list(tally), dtype=object)
        counts = np.array(list(tally.values()), dtype=np.int64)
        order = np.lexsort((names, -counts))
        top = tuple(names[order][:TOP_CATEGORIES].tolist())
        rest = float(counts[order][TOP_CATEGORIES:].sum())
        known = frozenset(names[order][:KNOWN_CATEGORIES].tolist())
        return cls(
            top, np.append(counts[order][:TOP_CATEGORIES].astype(float), rest), known, missing
        )


@dataclass(frozen=True)
class NumericBins:
    """The fine bins of several numeric references at once: row j of `bin(x)` is
    `refs[j].bin(x[j])`, for references x values without NaN."""

    counters: EdgeCounters  # of the inner edges
    first: np.ndarray  # each reference's lowest edge
    last: np.ndarray  # and highest
    overflow: np.ndarray  # each reference's overflow bin (its edge count)
    n_bins: np.ndarray

    @classmethod
    def of(cls, refs: list[NumericReference]) -> NumericBins:
        return cls(
            EdgeCounters.of([r.edges[1:-1] for r in refs]),
            np.array([r.edges[0] for r in refs])[:, None],
            np.array([r.edges[-1] for r in refs])[:, None],
            np.array([len(r.edges) for r in refs])[:, None],
            np.array([r.n_bins for r in refs])[:, None],
        )

    def bin(self, x: np.ndarray) -> np.ndarray:
        idx = self.counters.count(x)
        idx += 1
        np.copyto(idx, 0, where=x < self.first)
        np.copyto(idx, self.overflow, where=x > self.last)
        return idx


Reference = NumericReference | CategoricalReference


def reference_from_json(data: dict[str, Any]) -> Reference:
    if data["type"] == "numeric":
        return NumericReference.from_json(data)
    return CategoricalReference.from_json(data)


@dataclass(frozen=True)
class Baseline:
    model_id: str
    rows: int
    features: dict[str, Reference]
    prediction: NumericReference
    segments: dict[str, tuple[str, ...]]  # segment column -> values reported
    label_mean: float  # shift that keeps regression sums well conditioned
    correlation: dict[str, Any] = field(
        default_factory=dict
    )  # {"features": [...], "matrix": [[...]]}
    groups: dict[str, dict[str, dict[str, float]]] = field(
        default_factory=dict
    )  # attr -> group -> rates
    performance: dict[str, dict[str, float]] = field(default_factory=dict)
    calibration: Calibration | None = None  # classifier: score -> P(class 1), for CBPE
    multivariate: mv.Pca | None = None  # numeric features' principal components
    loss_model: LossModel | None = None  # regression: expected losses, for DLE
    version: int | None = None
    created_at: str | None = None
    source: str | None = None

    def numeric_bins(self, names: tuple[str, ...]) -> NumericBins:
        """The bins of these numeric features together, made once per baseline: every batch
        folds the same features."""
        made = self._numeric_bins.get(names)
        if made is None:
            refs = [self.features[n] for n in names]
            assert all(isinstance(r, NumericReference) for r in refs)
            made = self._numeric_bins[names] = NumericBins.of(refs)  # type: ignore[arg-type]
        return made

    @functools.cached_property
    def _numeric_bins(self) -> dict[tuple[str, ...], NumericBins]:
        return {}

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "rows": self.rows,
            "features": {k: v.to_json() for k, v in self.features.items()},
            "prediction": self.prediction.to_json(),
            "segments": {k: list(v) for k, v in self.segments.items()},
            "label_mean": self.label_mean,
            "correlation": self.correlation,
            "groups": self.groups,
            "performance": self.performance,
            "calibration": self.calibration.to_json() if self.calibration else None,
            "multivariate": self.multivariate.to_json() if self.multivariate else None,
            "loss_model": self.loss_model.to_json() if self.loss_model else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], **meta: Any) -> Baseline:
        return cls(
            model_id=data["model_id"],
            rows=data["rows"],
            features={k: reference_from_json(v) for k, v in data["features"].items()},
            prediction=NumericReference.from_json(data["prediction"]),
            segments={k: tuple(v) for k, v in data["segments"].items()},
            label_mean=data["label_mean"],
            correlation=data.get("correlation", {}),
            groups=data.get("groups", {}),
            performance=data.get("performance", {}),
            calibration=Calibration.from_json(data["calibration"])
            if data.get("calibration")
            else None,
            multivariate=mv.Pca.from_json(data["multivariate"])
            if data.get("multivariate")
            else None,
            loss_model=LossModel.from_json(data["loss_model"]) if data.get("loss_model") else None,
            **meta,
        )


def prediction_values(rows: Rows) -> np.ndarray:
    """The output whose drift is tracked: the score of a classifier, the value of a regressor."""
    return rows.score if rows.score is not None else rows.prediction


def segment_values(model: ModelConfig, rows: Rows) -> dict[str, tuple[str, ...]]:
    """Configured segment values, or the most frequent ones in the baseline (bounded)."""
    out: dict[str, tuple[str, ...]] = {}
    for segment in model.segments:
        if segment.values is not None:
            out[segment.column] = tuple(category_value(v) for v in segment.values)
        else:
            ref = CategoricalReference.capture(rows.segments[segment.column])
            out[segment.column] = ref.categories[: segment.max_values]
    return out


def correlation(names: tuple[str, ...], sums: mv.Moments | None) -> dict[str, Any]:
    """Pearson correlations of the numeric features over the rows where all of them are
    present, from their centred sums (the window's own method,
    `statistical.correlation_from_sums`)."""
    if sums is None:
        return {}
    corr = st.correlation_from_sums(sums.n, sums.sums, sums.cross)
    return {
        "features": list(names),
        "rows": sums.n,
        "matrix": np.where(np.isfinite(corr), corr, 0.0).tolist(),
    }


def group_rates(model: ModelConfig, rows: Rows) -> dict[str, dict[str, dict[str, float]]]:
    """Per protected attribute and frequent group: size, mean output, selection and label rates."""
    output = prediction_values(rows)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for attribute in model.protected_attributes:
        values = rows.attributes[attribute]
        ref = CategoricalReference.capture(values)
        out[attribute] = {}
        for group in ref.categories:
            mask = values == group
            stats: dict[str, float] = {
                "count": float(mask.sum()),
                "mean_prediction": float(output[mask].mean()),
            }
            if model.kind == "binary_classification":
                stats["selection_rate"] = float(np.mean(rows.prediction[mask] == 1))
            if rows.label is not None and np.isfinite(rows.label[mask]).any():
                stats["label_mean"] = float(np.nanmean(rows.label[mask]))
            out[attribute][group] = stats
    return out


def calibration(model: ModelConfig, rows: Rows) -> Calibration | None:
    """The CBPE calibration map of a classifier, from its labelled rows; None when estimation is
    off or the labels are too few (`estimation.min_reference_labels`) or of one class."""
    if model.kind != "binary_classification" or not model.estimation.enabled:
        return None
    if rows.label is None or rows.score is None:
        return None
    labelled = np.isfinite(rows.label) & np.isfinite(rows.score)
    label, score = rows.label[labelled], rows.score[labelled]
    if len(label) < model.estimation.min_reference_labels or len(np.unique(label)) < 2:
        return None
    return Calibration.fit(score, label)


def loss_input_names(model: ModelConfig) -> tuple[str, ...]:
    """The DLE loss models' inputs, in order: what a stored model must have learned from."""
    return (*model.numeric_features, *model.categorical_features, "prediction")


def loss_inputs(model: ModelConfig, features: dict[str, Reference], rows: Rows) -> np.ndarray:
    """What the DLE loss models see of each row (`loss_input_names`): the numeric features, the
    categorical ones as baseline category codes (NaN when missing), the prediction. Missing
    numbers stay NaN: the gradient-boosted models route them."""
    columns = [rows.numeric[n].values for n in model.numeric_features]
    for name in model.categorical_features:
        ref, values = features[name], rows.categorical[name]
        assert isinstance(ref, CategoricalReference)
        columns.append(np.where(present(values), ref.bin(values), np.nan))
    columns.append(rows.prediction)
    return np.column_stack(columns).astype(float)


def loss_model(model: ModelConfig, features: dict[str, Reference], rows: Rows) -> LossModel | None:
    """The DLE loss models of a regression, from its labelled rows; None when estimation is off
    or the labels are fewer than `estimation.min_reference_labels`."""
    if model.kind != "regression" or not model.estimation.enabled or rows.label is None:
        return None
    labelled = np.isfinite(rows.label)
    if labelled.sum() < model.estimation.min_reference_labels:
        return None
    first = len(model.numeric_features)
    return LossModel.fit(
        loss_input_names(model),
        tuple(range(first, first + len(model.categorical_features))),
        loss_inputs(model, features, rows)[labelled],
        rows.prediction[labelled] - rows.label[labelled],
    )


def multivariate(
    model: ModelConfig, columns: list[np.ndarray], sums: mv.Moments | None
) -> mv.Pca | None:
    """Principal components of the numeric features (in config order), or None."""
    if not model.multivariate.enabled:
        return None
    return mv.fit(model.numeric_features, columns, model.multivariate.variance_share, sums)


def _check_squares(model: ModelConfig, rows: Rows) -> None:
    """Refuse a column whose sum of squares overflows a float (finite values near 1e154 and
    beyond): its variance, the correlation sums and the loss models' targets would be infinite,
    and a baseline of infinities would misjudge every window after it."""
    columns = {name: column.values for name, column in rows.numeric.items()}
    columns["the prediction"] = prediction_values(rows)
    if rows.label is not None:
        labelled = np.isfinite(rows.label)
        columns["the label"] = rows.label[labelled]
        columns["the prediction error"] = (rows.prediction - rows.label)[labelled]
    with np.errstate(over="ignore", invalid="ignore"):
        for name, values in columns.items():
            if not np.isfinite(np.nansum(np.square(values))):
                raise ValueError(
                    f"model {model.model_id}: the squares of {name} overflow a float (values "
                    f"up to {np.nanmax(np.abs(values)):.3g}), so a baseline cannot be computed "
                    "from these rows; fix: filter or rescale those values and capture again"
                )


def capture_references(model: ModelConfig, rows: Rows) -> Baseline:
    """The distributions of a baseline, without its performance (see `window.capture_baseline`)."""
    if len(rows) == 0:
        raise ValueError(f"model {model.model_id}: no valid rows to take a baseline from")
    _check_squares(model, rows)
    features: dict[str, Reference] = {}
    for name, column in rows.numeric.items():
        features[name] = NumericReference.capture(column.values, int(column.missing.sum()))
    for name, values in rows.categorical.items():
        features[name] = CategoricalReference.capture(values, int(np.sum(~present(values))))
    labels = rows.label[np.isfinite(rows.label)] if rows.label is not None else np.array([])
    numeric = [rows.numeric[n].values for n in model.numeric_features]
    sums = mv.moments(numeric)  # one pass for the correlations and the components
    return Baseline(
        model_id=model.model_id,
        rows=len(rows),
        features={n: features[n] for n in model.features},
        prediction=NumericReference.capture(prediction_values(rows)),
        segments=segment_values(model, rows),
        label_mean=float(labels.mean()) if len(labels) else 0.0,
        correlation=correlation(model.numeric_features, sums),
        groups=group_rates(model, rows),
        calibration=calibration(model, rows),
        multivariate=multivariate(model, numeric, sums),
        loss_model=loss_model(model, features, rows),
    )
