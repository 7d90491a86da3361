"""The batch API at scale: categories named once per distinct value (same names as row by
row), a frame folded in chunks gives exactly the numbers of one pass, and a reference parsed in
chunks is held once."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.drift import detector
from exporter.drift.detector import DataDriftDetector
from exporter.rows import Rows, category_column, category_value, from_dataframe

VALUES = st.one_of(
    st.none(),
    st.just(float("nan")),
    st.sampled_from(["all", "other", "~x", "red", "1", ""]),
    st.integers(-3, 3),
    st.floats(-2, 2, allow_nan=False).map(lambda v: round(v, 1)),
    st.text(max_size=3),
)


def _row_by_row(values: list) -> list:
    """The reference: each value named on its own, as the exporter did before vectorising."""
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        elif isinstance(v, str):
            out.append(category_value(v))
        elif isinstance(v, float) and v.is_integer():
            out.append(category_value(str(int(v))))
        else:
            out.append(category_value(str(v)))
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(VALUES, max_size=40))
def test_categories_are_named_as_row_by_row(values) -> None:
    named = category_column(pd.Series(values, dtype=object)).tolist()
    assert named == _row_by_row(values)


def test_chunks_give_the_numbers_of_one_pass(monkeypatch) -> None:
    rng = np.random.default_rng(7)
    n = 5_000

    def frame(shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "x": rng.normal(shift, 1, n),
                "y": rng.exponential(1, n),
                "plan": rng.choice(["basic", "pro", "all", None], n),
            }
        )

    reference, current = frame(0.0), frame(0.3)
    drift = DataDriftDetector(reference, categorical_features=["plan"])
    whole = drift.detect_drift(current)
    monkeypatch.setattr(detector, "CHUNK_ROWS", 777)  # 7 chunks, the last one short
    chunked = drift.detect_drift(current)
    assert whole["drifted_features"] == chunked["drifted_features"]
    for name, metrics in whole["feature_metrics"].items():
        for key, value in metrics.items():
            other = chunked["feature_metrics"][name][key]
            if isinstance(value, float):
                assert math.isclose(value, other, rel_tol=1e-12, abs_tol=1e-15), (name, key)
            else:
                assert value == other, (name, key)


def test_a_reference_joined_from_chunks_is_the_one_pass_rows_held_once() -> None:
    """A reference is parsed a chunk at a time and joined (`Rows.concat`): the rows are those of
    one pass, and the peak is the rows plus about one chunk. A parsed chunk's numeric columns are
    views of one block, so joining field by field after all chunks were parsed held every block
    until its last column was joined: twice the rows (455 MB at 1M x 25 in batch_api.py)."""
    rng = np.random.default_rng(5)
    n, chunk = 40_000, 2_000
    frame = pd.DataFrame(
        {
            **{f"x{i}": rng.normal(0, 1, n) for i in range(8)},
            "plan": rng.choice(["basic", "pro", None], n),
        }
    )
    model = DataDriftDetector(frame.iloc[:1_000], categorical_features=["plan"]).model

    def parsed():
        for start in range(0, n, chunk):
            part = frame.iloc[start : start + chunk]
            yield from_dataframe(model, part, np.zeros(len(part)))

    tracemalloc.start()
    joined = Rows.concat(parsed(), n)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    whole = from_dataframe(model, frame, np.zeros(n))
    held = whole._fields()
    size = sum(a.nbytes for a in held.values() if a is not None)
    for key, array in joined._fields().items():
        if array is None:
            assert held[key] is None, key
        else:
            assert array.dtype == held[key].dtype and np.array_equal(
                array, held[key], equal_nan=array.dtype.kind == "f"
            ), key
    assert peak < size * 1.35  # the rows, one chunk (a twentieth) and its parse's copies


def test_a_capture_holds_the_parsed_reference_once() -> None:
    """End to end, a capture's peak is its parsed rows plus temporaries of a chunk's size, not a
    second copy of the rows (issue 11's bound: 300 MB at 1M x 25, the rows alone 256 MB)."""
    rng = np.random.default_rng(9)
    n = 400_000
    frame = pd.DataFrame(
        {
            **{f"x{i}": rng.normal(0, 1, n) for i in range(10)},
            **{
                f"c{i}": np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, n)]
                for i in range(2)
            },
        }
    )
    tracemalloc.start()
    drift = DataDriftDetector(frame, categorical_features=["c0", "c1"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rows = from_dataframe(drift.model, frame, np.zeros(n))
    size = sum(a.nbytes for a in rows._fields().values() if a is not None)
    assert peak < size * 1.3, peak / size


def test_dtypes_and_index_do_not_change_the_numbers() -> None:
    """The frame's columns are taken with their own dtypes: text as object, pandas' string or
    category dtype, numbers as float or nullable Int64, under a shuffled index, give the
    numbers of plain columns under a fresh index."""
    rng = np.random.default_rng(11)
    n = 3_000

    def plain(shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "x": rng.normal(shift, 1, n),
                "k": rng.integers(0, 9, n).astype(float),
                "plan": np.array(rng.choice(["basic", "pro", "all", "~x"], n), dtype=object),
            }
        )

    def dressed(frame: pd.DataFrame, text: str) -> pd.DataFrame:
        out = frame.astype({"k": "Int64", "plan": text})
        out.index = rng.permutation(n) * 7 + 100
        return out

    reference, current = plain(0.0), plain(0.4)
    expected = DataDriftDetector(reference, categorical_features=["plan"]).detect_drift(current)
    for text in ("object", "string", "category"):
        got = DataDriftDetector(
            dressed(reference, text), categorical_features=["plan"]
        ).detect_drift(dressed(current, text))
        assert got == expected, text
