"""Multivariate drift: PCA reconstruction error of the standardised numeric features.

Univariate tests see each feature's marginal and miss a change in how features move together;
they also cry for shifts that leave the joint structure alone. NannyML's answer, kept here: fit
principal components on the reference's standardised numeric features, keep the fewest that
explain a stated share of the variance, and measure how far each row lies from that subspace
(the Euclidean norm of standardised row minus its reconstruction). A window whose mean error
moves from the reference's has rows the reference's structure does not explain.

Streaming: the error of a row depends only on the row and the baseline, so the window keeps its
count, sum and sum of squares per bucket. The verdict is size-aware like the univariate ones:
the reference's chunk-to-chunk spread of the mean error, scaled to the window's size, plus the
reference mean's own uncertainty. Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from exporter import significance as sig

CHUNKS = 20  # reference chunks the chunk-to-chunk spread is measured on
MIN_ROWS = 200  # complete reference rows needed to fit the components
BLOCK = 10_000  # rows at a time: temporaries of a few MB beside the rows themselves


@dataclass(frozen=True)
class Pca:
    """What the window needs of the reference: the standardisation, the kept components and
    the distribution of the reference's own reconstruction errors."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray  # kept components as rows, q x k
    explained: float  # share of the reference's variance they explain
    rows: int  # complete reference rows
    error_mean: float
    error_std: float
    chunk_rows: int
    chunk_std: float  # standard deviation of the mean error over reference chunks

    def errors(self, x: np.ndarray) -> np.ndarray:
        """Reconstruction error of each row of `x` (rows x features, all finite)."""
        out = np.empty(len(x))
        for start in range(0, len(x), BLOCK):
            z = (x[start : start + BLOCK] - self.mean) / self.scale
            residual = z - (z @ self.components.T) @ self.components
            out[start : start + BLOCK] = np.sqrt(np.einsum("ij,ij->i", residual, residual))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "components": self.components.tolist(),
            "explained": self.explained,
            "rows": self.rows,
            "error_mean": self.error_mean,
            "error_std": self.error_std,
            "chunk_rows": self.chunk_rows,
            "chunk_std": self.chunk_std,
            "reference_errors": "held_out",
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pca | None:
        """None for components stored before their reference errors were held out (2026-12-04):
        those errors are in-sample, and a verdict against them calls wide models drifted that
        are not. Such a baseline serves no multivariate drift until it is captured again."""
        if data.get("reference_errors") != "held_out":
            return None
        k = len(data["features"])
        return cls(
            tuple(data["features"]),
            np.asarray(data["mean"], dtype=float),
            np.asarray(data["scale"], dtype=float),
            np.asarray(data["components"], dtype=float).reshape(-1, k),
            float(data["explained"]),
            int(data["rows"]),
            float(data["error_mean"]),
            float(data["error_std"]),
            int(data["chunk_rows"]),
            float(data["chunk_std"]),
        )


