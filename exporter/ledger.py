"""Which rows have been counted, per time bucket: the memory behind "every row exactly once".

A read by keyset position cannot see a row that commits after a later-stamped row was read, nor
one inserted later with an older time. The refresher therefore reads such places again, and this
ledger tells which of the rows it gets back are new. It keeps one 64-bit hash per counted row
(its id and its time), sorted per time slice, so a window of a million rows costs 8 MB. Pure
numpy.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

_EMPTY = np.empty(0, dtype=np.uint64)

# Reconciliation reads stretches of slices that came up short; slices this close together are
# read as one stretch (one query), and the rows it lacks are fetched by id, this many at a time.
RUN_GAP = 60
IDS_PER_READ = 1_000


def runs(sorted_ids: list[int], gap: int) -> Iterator[tuple[int, int]]:
    """(first, last) of each run of sorted ids whose neighbours are at most `gap` apart."""
    if not sorted_ids:
        return
    first = prev = sorted_ids[0]
    for i in sorted_ids[1:]:
        if i - prev > gap:
            yield first, prev
            first = i
        prev = i
    yield first, prev


def by_slice(slices: np.ndarray, keys: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(slice, the positions of its rows in key order) for each slice among `slices`."""
    if len(slices) == 0:
        return
    order = np.lexsort((keys, slices))
    ordered = slices[order]
    starts = np.flatnonzero(np.diff(ordered, prepend=ordered[:1] - 1))
    yield from zip(ordered[starts].tolist(), np.split(order, starts[1:]), strict=True)


def slice_width(bucket: float) -> float:
    """Reconciliation compares row counts in slices of a sixtieth of a window bucket (at least a
    second): a row that commits late costs a re-read of its slice only, not of a whole bucket."""
    return max(1.0, float(bucket // 60))


def row_keys(ids: pd.Series, epoch: np.ndarray) -> np.ndarray:
    """A stable 64-bit hash of each row's (id, time); the same row always gives the same key.

    The keys `pd.util.hash_pandas_object` gives a frame of the two columns, computed from the
    columns' hashes directly: the frame and `categorize` (factorizing the ids first, a gain
    only for repeated values, which ids are not) cost 6-10x the hashing (0.3 ms for 200 rows,
    of which a 50-model scrape reads 150 batches).
    """
    text = pd.util.hash_array(ids.astype(str).to_numpy(dtype=object), categorize=False)
    time = pd.util.hash_array(np.asarray(epoch, dtype=float))
    # pandas' combination of column hashes (`combine_hash_arrays`), for two columns.
    mult, out = np.uint64(1_000_003), np.full(len(text), 0x345678, dtype=np.uint64)
    for column, weight in ((text, 2), (time, 1)):
        out ^= column
        out *= mult
        mult += np.uint64(82_520 + 2 * weight)
    return out + np.uint64(97_531)


class RowLedger:
    """Keys of the counted rows of one stream, grouped by time slice of `width` seconds."""

    def __init__(self, width: float) -> None:
        self.width = width
        self._buckets: dict[int, np.ndarray] = {}

    def bucket_of(self, epoch: np.ndarray) -> np.ndarray:
        return np.floor(np.asarray(epoch, dtype=float) / self.width).astype(np.int64)

    def contains(self, epoch: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """True where a row is already counted; records nothing.

        Each row's key is looked up in its own slice's sorted keys (a binary search): a test
        of membership in all of them at once (`np.isin`) hashed or sorted the slices' keys
        anew at every call, 25 ms for a page of 10,000 rows against 60,000 held at 35,000 rows
        a second, a quarter of a steady refresh (docs/performance.md, Ingest).
        """
        found = np.zeros(len(keys), dtype=bool)
        for slice_, rows in by_slice(self.bucket_of(epoch), keys):
            held = self._buckets.get(slice_)
            if held is not None:
                wanted = keys[rows]
                at = np.minimum(np.searchsorted(held, wanted), len(held) - 1)
                found[rows] = held[at] == wanted
        return found

    def admit(self, epoch: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Record rows as counted; True where a row was not counted before.

        A key repeated within the call is new only at its first position, so a batch that
        overlaps itself is still counted once. `epoch` must be finite.
        """
        fresh = np.zeros(len(keys), dtype=bool)
        fresh[np.unique(keys, return_index=True)[1]] = True
        fresh &= ~self.contains(epoch, keys)
        if not fresh.any():
            return fresh
        slices, new = self.bucket_of(epoch)[fresh], keys[fresh]
        # A rebuild meets each slice once, with nothing held for it yet: its chunk is kept as
        # it comes, where a merge would copy it (26,000 slices of a 6 h window in 1 s slices:
        # a second of a cold start).
        for slice_, rows in by_slice(slices, new):
            seen, chunk = self._buckets.get(slice_), new[rows]
            self._buckets[slice_] = (
                chunk if seen is None else np.insert(seen, np.searchsorted(seen, chunk), chunk)
            )
        return fresh

    def count(self, bucket: int) -> int:
        return len(self._buckets.get(bucket, _EMPTY))

    def count_between(self, first: int, stop: int) -> int:
        """Rows counted in the slices first, ..., stop - 1."""
        if stop - first > len(self._buckets):  # a long stretch: walk the slices held instead
            return sum(len(k) for b, k in self._buckets.items() if first <= b < stop)
        return sum(len(self._buckets.get(b, _EMPTY)) for b in range(first, stop))

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._buckets.values())

    def forget_before(self, bucket: int) -> None:
        """Drop buckets older than `bucket`: they have left the window and are never re-read."""
        for old in [b for b in self._buckets if b < bucket]:
            del self._buckets[old]
