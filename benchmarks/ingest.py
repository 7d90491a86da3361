"""Ingest ceiling: how many new rows per second one exporter reads and folds for a 50-feature
model (45 numeric, 5 categorical, labels in the same table), and whether scrapes at a steady
rate below it keep up (lag 0, each refresh shorter than the scrape interval).

    python benchmarks/ingest.py [--store-url URL] [--backlog 200000] [--interval 5]

Ceiling: one refresh reading a backlog of `--backlog` rows. Steady: scrapes every `--interval`
simulated seconds, each after that interval's rows were written (at 50% and 80% of the ceiling,
and at the target rate): the refresh's wall time must stay under the interval, and the lag at
0, for the exporter to keep up in real time. Target (issue 11): 50,000 rows/s sustained.
"""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from harness import Clock, machine, open_store, store_baseline, store_parser

from exporter.service import MonitorService

T0 = 1_800_000_000.0
TARGET = 50_000  # rows/s kept up with (issue 11)
NUMERIC, CATEGORICAL = 45, 5
MODEL = {
    "model_id": "wide",
    "kind": "regression",
    "source": {
        "table": "wide_predictions",
        "labels": {"column": "actual", "arrival_column": "labeled_at"},
    },
    "features": {
        **{f"n{i}": "numeric" for i in range(NUMERIC)},
        **{f"c{i}": "categorical" for i in range(CATEGORICAL)},
    },
    "drift_window": {"length": "1h", "bucket": "1m"},
    "performance_window": {"length": "1h", "bucket": "5m"},
}


def write(engine: sa.Engine, table: sa.Table, rng, n: int, start: float, end: float, offset: int):
    """`n` rows with times in [start, end), inserted in chunks through the driver."""
    ts = np.sort(rng.uniform(start, end, n))
    x = rng.normal(size=(n, NUMERIC))
    cats = rng.integers(0, 6, size=(n, CATEGORICAL))
    actual = x[:, :3].sum(axis=1) + rng.normal(size=n)
    prediction = actual + rng.normal(0, 0.5, n)
    stamps = [dt.datetime.fromtimestamp(t, dt.UTC).replace(tzinfo=None) for t in ts]
    names = [f"n{j}" for j in range(NUMERIC)] + [f"c{j}" for j in range(CATEGORICAL)]
    rows = [
        {
            "prediction_id": f"p{offset + i}",
            "created_at": stamps[i],
            "prediction": float(prediction[i]),
            "actual": float(actual[i]),
            "labeled_at": stamps[i],
            **dict(zip(names, [*x[i].tolist(), *(f"v{c}" for c in cats[i])], strict=True)),
        }
        for i in range(n)
    ]
    with engine.begin() as conn:
        for i in range(0, n, 20_000):
            conn.execute(sa.insert(table), rows[i : i + 20_000])


def main() -> None:
    parser = store_parser(__doc__)
    parser.add_argument("--backlog", type=int, default=200_000)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--scrapes", type=int, default=6)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        config, engine = open_store(url, [MODEL])
        table = sa.Table("wide_predictions", sa.MetaData(), autoload_with=engine)
        rng = np.random.default_rng(0)
        write(engine, table, rng, 5_000, T0 - 7200, T0 - 3600, 0)
        store_baseline(engine, config.models[0], T0 - 7200, T0 - 3600)
        clock = Clock(T0 - 1800)
        service = MonitorService(config, clock=clock)
        service.start_warmup().join()
        refresher = service.refreshers["wide"]

        # Ceiling: a backlog in the last half hour, read by one refresh.
        write(engine, table, rng, args.backlog, clock.now, clock.now + 1700, 5_000)
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        clock.now += 1800
        started = time.perf_counter()
        refresher.refresh()
        seconds = time.perf_counter() - started
        assert refresher.window.predictions_total == args.backlog
        ceiling = args.backlog / seconds
        print(
            f"store {engine.dialect.name}: ceiling {ceiling:,.0f} rows/s "
            f"({args.backlog:,} rows read and folded in {seconds:.1f} s)"
        )

        offset = 5_000 + args.backlog
        for rate in (0.5 * ceiling, 0.8 * ceiling, TARGET):
            n = int(rate * args.interval)
            durations, lags = [], []
            for _ in range(args.scrapes):
                write(engine, table, rng, n, clock.now, clock.now + args.interval, offset)
                offset += n
                clock.now += args.interval + 0.01
                started = time.perf_counter()
                refresher.refresh()
                durations.append(time.perf_counter() - started)
                lags.append(refresher.status.lag_seconds)
            keeps_up = max(durations) < args.interval and max(lags) == 0.0
            print(
                f"steady {rate:,.0f} rows/s ({rate / ceiling:.0%} of the ceiling), a scrape every "
                f"{args.interval:g} s: refresh p50 {statistics.median(durations):.2f} s, "
                f"max {max(durations):.2f} s, max lag {max(lags):.0f} s: "
                f"{'keeps up' if keeps_up else 'falls behind'}"
            )
        engine.dispose()


if __name__ == "__main__":
    main()
