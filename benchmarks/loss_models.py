"""DLE's loss models alone: the two trees models of a regression (expected absolute and squared
error, `performance/loss_model.LossModel`) predicting a rebuild's rows, on every core and on one
thread, for cold_start.py's model (20 numeric, 5 categorical features) and ingest.py's (45 and
5). Pure: no store.

    python benchmarks/loss_models.py [--rows 1000000]

What it says: the part of a cold start no read or fold change can remove while estimation is
on. At issue 11's target (200,000 rows/s) a 1M-row window has 5 s in all.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from harness import machine

from exporter.performance.loss_model import LossModel, one_thread

CATEGORICAL = 5


def inputs(rng: np.random.Generator, n: int, numeric: int) -> np.ndarray:
    """Rows as the fold hands them to the models: numeric features, category codes, the
    prediction."""
    x = rng.normal(size=(n, numeric + CATEGORICAL + 1))
    x[:, numeric : numeric + CATEGORICAL] = rng.integers(0, 8, size=(n, CATEGORICAL))
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    print(machine())
    print(f"{'features':>9} {'both models':>12} {'absolute only':>14} {'both, one thread':>17}")
    rng = np.random.default_rng(0)
    for numeric in (20, 45):
        reference = inputs(rng, 20_000, numeric)
        error = reference[:, 0] + reference[:, -1] * 0.1 + rng.normal(size=len(reference))
        names = tuple(f"x{i}" for i in range(reference.shape[1]))
        categorical = tuple(range(numeric, numeric + CATEGORICAL))
        model = LossModel.fit(names, categorical, reference, error)
        x = inputs(rng, rows, numeric)

        def seconds(call) -> float:
            start = time.perf_counter()
            call()
            return time.perf_counter() - start

        both = seconds(lambda m=model, x=x: m.predict(x))
        absolute = seconds(lambda m=model, x=x: m.predict_absolute(x))
        with one_thread():
            alone = seconds(lambda m=model, x=x: m.predict(x))
        print(
            f"{numeric + CATEGORICAL:>9} {both:>11.2f}s {absolute:>13.2f}s {alone:>16.2f}s"
            f"   ({rows:,} rows)"
        )


if __name__ == "__main__":
    main()
