"""Evidently's and NannyML's drift checks on the frames `competitors.py` wrote, timed; run by it
in the competitors' own virtualenv (they need pandas < 3). Prints one JSON line of seconds.

    python competitors_child.py DIR CATEGORICAL

DIR holds reference/current numeric matrices and categorical columns as .npy (no pickles).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def load(folder: Path, side: str) -> pd.DataFrame:
    numeric = np.load(folder / f"{side}_numeric.npy")
    categorical = np.load(folder / f"{side}_categorical.npy")
    data = {f"n{i}": numeric[:, i] for i in range(numeric.shape[1])}
    data |= {f"c{i}": categorical[:, i].astype(object) for i in range(categorical.shape[1])}
    return pd.DataFrame(data)


def evidently_seconds(reference: pd.DataFrame, current: pd.DataFrame, cats: list[str]) -> float:
    """Its data drift preset with its defaults (above 1,000 rows: normed Wasserstein distance for
    numeric columns, Jensen-Shannon distance for categorical ones), datasets built included."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    started = time.perf_counter()
    numeric = [c for c in reference.columns if c not in cats]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=cats)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    assert snapshot.dict()["metrics"]
    return time.perf_counter() - started


def nannyml_seconds(reference: pd.DataFrame, current: pd.DataFrame, cats: list[str]) -> float:
    """Its univariate drift calculator over one chunk per side: Kolmogorov-Smirnov and
    Jensen-Shannon for numeric columns, chi-square and Jensen-Shannon for categorical ones."""
    import nannyml

    started = time.perf_counter()
    calculator = nannyml.UnivariateDriftCalculator(
        column_names=list(reference.columns),
        treat_as_categorical=cats,
        continuous_methods=["kolmogorov_smirnov", "jensen_shannon"],
        categorical_methods=["chi2", "jensen_shannon"],
        chunk_number=1,
    )
    calculator.fit(reference)
    assert len(calculator.calculate(current).to_df())
    return time.perf_counter() - started


def main() -> None:
    folder, categorical = Path(sys.argv[1]), int(sys.argv[2])
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)  # NannyML warns that one chunk is few
    reference, current = load(folder, "reference"), load(folder, "current")
    cats = [f"c{i}" for i in range(categorical)]
    seconds = {
        "evidently": evidently_seconds(reference, current, cats),
        "nannyml": nannyml_seconds(reference, current, cats),
    }
    print(json.dumps(seconds))


if __name__ == "__main__":
    main()
