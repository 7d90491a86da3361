"""Drift of one distribution (a feature or the model output), window vs baseline, with a verdict.

Pure. Takes the baseline reference and the window's counts in its bins and returns every
statistic plus a sample-size-aware verdict: a statistic counts only when it exceeds both its
effect-size threshold and the value that samples of the actual sizes reach without any drift
with probability alpha (docs/statistics.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from exporter.baseline import CategoricalReference, NumericReference
from exporter.config import DriftThresholds
from exporter.drift import statistical as st
from exporter.rows import OTHER


@dataclass(frozen=True)
class DriftResult:
    psi: float
    kl_divergence: float
    js_distance: float
    ks_statistic: float | None  # numeric only
    ks_p_value: float | None  # numeric only; informative, never the verdict
    wasserstein_normalized: float | None  # numeric only: W1 / baseline standard deviation
    chi_square: float | None  # categorical only
    chi_square_p_value: float | None  # categorical only; informative
    thresholds: dict[str, float]  # effective threshold of each configured statistic
    triggered: tuple[str, ...]  # statistics beyond their effective threshold
    detected: bool | None  # None: fewer than min_samples values
    rows: int  # window values the comparison stands on
    bins: tuple[str, ...]  # PSI bins: named by the baseline percentiles they span, or the category
    baseline_ratio: tuple[float, ...]
    current_ratio: tuple[float, ...]


@functools.lru_cache(maxsize=256)
def configured_limits(thresholds: DriftThresholds) -> dict[str, float]:
    """The statistics a threshold is set for, with it (config is frozen: one dict per distinct
    set, not to be changed)."""
    return {stat: limit for stat, limit in thresholds.model_dump().items() if limit is not None}


def _null_quantiles(
    statistic: str, expected: np.ndarray, actual: np.ndarray, alpha: float
) -> np.ndarray:
    """No-drift (1 - alpha) quantile of PSI, KL or JS over the PSI bins, per row of a stack.

    Small windows: simulated (the chi-square approximation underestimates PSI's tail by up to
    60% at 200 rows). From SIMULATE_BELOW rows on: PSI * n*m/(n+m) ~ chi-square(bins - 1), with
    KL ~ PSI/2 and the JS divergence (bits) ~ PSI / (8 ln 2) near no drift.
    """
    n, m = actual.sum(axis=-1), expected.sum(axis=-1)
    psi_q = np.asarray(st.psi_null_quantile(m, n, st.occupied_bins(expected, actual), alpha))
    quantiles = {
        "psi": psi_q,
        "kl_divergence": psi_q / 2,
        "js_distance": np.sqrt(psi_q / (8 * math.log(2))),
    }[statistic].copy()
    for row in np.flatnonzero((n > 0) & (n < st.SIMULATE_BELOW)):
        quantiles[row] = st.simulated_null_quantile(
            tuple(expected[row].tolist()), st.simulation_size(n[row]), alpha, statistic
        )
    return quantiles


@dataclass(frozen=True)
class Comparison:
    """One distribution to compare: its reference, the window's counts in the reference's bins,
    its thresholds, and (numeric) the sums of the window's values beyond the reference range."""

    ref: NumericReference | CategoricalReference
    current: np.ndarray
    thresholds: DriftThresholds
    below_sum: float = 0.0
    above_sum: float = 0.0


def compare(
    ref: NumericReference | CategoricalReference,
    current: np.ndarray,
    thresholds: DriftThresholds,
    min_samples: int,
    alpha: float,
    below_sum: float = 0.0,
    above_sum: float = 0.0,
) -> DriftResult:
    """All drift statistics of one distribution; `current` is the window's counts in ref's bins."""
    item = Comparison(ref, current, thresholds, below_sum, above_sum)
    return compare_all([item], min_samples, alpha)[0]


def _layout(ref: NumericReference | CategoricalReference) -> tuple[object, ...]:
    """What distributions computed as one stack share: numeric bins of one layout (edges may
    differ); categorical ones of as many categories (each with its own names and shares)."""
    if isinstance(ref, NumericReference):
        return ("numeric", ref.n_bins, ref.psi_bins.tobytes())
    return ("categorical", len(ref.counts))


