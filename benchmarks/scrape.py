"""Scrape cost against window size: 2,000 new predictions (and 2,000 labels) per scrape, over a
window of 10,000 rows and one of 1,000,000 rows. The design promises the cost does not grow with
the window (issue 11's target: large <= 1.2 x small, medians of several scrapes in one run).

    python benchmarks/scrape.py [--store-url URL] [--scrapes 9] [--history 9000000] [--fresh]

A scrape here is a full GET /metrics through the Flask app: refresh (SQL reads, fold, report)
plus exposition. The clock is simulated so that every scrape sees exactly its 2,000 new rows.
Each window size is a model with tables of its own on the same store, served by an exporter of
its own, and their scrapes take turns, so every size is timed over the same minutes.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from harness import Clock, machine, open_store, store_baseline, store_parser

from exporter.app import create_app
from exporter.service import MonitorService

NEW_ROWS = 2_000
REFERENCE_ROWS = 5_000
TARGET = 1.2  # issue 11: 1M-row scrape median over the 10k-row one
T0 = 1_800_000_000.0
MODEL = {
    "model_id": "bench",
    "kind": "regression",
    "source": {
        "table": "bench_predictions",
        "latency_column": "latency_seconds",
        "labels": {"table": "bench_labels", "column": "actual", "arrival_column": "labeled_at"},
    },
    "features": {
        "f1": "numeric",
        "f2": "numeric",
        "f3": "numeric",
        "f4": "numeric",
        "c1": "categorical",
        "c2": "categorical",
    },
    "segments": [{"column": "tier", "values": ["a", "b", "c"]}],
    "drift_window": {"length": "6h", "bucket": "1m"},
    "performance_window": {"length": "6h", "bucket": "5m"},
}


def rows(
    rng: np.random.Generator, n: int, start: float, end: float, offset: int
) -> tuple[list[dict], list[dict]]:
    ts = np.sort(rng.uniform(start, end, n))
    f = rng.normal(size=(n, 4))
    c1 = rng.choice(["x", "y", "z", "w"], n)
    c2 = rng.choice([f"k{i}" for i in range(12)], n)
    tier = rng.choice(["a", "b", "c"], n)
    actual = f @ np.array([1.0, 2.0, -1.0, 0.5]) + rng.normal(size=n)
    prediction = actual + rng.normal(0, 0.5, n)
    created = [time_of(t) for t in ts]
    preds = [
        {
            "prediction_id": f"p{offset + i}",
            "created_at": created[i],
            "prediction": float(prediction[i]),
            "latency_seconds": 0.02,
            "f1": float(f[i, 0]),
            "f2": float(f[i, 1]),
            "f3": float(f[i, 2]),
            "f4": float(f[i, 3]),
            "c1": str(c1[i]),
            "c2": str(c2[i]),
            "tier": str(tier[i]),
        }
        for i in range(n)
    ]
    labels = [
        {"prediction_id": f"p{offset + i}", "actual": float(actual[i]), "labeled_at": created[i]}
        for i in range(n)
    ]
    return preds, labels


def time_of(epoch: float):
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None)


def insert(engine: sa.Engine, preds: list[dict], labels: list[dict], model: dict = MODEL) -> None:
    meta = sa.MetaData()
    p = sa.Table(model["source"]["table"], meta, autoload_with=engine)
    lab = sa.Table(model["source"]["labels"]["table"], meta, autoload_with=engine)
    with engine.begin() as conn:
        for i in range(0, len(preds), 50_000):
            conn.execute(sa.insert(p), preds[i : i + 50_000])
            conn.execute(sa.insert(lab), labels[i : i + 50_000])


def model_for(rows: int) -> dict:
    """MODEL with tables of its own, for the window of `rows` rows."""
    name = f"w{rows}"
    source = MODEL["source"]
    return MODEL | {
        "model_id": name,
        "source": source
        | {
            "table": f"{name}_predictions",
            "labels": source["labels"] | {"table": f"{name}_labels"},
        },
    }


def analyze(engine: sa.Engine) -> None:
    """The table as autovacuum leaves it after the bulk fill: since PostgreSQL 13 inserts alone
    trigger a vacuum (which marks pages all-visible, so index-only counts skip the heap) and an
    analyze (statistics; without them PostgreSQL estimates a keyset range at a few hundred rows,
    docs/performance.md). `--fresh` measures the table before either has run."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")


