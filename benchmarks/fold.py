"""The drift fold alone (`sufficient_stats.fold_drift`): a model of 45 numeric and 5 categorical
features (estimation and multivariate drift off, so the numeric fold is what is measured), the
mean time of repeated folds of one batch, for a scrape's batch, a rebuild's page, and a page
spread over a day of minute buckets (a sparse model's rebuild). Pure: no store.

    python benchmarks/fold.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from harness import machine

from exporter.config import ModelConfig, parse_config
from exporter.rows import Rows, parse_rows
from exporter.storage.prediction_store import LABEL, PREDICTION, feature_key
from exporter.sufficient_stats import drift_layout, fold_drift
from exporter.window import capture_baseline

NUMERIC, CATEGORICAL = 45, 5
CASES = (  # rows, distinct buckets, folds timed (times --repeats)
    (200, 1, 100),
    (50_000, 3, 2),
    (10_000, 1_440, 2),
)


def model() -> ModelConfig:
    return parse_config(
        {
            "models": [
                {
                    "model_id": "fold",
                    "kind": "regression",
                    "source": {"table": "fold_predictions"},
                    "features": {
                        **{f"n{i}": "numeric" for i in range(NUMERIC)},
                        **{f"c{i}": "categorical" for i in range(CATEGORICAL)},
                    },
                    "estimation": {"enabled": False},
                    "multivariate": {"enabled": False},
                }
            ]
        }
    ).models[0]


def rows(spec: ModelConfig, rng: np.random.Generator, n: int) -> Rows:
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            PREDICTION: rng.normal(size=n),
            LABEL: rng.normal(size=n),
            **{feature_key(f"n{i}"): rng.normal(size=n) for i in range(NUMERIC)},
            **{feature_key(f"c{i}"): rng.choice(["a", "b", "c"], n) for i in range(CATEGORICAL)},
        }
    )
    return parse_rows(frame, spec, pd.Series(np.zeros(n)), label="optional")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    print(machine())
    spec = model()
    rng = np.random.default_rng(0)
    baseline = capture_baseline(spec, rows(spec, rng, 5_000))
    layout = drift_layout(spec, baseline)
    for n, buckets, folds in CASES:
        batch, bucket_of_row = rows(spec, rng, n), rng.integers(0, buckets, n)
        fold_drift(layout, spec, baseline, batch, bucket_of_row)  # warm: bins made once
        started = time.perf_counter()
        for _ in range(folds * repeats):
            fold_drift(layout, spec, baseline, batch, bucket_of_row)
        mean = (time.perf_counter() - started) / (folds * repeats)
        print(f"{n:>7,} rows over {buckets:>5,} buckets: {mean * 1000:8.2f} ms a fold")


if __name__ == "__main__":
    main()
