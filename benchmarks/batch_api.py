"""The batch API against a plain numpy + scipy recompute: `DataDriftDetector` (reference
captured, then one current frame checked) on 25 columns (20 numeric, 5 categorical of 12 values)
at 10k, 100k and 1M rows per side, beside what a notebook would write by hand for the same
statistics (PSI and JS over 10 reference-quantile bins, the two-sample KS, chi-square).

    python benchmarks/batch_api.py [--sizes 10000,100000,1000000]

Wall time and extra memory (tracemalloc's peak over the call, the frames already built).
Targets (issue 11): detector time <= the numpy recompute's; extra memory <= 300 MB at 1M.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from harness import machine
from scipy import stats
from scipy.spatial.distance import jensenshannon

from exporter.drift import DataDriftDetector

NUMERIC, CATEGORICAL = 20, 5


def frame(rng: np.random.Generator, n: int, shift: float) -> pd.DataFrame:
    data = {f"n{i}": rng.normal(shift * (i % 3), 1, n) for i in range(NUMERIC)}
    labels = np.array([f"v{k}" for k in range(12)], dtype=object)
    for i in range(CATEGORICAL):
        data[f"c{i}"] = labels[rng.integers(0, 12, n)]
    return pd.DataFrame(data)


def frame_pairs(sizes: str) -> Iterator[tuple[int, pd.DataFrame, pd.DataFrame]]:
    """(rows per side, reference, current) for each of the comma-separated sizes, seeded by the
    size so that every benchmark comparing with the detector sees the same frames."""
    for n in (int(s) for s in sizes.split(",")):
        rng = np.random.default_rng(n)
        yield n, frame(rng, n, 0.0), frame(rng, n, 0.05)


def capture(reference: pd.DataFrame) -> DataDriftDetector:
    return DataDriftDetector(reference, categorical_features=[f"c{i}" for i in range(CATEGORICAL)])


def by_hand(reference: pd.DataFrame, current: pd.DataFrame, exact_ks: bool) -> dict[str, float]:
    """The recompute a notebook would do: per column, from the raw values; KS exact (scipy's
    `ks_2samp`, sorting both samples) or, as the detector does, over 100 reference-quantile
    bins."""
    out = {}
    for name in reference.columns:
        ref, cur = reference[name].to_numpy(), current[name].to_numpy()
        if name.startswith("n"):
            edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)))
            edges[0], edges[-1] = -np.inf, np.inf
            p = np.histogram(ref, edges)[0] / len(ref)
            q = np.histogram(cur, edges)[0] / len(cur)
            p, q = np.clip(p, 1e-4, None), np.clip(q, 1e-4, None)
            out[f"{name} psi"] = float(np.sum((q - p) * np.log(q / p)))
            out[f"{name} js"] = float(jensenshannon(p, q, base=2))
            if exact_ks:
                out[f"{name} ks"] = float(stats.ks_2samp(ref, cur).statistic)
            else:
                fine = np.unique(np.quantile(ref, np.linspace(0, 1, 101)))
                cdf_ref = np.searchsorted(np.sort(ref), fine, side="right") / len(ref)
                cdf_cur = np.searchsorted(np.sort(cur), fine, side="right") / len(cur)
                out[f"{name} ks"] = float(np.max(np.abs(cdf_ref - cdf_cur)))
        else:
            counts = pd.concat(
                [pd.Series(ref).value_counts(), pd.Series(cur).value_counts()], axis=1
            ).fillna(0)
            table = counts.to_numpy().T
            out[f"{name} chi2"] = float(stats.chi2_contingency(table, correction=False)[0])
    return out


def measured(call: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, seconds, peak MB allocated during the call): timed in one run, memory traced in
    another (tracing slows the run it watches)."""
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    call()
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return result, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    args = parser.parse_args()
    print(machine())
    print(
        f"{'rows per side':>14} {'detector':>10} {'(capture + check)':>20} {'numpy':>8} "
        f"{'binned':>8} {'ratio':>6} {'detector MB':>12} {'numpy MB':>9}"
    )
    for n, reference, current in frame_pairs(args.sizes):
        detector, captured, capture_mb = measured(lambda reference=reference: capture(reference))
        report, check, check_mb = measured(lambda d=detector, c=current: d.detect_drift(c))
        _, exact_s, exact_mb = measured(lambda r=reference, c=current: by_hand(r, c, True))
        _, binned_s, _ = measured(lambda r=reference, c=current: by_hand(r, c, False))
        total = captured + check
        print(
            f"{n:>14,} {total:>9.2f}s {f'({captured:.2f} + {check:.2f})':>20} {exact_s:>7.2f}s "
            f"{binned_s:>7.2f}s {total / min(exact_s, binned_s):>6.2f} "
            f"{f'{capture_mb:.0f} + {check_mb:.0f}':>12} {exact_mb:>9.0f}"
        )
        assert report["feature_metrics"]


if __name__ == "__main__":
    main()
