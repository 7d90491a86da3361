"""What DLE predicted for each prediction, kept until its label comes.

A label read apart from its prediction (its own arrival time, or its own table) needs the
expected absolute error of that prediction, the same inputs through the same trees the
prediction's fold already ran. Predicting it again was a third of DLE's work in a rebuild
(docs/performance.md); the memo keeps each folded prediction's value by performance bucket and
row key, 16 bytes a row of the performance window, and lets go of a bucket when it leaves the
window. A label whose prediction it does not hold (folded before the memo existed, by another
baseline, or read before its prediction) is predicted as before. Pure numpy.
"""

from __future__ import annotations

import numpy as np

from exporter.ledger import by_slice


class LossMemo:
    """Expected absolute errors by (bucket, 64-bit row key).

    Each bucket holds the chunks its batches gave, each sorted by key: one or two pages of a
    rebuild, one per scrape that read rows of it live (twenty for a 5 min bucket scraped every
    15 s), so a lookup is a `searchsorted` per chunk and nothing is ever merged.
    """

    def __init__(self) -> None:
        self._chunks: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}

    def keep(self, buckets: np.ndarray, keys: np.ndarray, values: np.ndarray) -> None:
        for bucket, rows in by_slice(buckets, keys):
            self._chunks.setdefault(bucket, []).append((keys[rows], values[rows]))

    def take(self, buckets: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """The value kept for each row; NaN where none is (DLE's values are never NaN)."""
        out = np.full(len(keys), np.nan)
        for bucket, rows in by_slice(buckets, keys):
            wanted = keys[rows]
            for held, values in self._chunks.get(bucket, ()):
                at = np.minimum(np.searchsorted(held, wanted), len(held) - 1)
                hit = held[at] == wanted
                out[rows[hit]] = values[at[hit]]
        return out

    def forget_before(self, bucket: int) -> None:
        for old in [b for b in self._chunks if b < bucket]:
            del self._chunks[old]

    def __len__(self) -> int:
        return sum(len(keys) for chunks in self._chunks.values() for keys, _ in chunks)
