"""How many of a fixed set of sorted edges lie at or below each of many values, for several
edge sets at once: the answer of `numpy.searchsorted(edges, x, side="right")` per set, several
times faster.

Binary search over ~100 quantile edges costs 60-90 ns a value on this project's machines, almost
all of it mispredicted branches: binning is a quarter of the batch API's time on a million rows.
A uniform grid over the edges' range tells where to start for each value, and a few vectorised
steps forward (as many as the most edges any three neighbouring cells hold) finish the count.
The answer is exactly searchsorted's (a property test checks it, edges and their neighbouring
floats included); edge sets the grid would not serve well (edges crowded into a few cells, a
range too narrow for the floats' resolution) get searchsorted itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRID = 4096  # cells over the edges' range
MAX_STEPS = 8  # more steps than this and binary search is as cheap


@dataclass(frozen=True)
class EdgeCounter:
    """The grid of one sorted, distinct edge set: per cell, the edges below it, and the steps
    that finish any count from there (`EdgeCounters` counts with it)."""

    lo: float
    scale: float  # cells per unit of x
    below: np.ndarray  # per cell: the edges strictly below its left end
    padded: np.ndarray  # the edges, then NaN (a step past the last edge never moves)
    steps: int

    @classmethod
    def of(cls, edges: np.ndarray) -> EdgeCounter | None:
        """The counter for `edges`, or None where binary search is the better tool."""
        if len(edges) < 2:
            return None
        lo, hi = float(edges[0]), float(edges[-1])
        # The cell of a value is computed in floats: each cell must span many of them, and the
        # range and its inverse must be floats themselves.
        scale = GRID / (hi - lo)
        if not math.isfinite(hi - lo) or not math.isfinite(scale):
            return None
        if (hi - lo) / GRID < 64 * np.spacing(max(-lo, hi)):
            return None
        below = np.searchsorted(edges, lo + np.arange(GRID) / scale, side="left").astype(
            np.min_scalar_type(len(edges))  # a byte per cell for ~100 edges: 4 KB a feature
        )
        # A value is started one cell low (a rounding margin) and ends at most two cells on:
        # the steps needed are the most edges in any three neighbouring cells.
        ends = np.append(below, len(edges))[np.minimum(np.arange(GRID) + 2, GRID)]
        steps = int((ends - below[np.maximum(np.arange(GRID) - 1, 0)]).max())
        if steps > MAX_STEPS:
            return None
        return cls(lo, scale, below, np.append(edges, np.nan), steps)


@dataclass(frozen=True)
class EdgeCounters:
    """Several edge sets counted at once: row j of `count(x)` (x: sets x values, without NaN)
    is `numpy.searchsorted(sets[j], x[j], side="right")`. The sets an `EdgeCounter` serves share
    one grid lookup and the same steps (the most any of them needs: a step past a set's last
    edge never moves); the others are counted by searchsorted, row by row. A scrape's few
    hundred rows of 45 numeric features cost about as many numpy calls as one feature."""

    lo: np.ndarray
    scale: np.ndarray
    below: np.ndarray  # gridded sets x GRID, flat: where in `padded` each cell starts
    padded: np.ndarray  # gridded sets x width, flat: each set's edges, then NaN
    first: np.ndarray  # where each gridded set starts in `padded`
    steps: int
    gridded: np.ndarray  # sets counted on the grid
    searched: tuple[tuple[int, np.ndarray], ...]  # (set, edges) counted by searchsorted

    @classmethod
    def of(cls, edge_sets: list[np.ndarray]) -> EdgeCounters:
        sets = [(edges, EdgeCounter.of(edges)) for edges in edge_sets]
        counters = [(j, c) for j, (_, c) in enumerate(sets) if c is not None]
        width = max((len(c.padded) for _, c in counters), default=1)
        padded = np.full((len(counters), width), np.nan)
        for row, (_, c) in enumerate(counters):
            padded[row, : len(c.padded)] = c.padded
        first = np.arange(len(counters))[:, None] * width
        # Positions in `padded` in the smallest integers that hold them: 4096 cells a set,
        # two bytes each for up to 600 sets of 100 edges (eight, as intp: 74 MB for 50 models).
        kind = np.min_scalar_type(max(len(counters) * width, 1))
        below = [(c.below + first[row]).astype(kind) for row, (_, c) in enumerate(counters)]
        return cls(
            np.array([c.lo for _, c in counters]).reshape(-1, 1),
            np.array([c.scale for _, c in counters]).reshape(-1, 1),
            np.concatenate(below or [np.zeros(0, kind)]),
            padded.ravel(),
            first,
            max((c.steps for _, c in counters), default=0),
            np.array([j for j, _ in counters], dtype=np.intp),
            tuple((j, edges) for j, (edges, c) in enumerate(sets) if c is None),
        )

    def count(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(x.shape, dtype=np.intp)
        if len(self.gridded):
            on_grid = x if len(self.gridded) == len(x) else x[self.gridded]
            # A value starts one cell low (`EdgeCounter.of`: a rounding margin) and steps on.
            # One far beyond the edges (near the largest double) overflows to an infinity,
            # which the clip takes to the first or last cell, as it should.
            with np.errstate(over="ignore"):
                cell = np.clip((on_grid - self.lo) * self.scale, 1.0, GRID).astype(np.intp) - 1
            at = self.below[cell + np.arange(len(self.gridded))[:, None] * GRID]
            for _ in range(self.steps):
                at += self.padded[at] <= on_grid
            out[self.gridded] = at - self.first
        for j, edges in self.searched:
            out[j] = np.searchsorted(edges, x[j], side="right")
        return out