@dataclass(frozen=True)
class Moments:
    """Count, means and centred sums of the rows where every column is finite: what both the
    baseline's correlations and its principal components are computed from (one pass). The
    sums are also kept per chunk of consecutive complete rows, so that `fit` can refit the
    components without any one chunk at no further pass over the rows."""

    complete: np.ndarray  # which rows count
    n: int
    mean: np.ndarray
    sums: np.ndarray  # of the centred values: about 0, kept so that no precision is lost
    cross: np.ndarray  # centred cross-products
    chunk_sums: np.ndarray  # CHUNKS x k: each chunk's share of `sums`
    chunk_cross: np.ndarray  # CHUNKS x k x k: each chunk's share of `cross`

    def chunks(self, columns: list[np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
        """(chunk, block) over the complete rows in order, BLOCK rows at a time: CHUNKS chunks
        of consecutive complete rows, as equal as `np.array_split` makes them."""
        for c, rows in enumerate(np.array_split(np.flatnonzero(self.complete), CHUNKS)):
            for start in range(0, len(rows), BLOCK):
                at = rows[start : start + BLOCK]
                yield c, np.column_stack([column[at] for column in columns])


def moments(columns: list[np.ndarray]) -> Moments | None:
    """One pass of centred sums, BLOCK rows at a time: a million rows of 25 features need a few
    MB beyond the columns, where `np.corrcoef` copies the whole matrix three times. None with
    fewer than two columns or three complete rows."""
    if len(columns) < 2:
        return None
    complete = np.ones(len(columns[0]), dtype=bool)
    for column in columns:
        complete &= np.isfinite(column)
    n = int(complete.sum())
    if n < 3:
        return None
    k = len(columns)
    mean = np.array([c[complete].mean() for c in columns])
    chunk_sums, chunk_cross = np.zeros((CHUNKS, k)), np.zeros((CHUNKS, k, k))
    shell = Moments(complete, n, mean, np.zeros(k), np.zeros((k, k)), chunk_sums, chunk_cross)
    for c, block in shell.chunks(columns):
        centred = block - mean
        chunk_sums[c] += centred.sum(axis=0)
        chunk_cross[c] += centred.T @ centred
    return replace(shell, sums=chunk_sums.sum(axis=0), cross=chunk_cross.sum(axis=0))


def _principal(
    n: int, centre: np.ndarray, sums: np.ndarray, cross: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, scale, eigenvalues (largest first) and eigenvectors as rows (each signed so its
    largest loading is positive) of `n` standardised rows, from their sums about `centre`."""
    mean = centre + sums / n
    covariance = cross / n - np.outer(sums / n, sums / n)
    scale = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    scale = np.where(scale > 0, scale, 1.0)  # a constant feature: nothing to explain
    eigenvalues, vectors = np.linalg.eigh(covariance / np.outer(scale, scale))
    order = np.argsort(eigenvalues)[::-1]
    rows = vectors[:, order].T
    rows *= np.sign(rows[np.arange(len(rows)), np.abs(rows).argmax(axis=1)])[:, None]
    return mean, scale, np.clip(eigenvalues[order], 0.0, None), rows


def fit(
    features: tuple[str, ...],
    columns: list[np.ndarray],
    variance_share: float,
    sums: Moments | None = None,
) -> Pca | None:
    """Components of the standardised reference rows where every column is finite (`sums`:
    their `moments`, when the caller has them); None with fewer than MIN_ROWS such rows or fewer
    than two columns. Components are the eigenvectors of the correlation matrix, largest first,
    each signed so its largest loading is positive (a refit of the same data stores the same
    numbers).

    The reference's errors are measured out of sample: each chunk's rows get their error from
    the same number of components fitted to the other chunks. On the rows they were fitted to,
    components fit better than on any new row, the more so the more features per reference row
    (1,000 rows of 45 independent features: 11% lower), so an in-sample reference would call
    every window of a wide model drifted."""
    sums = sums or moments(columns)
    if sums is None or sums.n < MIN_ROWS:
        return None
    n = sums.n
    mean, scale, eigenvalues, components = _principal(n, sums.mean, sums.sums, sums.cross)
    share = np.cumsum(eigenvalues) / eigenvalues.sum()
    # All components would explain every row: errors of rounding noise, nothing to measure.
    q = min(int(np.searchsorted(share, variance_share - 1e-12) + 1), len(features) - 1)
    whole = Pca(features, mean, scale, components[:q], float(share[q - 1]), n, 0.0, 0.0, 1, 0.0)
    sizes = np.array([len(rows) for rows in np.array_split(np.arange(n), CHUNKS)])
    folds = []
    for c in range(CHUNKS):
        fold = _principal(
            n - sizes[c],
            sums.mean,
            sums.sums - sums.chunk_sums[c],
            sums.cross - sums.chunk_cross[c],
        )
        folds.append(replace(whole, mean=fold[0], scale=fold[1], components=fold[3][:q]))
    errors, at = np.empty(n), 0
    for c, block in sums.chunks(columns):
        errors[at : at + len(block)] = folds[c].errors(block)
        at += len(block)
    chunk_means = np.bincount(np.repeat(np.arange(CHUNKS), sizes), weights=errors) / sizes
    return replace(
        whole,
        error_mean=float(errors.mean()),
        error_std=float(errors.std()),
        chunk_rows=n // CHUNKS,
        chunk_std=float(chunk_means.std(ddof=1)),
    )


@dataclass(frozen=True)
class MultivariateDrift:
    rows: int  # window rows with every numeric feature present
    error: float  # the window's mean reconstruction error
    reference_error: float
    lower: float  # the window's mean must leave [lower, upper] for a verdict
    upper: float
    detected: bool


def verdict(
    pca: Pca, n: float, total: float, min_relative_change: float, alpha: float
) -> MultivariateDrift:
    """Two-sided: the mean error of `n` window rows (`total` their sum) outside the band the
    reference's own chunks give at this size, and by more than `min_relative_change`.

    The band's standard error is the chunk-to-chunk spread scaled to `n` rows (not below the
    i.i.d. value error_std / sqrt(n): windows smaller than a chunk), plus the uncertainty of
    the reference's mean itself."""
    se = math.sqrt(
        max(pca.chunk_std**2 * pca.chunk_rows / n, pca.error_std**2 / n)
        + pca.error_std**2 / pca.rows
    )
    half = max(sig.critical_z(alpha / 2, 1) * se, min_relative_change * pca.error_mean)
    error = total / n
    lower, upper = pca.error_mean - half, pca.error_mean + half
    return MultivariateDrift(
        int(n), error, pca.error_mean, lower, upper, bool(error < lower or error > upper)
    )
