"""Edge-case slices: config predicates resolved against the baseline and evaluated on rows. Pure."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from exporter.baseline import Baseline, NumericReference
from exporter.config import ModelConfig, SliceConfig
from exporter.rows import Rows, category_value, present

_OPS: dict[str, Callable[[np.ndarray, object], np.ndarray]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def baseline_percentile(ref: NumericReference, q: float) -> float:
    """The q-th percentile of the baseline, interpolated on its fine quantile bins."""
    inner = ref.counts[1:-1]
    cdf = np.concatenate([[0.0], np.cumsum(inner) / inner.sum()])
    return float(np.interp(q / 100.0, cdf, ref.edges))


@dataclass(frozen=True)
class Slice:
    name: str
    feature: str
    op: str
    value: float | str

    def mask(self, rows: Rows) -> np.ndarray:
        """Rows in the slice; a missing feature value is never in it."""
        if isinstance(self.value, str):
            values = rows.categorical[self.feature]
            return present(values) & _OPS[self.op](values, self.value)
        values = rows.numeric[self.feature].values
        finite = np.isfinite(values)
        return finite & _OPS[self.op](np.where(finite, values, 0.0), self.value)


def resolve(item: SliceConfig, model: ModelConfig, baseline: Baseline | None) -> Slice | None:
    """A slice with a concrete value; None if it needs a baseline percentile and there is none."""
    feature, op, value = item.parts
    if model.features[feature].type == "categorical":
        return Slice(item.name, feature, op, category_value(value))
    if value.startswith("baseline.p"):
        ref = baseline.features.get(feature) if baseline is not None else None
        if not isinstance(ref, NumericReference):
            return None
        return Slice(
            item.name, feature, op, baseline_percentile(ref, float(value[len("baseline.p") :]))
        )
    return Slice(item.name, feature, op, float(value))


def resolve_all(model: ModelConfig, baseline: Baseline | None) -> list[Slice]:
    return [s for s in (resolve(item, model, baseline) for item in model.slices) if s is not None]
