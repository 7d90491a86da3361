"""Cost of reconciliation, the check behind "every row exactly once", against window size.

    python benchmarks/reconcile.py [--store-url URL] [--sizes 10000,1000000]

For each window size: fill the store (the model of benchmarks/scrape.py), rebuild the window,
then time (a) a whole-window reconciliation that finds nothing missing (the sweep that the
refreshes of one `reconcile_interval` share), (b) the per-refresh look behind the read position
(`late_rows_lookback`), and (c) a whole-window reconciliation after 1,000 rows were back-filled
at random times across the window, which must find and count exactly those 1,000. Pass an
empty database per size with --store-url (PostgreSQL: a fresh schema in the URL's search_path).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import Clock, machine, open_store, store_parser
from scrape import MODEL, T0, analyze, insert, rows

from exporter.service import MonitorService

BACKFILL = 1_000


def measure(store_url: str, window_rows: int, repeats: int) -> dict[str, float]:
    config, engine = open_store(store_url, [MODEL])
    rng = np.random.default_rng(0)
    preds, labels = rows(rng, window_rows, T0 - 5 * 3600, T0 - 1, 0)
    insert(engine, preds, labels)
    analyze(engine)
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    refresher = service.refreshers["bench"]
    refresher.refresh()  # the rebuild
    stream = refresher._predictions
    assert stream is not None

    def timed(full: bool) -> float:
        # A whole sweep in one refresh (as when a refresh comes reconcile_interval after the
        # last), or only the look behind the read position (a refresh right after another).
        stream.sweep, stream.swept_at = None, None if full else clock.now
        started = time.perf_counter()
        refresher._reconcile(stream, clock.now)
        return time.perf_counter() - started

    full = statistics.median(timed(True) for _ in range(repeats))
    lookback = statistics.median(timed(False) for _ in range(repeats))
    preds, labels = rows(rng, BACKFILL, T0 - 5 * 3600, T0 - 1, window_rows)
    insert(engine, preds, labels)
    repair = timed(True)
    assert refresher.status.late_rows["predictions"] == BACKFILL
    engine.dispose()
    service.engine.dispose()
    return {"full": full, "lookback": lookback, "repair": repair}


def main() -> None:
    parser = store_parser(__doc__)
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            url = args.store_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
            r = measure(url, size, args.repeats)
        print(
            f"window {size:>9,} rows: whole-window check {r['full'] * 1000:7.1f} ms; "
            f"look-behind {r['lookback'] * 1000:6.1f} ms; "
            f"finding {BACKFILL:,} back-filled rows {r['repair'] * 1000:7.1f} ms"
        )


if __name__ == "__main__":
    main()
