"""Push-down against the row route: the drift sums of a whole window, computed by the database
(`storage/push_down.drift_sums_in_parts`) or read, parsed and folded by the exporter, per store.

    python benchmarks/push_down.py [--store-url URL] [--rows 20000] [--hours 6]

The model is cold_start.py's (20 numeric and 5 categorical features, a window of `--hours` in
1 min buckets) with estimation and multivariate drift off, which the push-down cannot do. The
row route is what a rebuild does for the drift ring: keyset pages of 50,000 rows (on PostgreSQL
by COPY), `parse_rows`, `fold_drift`; the push-down route is one snapshot of grouped sums. Both
are timed on the same filled table, twice each in turn (best kept), and their buckets compared
(1e-9). A DuckDB URL (`duckdb:///file`) is filled through DuckDB's own insert of a frame.
The default size is small: PostgreSQL's push-down of a million rows takes minutes
(docs/performance.md).
"""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from cold_start import CATEGORICAL, MODEL, NUMERIC, T0
from harness import machine, open_store, store_parser
from scrape import analyze

from exporter.baseline import Baseline
from exporter.config import StoreTimeouts
from exporter.rows import parse_rows
from exporter.storage.baseline_store import BaselineStore, read_range
from exporter.storage.copy_pages import CopyPages
from exporter.storage.engine import create_engine, snapshot
from exporter.storage.prediction_store import TS, Cursor, ModelSource, Span
from exporter.storage.push_down import FIRST_PART_ROWS, drift_sums_in_parts
from exporter.sufficient_stats import drift_layout, fold_drift
from exporter.window import capture_baseline

PUSHED = {**MODEL, "estimation": {"enabled": False}, "multivariate": {"enabled": False}}
PAGE = 50_000
WIDTH = 60


def fill(engine: sa.Engine, rng: np.random.Generator, n: int, start: float, end: float) -> None:
    """`n` rows with times in [start, end), as frames of 100,000 rows."""
    names = [f"n{j}" for j in range(NUMERIC)] + [f"c{j}" for j in range(CATEGORICAL)]
    for first in range(0, n, 100_000):
        m = min(100_000, n - first)
        ts = start + (end - start) * (first + np.sort(rng.uniform(0, m, m))) / n
        frame = pd.DataFrame(rng.normal(size=(m, NUMERIC)), columns=names[:NUMERIC])
        for j in range(CATEGORICAL):
            frame[f"c{j}"] = np.char.add("v", rng.integers(0, 8, m).astype(str))
        frame.insert(0, "prediction_id", [f"p{int(start)}-{first + i}" for i in range(m)])
        frame.insert(1, "created_at", pd.to_datetime(ts, unit="s"))
        frame.insert(2, "prediction", frame["n0"] + rng.normal(0, 0.5, m))
        if engine.dialect.name == "duckdb":
            with engine.begin() as conn:
                duck = conn.connection.driver_connection
                duck.register("chunk", frame)
                duck.execute("INSERT INTO cold_predictions BY NAME SELECT * FROM chunk")
                duck.unregister("chunk")
        else:
            frame.to_sql("cold_predictions", engine, if_exists="append", index=False)


def by_rows(source: ModelSource, layout, baseline: Baseline, span: Span) -> dict[int, np.ndarray]:
    """The row route: keyset pages, parsed and folded by bucket."""
    out: dict[int, np.ndarray] = {}
    time_format = source.time_format("predictions")
    page = span
    while True:
        frame = source.read_predictions(page, PAGE, bulk=page.after is not None)
        if frame.empty:
            return out
        epoch = time_format.to_epoch(frame[TS])
        rows, _ = parse_rows(frame, source.model, epoch)
        acc = fold_drift(layout, source.model, baseline, rows, (rows.ts // WIDTH).astype(int))
        for bucket, vector in zip(acc.buckets.tolist(), acc.matrix, strict=True):
            out[bucket] = out[bucket] + vector if bucket in out else vector
        if len(frame) < PAGE:
            return out
        last = frame.iloc[-1]
        page = Span(span.start, span.until, after=Cursor(last[TS], last["id"]))


def pushed(
    source: ModelSource, layout, baseline: Baseline, span: Span, first: int | None = None
) -> dict[int, np.ndarray]:
    """The push-down route in parts, as the refresher sums with the default statement
    timeout (5 s)."""
    with snapshot(source.engine) as conn:
        sums, _ = drift_sums_in_parts(source, layout, baseline, WIDTH, span, conn, 5.0, first)
    assert not sums.left_ids  # the filled table has no untyped values
    return dict(zip(sums.buckets.tolist(), sums.matrix, strict=True))


def main() -> None:
    parser = store_parser(__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument(
        "--first-part",
        type=int,
        default=FIRST_PART_ROWS,
        help="rows of the push-down's first part (the next are sized by its rate)",
    )
    parser.add_argument(
        "--hours",
        type=int,
        default=6,
        help="window length in hours of 1 min buckets: the push-down sends about 2,700 sums a "
        "bucket whatever its rows, the row route every row",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        window = args.hours * 3600.0
        model = PUSHED | {"drift_window": {"length": f"{args.hours}h", "bucket": "1m"}}
        config, engine = open_store(url, [model])
        model = config.models[0]
        rng = np.random.default_rng(0)
        t_fill = time.perf_counter()
        reference = (T0 - window - 3600, T0 - window - 60)
        fill(engine, rng, 5_000, *reference)
        fill(engine, rng, args.rows, T0 - window + 600, T0 - 120)
        analyze(engine)
        seconds = time.perf_counter() - t_fill
        print(f"store {engine.dialect.name}: {args.rows:,} rows filled in {seconds:.0f} s")
        frame, ts = read_range(engine, model, *reference)
        baseline = capture_baseline(model, parse_rows(frame, model, ts)[0])
        BaselineStore(engine).save(baseline, "benchmark", "benchmarks/")
        engine.dispose()
        # One long statement a route here: the exporter bounds each at store.timeouts.statement.
        engine = create_engine(url, StoreTimeouts(statement=3600))
        source = ModelSource(engine, model, bulk=CopyPages.for_engine(engine))
        layout = drift_layout(model, baseline)
        span = Span(T0 - window, T0)
        best: dict[str, float] = {}
        results = {}
        for _ in range(2):
            routes = (("rows", by_rows), ("push-down", partial(pushed, first=args.first_part)))
            for route, run in routes:
                started = time.perf_counter()
                results[route] = run(source, layout, baseline, span)
                seconds = time.perf_counter() - started
                best[route] = min(best.get(route, seconds), seconds)
        assert sorted(results["rows"]) == sorted(results["push-down"])
        for bucket, vector in results["rows"].items():
            np.testing.assert_allclose(results["push-down"][bucket], vector, rtol=1e-9, atol=1e-8)
        for route, seconds in best.items():
            print(
                f"drift sums by {route} ({engine.dialect.name}, {args.hours} h window): "
                f"{args.rows / seconds:,.0f} rows/s ({args.rows:,} rows in {seconds:.2f} s, "
                "best of 2)"
            )
        print("buckets equal (1e-9)")
        engine.dispose()


if __name__ == "__main__":
    main()
