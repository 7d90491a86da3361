"""The ledger against a plain Python set of (slice, key): each row is new exactly once."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from exporter.ledger import RowLedger, row_keys, runs

_times = st.floats(1.7e9, 1.7e9 + 600, allow_nan=False)
_batches = st.lists(
    st.lists(st.tuples(st.integers(0, 40), _times), max_size=30), min_size=1, max_size=8
)


@given(_batches, st.sampled_from([1.0, 7.0, 60.0]))
def test_admit_passes_each_row_once_and_contains_agrees(batches, width) -> None:
    ledger = RowLedger(width)
    seen: set[tuple[int, str]] = set()
    reference: set[tuple[int, float]] = set()
    for batch in batches:
        ids = pd.Series([str(i) for i, _ in batch], dtype=object)
        epoch = np.array([t for _, t in batch], dtype=float)
        keys = row_keys(ids, epoch)
        before = ledger.contains(epoch, keys)
        fresh = ledger.admit(epoch, keys)
        assert before.tolist() == [(i, t) in reference for i, t in batch]  # state before it
        expected = []
        for i, t in batch:  # new: neither counted before nor earlier in the same batch
            expected.append((i, t) not in reference)
            reference.add((i, t))
        assert fresh.tolist() == expected
        seen |= {(math.floor(t / width), f"{i}|{t!r}") for i, t in batch}
    for slice_ in {s for s, _ in seen}:
        assert ledger.count(slice_) == sum(1 for s, _ in seen if s == slice_)
    assert len(ledger) == len(seen)
    slices = [s for s, _ in seen]
    for first, stop in [(0, 0), (min(slices, default=0), max(slices, default=0) + 1)] + [
        (s - 1, s + 2) for s in slices[:5]
    ]:  # a stretch as the sweep asks for it: slices first .. stop - 1
        assert ledger.count_between(first, stop) == sum(first <= s < stop for s in slices)
    assert ledger.count_between(-(10**12), 10**12) == len(seen)  # walks the slices held
    ledger.forget_before(min(s for s, _ in seen) + 1 if seen else 0)
    assert len(ledger) == sum(1 for s, _ in seen if s > min(s for s, _ in seen))


@given(st.lists(st.integers(0, 500), unique=True).map(sorted), st.integers(1, 20))
def test_runs_cover_every_id_and_split_only_at_gaps(ids, gap) -> None:
    spans = list(runs(ids, gap))
    covered = [i for first, last in spans for i in ids if first <= i <= last]
    assert covered == ids
    for (_, last), (first, _) in pairwise(spans):
        assert first - last > gap


@given(
    st.lists(st.one_of(st.text(), st.integers()), max_size=40),
    st.floats(0, 4e9, allow_nan=False),
)
def test_row_keys_are_pandas_hash_of_the_id_and_the_time(ids, start) -> None:
    """`row_keys` combines the two columns' hashes itself; the keys stay those pandas gives the
    frame of both (the reference: `hash_pandas_object`), for text and number ids alike."""
    ids = pd.Series(ids, dtype=object)
    epoch = start + np.arange(len(ids)) * 0.37
    frame = pd.DataFrame({"id": ids.astype(str).to_numpy(dtype=object), "t": epoch})
    reference = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    keys = row_keys(ids, epoch)
    assert keys.dtype == np.uint64
    assert keys.tolist() == reference.tolist()
