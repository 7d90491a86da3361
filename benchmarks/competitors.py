"""The batch API beside Evidently and NannyML on the same data: `batch_api.py`'s frames (25
columns, 20 numeric, 5 categorical of 12 values; current shifted), reference captured and one
current frame checked, wall time per tool.

    python benchmarks/competitors.py [--sizes 10000,100000,1000000] [--venv DIR]

Evidently and NannyML need pandas < 3 and this project runs on pandas 3, so they run in a
virtualenv of their own (default var/bench/competitors-venv, created on first use with
`pip install "pandas<3" evidently nannyml`), in a child process that reads the same frames from
.npy files. What each computes differs: the detector PSI, KL, JS, KS (binned), normed
Wasserstein, chi-square with p-values and multivariate drift; Evidently's data drift preset
normed Wasserstein (numeric) and Jensen-Shannon (categorical); NannyML's univariate calculator
KS and JS (numeric), chi-square and JS (categorical).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import venv
from pathlib import Path

import numpy as np
import pandas as pd
from batch_api import CATEGORICAL, NUMERIC, capture, frame_pairs
from harness import machine

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = HERE.parent / "var" / "bench" / "competitors-venv"
PACKAGES = ["pandas<3", "evidently", "nannyml"]


def competitors_python(folder: Path) -> Path:
    """The virtualenv's interpreter, the virtualenv created and filled on first use."""
    python = folder / "bin" / "python"
    if not python.exists():
        print(f"creating {folder} ({' '.join(PACKAGES)}); once", flush=True)
        venv.create(folder, with_pip=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", *PACKAGES], check=True)
    return python


def write(folder: Path, side: str, data: pd.DataFrame) -> None:
    """One side's columns as plain arrays: numbers as floats, categories as fixed-width text."""
    numeric = data[[f"n{i}" for i in range(NUMERIC)]].to_numpy(dtype=float)
    categorical = data[[f"c{i}" for i in range(CATEGORICAL)]].to_numpy(dtype=str)
    np.save(folder / f"{side}_numeric.npy", numeric)
    np.save(folder / f"{side}_categorical.npy", categorical)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    args = parser.parse_args()
    python = competitors_python(args.venv)
    print(machine())
    print(
        f"{'rows per side':>14} {'detector':>9} {'Evidently':>10} {'NannyML':>9} "
        f"{'Evidently / detector':>21} {'NannyML / detector':>19}"
    )
    for n, reference, current in frame_pairs(args.sizes):
        started = time.perf_counter()
        assert capture(reference).detect_drift(current)["feature_metrics"]
        ours = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as tmp:
            write(Path(tmp), "reference", reference)
            write(Path(tmp), "current", current)
            child = subprocess.run(
                [python, HERE / "competitors_child.py", tmp, str(CATEGORICAL)],
                check=True,
                capture_output=True,
                text=True,
            )
        theirs = json.loads(child.stdout.strip().splitlines()[-1])
        evidently, nannyml = theirs["evidently"], theirs["nannyml"]
        print(
            f"{n:>14,} {ours:>8.2f}s {evidently:>9.2f}s {nannyml:>8.2f}s "
            f"{evidently / ours:>20.1f}x {nannyml / ours:>18.1f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