@dataclass
class Window:
    """One window size's model, its own exporter (service and clock) and what was timed."""

    rows: int
    model: dict
    rng: np.random.Generator
    service: MonitorService | None = None
    client: Any = None
    clock: Clock = field(default_factory=lambda: Clock(T0))
    fill: float = 0.0
    rebuild: float = 0.0
    durations: list[float] = field(default_factory=list)

    def scrape(self, engine: sa.Engine) -> None:
        """Write the next 2,000 predictions and labels, then time one GET /metrics."""
        offset = self.rows + len(self.durations) * NEW_ROWS
        preds, labels = rows(self.rng, NEW_ROWS, self.clock.now, self.clock.now + 10, offset)
        insert(engine, preds, labels, self.model)
        self.clock.now += 11
        start = time.perf_counter()
        response = self.client.get("/metrics")
        self.durations.append(time.perf_counter() - start)
        assert response.status_code == 200


def measure(
    store_url: str, sizes: list[int], scrapes: int, history: int = 0, fresh: bool = False
) -> list[Window]:
    """Each window size as a model of its own on one store, then their scrapes in turn, so
    every size is timed over the same minutes of this machine (separate runs minutes apart
    differed by 15-30% here). `history`: rows older than each window (a table that has been
    logging for long); `fresh`: no VACUUM ANALYZE after the fill."""
    windows = [Window(n, model_for(n), np.random.default_rng(n)) for n in sizes]
    config, engine = open_store(store_url, [w.model for w in windows], batch_rows=10_000)
    # The same baseline at every window size, from rows just before the window: taken from the
    # window's first minutes, a 10,000-row window gave too few labels for the loss models
    # (`estimation.min_reference_labels`), so its scrapes skipped the DLE work the larger did.
    reference = (T0 - 6 * 3600 - 1800, T0 - 6 * 3600 - 60)
    for w in windows:
        t_fill = time.perf_counter()
        for start in range(0, history, 500_000):  # a day and more before the 6 h window
            n = min(500_000, history - start)
            preds, labels = rows(w.rng, n, T0 - 30 * 3600, T0 - 7 * 3600, 1_000_000_000 + start)
            insert(engine, preds, labels, w.model)
        preds, labels = rows(w.rng, REFERENCE_ROWS, *reference, 2_000_000_000)
        insert(engine, preds, labels, w.model)
        preds, labels = rows(w.rng, w.rows, T0 - 5 * 3600, T0 - 1, 0)
        insert(engine, preds, labels, w.model)
        w.fill = time.perf_counter() - t_fill
    if not fresh:
        analyze(engine)
    for w, spec in zip(windows, config.models, strict=True):
        store_baseline(engine, spec, *reference)
        own = config.model_copy(update={"models": [spec]})
        w.service = MonitorService(own, clock=w.clock)
        w.client = create_app(own, w.service, warmup=False).test_client()
        t_rebuild = time.perf_counter()
        w.service.start_warmup().join()
        w.rebuild = time.perf_counter() - t_rebuild
        assert w.service.refreshers[spec.model_id].report.window_predictions == w.rows
    for _ in range(scrapes):
        for w in windows:
            w.scrape(engine)
    for w, spec in zip(windows, config.models, strict=True):
        window = w.service.refreshers[spec.model_id].window
        assert window.predictions_total == scrapes * NEW_ROWS
        w.service.engine.dispose()
    engine.dispose()
    return windows


def main() -> None:
    parser = store_parser(__doc__)
    parser.add_argument("--scrapes", type=int, default=9)
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument(
        "--history", type=int, default=0, help="rows older than the window, e.g. 9000000"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="no VACUUM ANALYZE after the fill (PostgreSQL)"
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        windows = measure(url, sizes, args.scrapes, args.history, args.fresh)
    for w in windows:
        print(
            f"window {w.rows:>9,} rows: scrape median {statistics.median(w.durations) * 1000:7.1f} "
            f"ms (min {min(w.durations) * 1000:.1f}, max {max(w.durations) * 1000:.1f}); "
            f"start-up rebuild {w.rebuild:.1f} s; fill {w.fill:.1f} s"
        )
    small, large = windows[0], windows[-1]
    ratio = statistics.median(large.durations) / statistics.median(small.durations)
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(
        f"ratio {large.rows:,} / {small.rows:,} rows: {ratio:.2f} (target <= {TARGET}): "
        f"{verdict} (scraped in turn)"
    )


if __name__ == "__main__":
    main()