def compare_all(items: list[Comparison], min_samples: int, alpha: float) -> list[DriftResult]:
    """`compare` of each item, the distributions of one layout (`_layout`) as one stack: each
    statistic is one numpy call over all of them (a 50-feature report's 46 numeric
    distributions cost about what 3 did one by one; its 5 categorical ones of as many
    categories, one stack instead of five)."""
    stacks: dict[tuple[object, ...], list[int]] = {}
    for i, item in enumerate(items):
        stacks.setdefault(_layout(item.ref), []).append(i)
    results: dict[int, DriftResult] = {}
    for rows in stacks.values():
        stack = [items[i] for i in rows]
        results |= zip(rows, _compare_stack(stack, min_samples, alpha), strict=True)
    return [results[i] for i in range(len(items))]


def _compare_stack(items: list[Comparison], min_samples: int, alpha: float) -> list[DriftResult]:
    """`compare_all` of distributions of one layout (`_layout`), one row each."""
    first = items[0].ref
    current = np.stack([item.current for item in items]).astype(float)
    if isinstance(first, NumericReference):
        fine = np.stack([item.ref.counts for item in items])
        to_psi = np.eye(first.n_psi_bins)[first.psi_bins]  # fine bin -> its PSI bin
        expected, actual = fine @ to_psi, current @ to_psi
        names = [item.ref.bin_labels for item in items]  # by the shares of each one's bins
    else:
        expected, actual = np.stack([item.ref.counts for item in items]).astype(float), current
        names = [(*item.ref.categories, OTHER) for item in items]
    n, m = actual.sum(axis=-1), expected.sum(axis=-1)
    values = {
        "psi": np.asarray(st.psi(expected, actual)),
        "kl_divergence": np.asarray(st.kl_divergence(expected, actual)),
        "js_distance": np.asarray(st.js_distance(expected, actual)),
    }
    configured = [configured_limits(item.thresholds) for item in items]
    wanted = {stat for limits in configured for stat in limits}
    null = {
        stat: _null_quantiles(stat, expected, actual, alpha) for stat in values if stat in wanted
    }
    ks_p = chi2 = None
    measured = np.ones(len(items), dtype=bool)  # rows with a Wasserstein distance
    if isinstance(first, NumericReference):
        refs = [item.ref for item in items]
        edges = np.stack([ref.edges for ref in refs])
        std = np.array([ref.std for ref in refs])
        below = np.array([item.below_sum for item in items])
        above = np.array([item.above_sum for item in items])
        ks = np.asarray(st.ks_statistic(fine, current))
        ks_crit = np.asarray(st.ks_critical(m, n, alpha))
        ks_p = np.asarray(st.ks_p_value(ks, m, n))
        measured, spread = std > 0, np.where(std > 0, std, 1.0)
        values["ks_statistic"], null["ks_statistic"] = ks, ks_crit
        w1 = np.asarray(st.wasserstein_binned(edges, fine, current, below, above))
        values["wasserstein_normalized"] = w1 / spread
        null["wasserstein_normalized"] = (
            np.asarray(st.wasserstein_null_bound(edges, fine, current, ks_crit)) / spread
        )
    else:
        chi2 = [st.chi_square(e, a) for e, a in zip(expected, actual, strict=True)]
    baseline_ratio, current_ratio = st.proportions(expected), st.proportions(actual)
    results = []
    for row, limits in enumerate(configured):
        got = {
            stat: float(v[row])
            for stat, v in values.items()
            if stat != "wasserstein_normalized" or measured[row]
        }
        effective = {
            stat: max(limit, float(null[stat][row]))
            for stat, limit in limits.items()
            if stat in got
        }
        triggered = tuple(s for s, limit in effective.items() if got[s] > limit)
        results.append(
            DriftResult(
                psi=got["psi"],
                kl_divergence=got["kl_divergence"],
                js_distance=got["js_distance"],
                ks_statistic=got.get("ks_statistic"),
                ks_p_value=float(ks_p[row]) if ks_p is not None else None,
                wasserstein_normalized=got.get("wasserstein_normalized"),
                chi_square=chi2[row][0] if chi2 is not None else None,
                chi_square_p_value=chi2[row][1] if chi2 is not None else None,
                thresholds=effective,
                triggered=triggered,
                detected=bool(triggered) if n[row] >= min_samples else None,
                rows=int(n[row]),
                bins=names[row],
                baseline_ratio=tuple(baseline_ratio[row].tolist()),
                current_ratio=tuple(current_ratio[row].tolist()),
            )
        )
    return results
