"""Scrape cost with many models: 50 regression models of 50 features (45 numeric, 5 categorical)
on one shared table (`model_column`), 2,000 rows per model in the window, scraped every 15
simulated seconds, idle (no new rows) and with 200 new labelled rows per model per scrape.

    python benchmarks/many_models.py [--store-url URL] [--models 50] [--features 50] [--shards 1]

A scrape is a full GET /metrics through the app (refresh of every model, exposition). Targets
(issue 11): idle p50 <= 250 ms, active p50 <= 600 ms, on SQLite and PostgreSQL. `--shards N`
runs N exporters (`serve --shard I/N`), each in a process of its own, scraped together: the
deployment that puts more cores to work (docs/deploy.md, Scaling out).
"""

from __future__ import annotations

import datetime as dt
import gc
import multiprocessing
import resource
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from harness import Clock, machine, open_store, store_baseline, store_parser

from exporter.app import create_app
from exporter.config import Config
from exporter.service import MonitorService
from exporter.sharding import Shard

T0 = 1_800_000_000.0
STEP = 15.0  # seconds between scrapes (Prometheus' default interval)
TABLE = "shared_predictions"


def model(model_id: str, numeric: int, categorical: int) -> dict:
    return {
        "model_id": model_id,
        "kind": "regression",
        "source": {
            "table": TABLE,
            "model_column": "model_id",
            "labels": {"column": "actual", "arrival_column": "labeled_at"},
        },
        "features": {
            **{f"n{i}": "numeric" for i in range(numeric)},
            **{f"c{i}": "categorical" for i in range(categorical)},
        },
        "drift_window": {"length": "1h", "bucket": "1m"},
        "performance_window": {"length": "1h", "bucket": "5m"},
    }


def rows(
    rng: np.random.Generator,
    model_id: str,
    n: int,
    start: float,
    end: float,
    numeric: int,
    categorical: int,
    offset: int,
) -> list[dict]:
    ts = np.sort(rng.uniform(start, end, n))
    x = rng.normal(size=(n, numeric))
    cats = rng.integers(0, 6, size=(n, categorical))
    actual = x[:, :3].sum(axis=1) + rng.normal(size=n)
    prediction = actual + rng.normal(0, 0.5, n)
    out = []
    for i in range(n):
        stamp = dt.datetime.fromtimestamp(ts[i], dt.UTC).replace(tzinfo=None)
        row = {
            "prediction_id": f"{model_id}-{offset + i}",
            "model_id": model_id,
            "created_at": stamp,
            "prediction": float(prediction[i]),
            "actual": float(actual[i]),
            "labeled_at": stamp,
        }
        row |= {f"n{j}": float(x[i, j]) for j in range(numeric)}
        row |= {f"c{j}": f"v{cats[i, j]}" for j in range(categorical)}
        out.append(row)
    return out


class FullCollections:
    """Python's full (generation 2) garbage collections while it is on, and their pauses: a
    scrape that leaves many new long-lived objects sets them off (docs/performance.md)."""

    def __init__(self) -> None:
        self.count, self.seconds, self.on, self._start = 0, 0.0, False, 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if not self.on or info["generation"] != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.count += 1
            self.seconds += time.perf_counter() - self._start


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class InProcess:
    """One exporter in this process: its app's GET /metrics, the way the figures always were."""

    def __init__(self, config: Config, shard: Shard | None = None) -> None:
        self.clock = Clock(T0)
        self.service = MonitorService(config, clock=self.clock, shard=shard)
        self.client = create_app(config, self.service, warmup=False).test_client()
        started = time.perf_counter()
        self.service.start_warmup().join()
        self.rebuild = time.perf_counter() - started

    def scrape(self, now: float) -> float:
        self.clock.now = now
        start = time.perf_counter()
        # A scrape timeout long enough that the answer waits for every model's refresh.
        response = self.client.get(
            "/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "600"}
        )
        assert response.status_code == 200
        return time.perf_counter() - start

    def size(self) -> int:
        return len(self.client.get("/metrics").data)

    def totals(self) -> int:
        return sum(r.window.predictions_total for r in self.service.refreshers.values())


def shard_process(config: Config, shard: Shard, pipe: Connection) -> None:
    """A shard's exporter in a process of its own (`--shards`): it scrapes when told to, at the
    time it is told, and answers with the seconds the scrape took."""
    exporter = InProcess(config, shard)
    pipe.send((exporter.rebuild, rss_mb()))
    while (now := pipe.recv()) is not None:
        pipe.send(exporter.scrape(now))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pipe.send((exporter.size(), exporter.totals(), rss_mb(), peak))


class Shards:
    """`count` exporters, each `serve --shard I/N` of the same config in a process of its own,
    scraped at the same moment as Prometheus scrapes its targets; a scrape's figure is the
    slowest shard's (each target's own latency is at most that)."""

    def __init__(self, config: Config, count: int) -> None:
        context = multiprocessing.get_context("spawn")  # no engine or thread of ours inherited
        self.pipes, self.processes = [], []
        for index in range(1, count + 1):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=shard_process, args=(config, Shard(index, count), theirs)
            )
            process.start()
            self.pipes.append(ours)
            self.processes.append(process)
        started = [pipe.recv() for pipe in self.pipes]
        self.rebuild = max(rebuild for rebuild, _ in started)
        self.rss_before = sum(rss for _, rss in started)

    def scrape(self, now: float) -> float:
        for pipe in self.pipes:
            pipe.send(now)
        return max(pipe.recv() for pipe in self.pipes)

    def finish(self) -> tuple[int, int, float, float]:
        """Exposition bytes, window rows, RSS at the end and peak, summed over the shards."""
        for pipe in self.pipes:
            pipe.send(None)
        answers = [pipe.recv() for pipe in self.pipes]
        for process in self.processes:
            process.join()
        return tuple(sum(a[k] for a in answers) for k in range(4))  # type: ignore[return-value]


def main() -> None:
    parser = store_parser(__doc__)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--scrapes", type=int, default=12)
    parser.add_argument(
        "--shards",
        type=int,
        default=1,
        help="exporters, each `serve --shard I/N` in a process of its own (default: one, here)",
    )
    args = parser.parse_args()
    categorical = min(5, args.features // 10)
    numeric = args.features - categorical
    print(f"{machine()}; {args.models} models x {args.features} features; {args.shards} shard(s)")
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        ids = [f"m{i:02d}" for i in range(args.models)]
        config, engine = open_store(url, [model(m, numeric, categorical) for m in ids])
        table = sa.Table(TABLE, sa.MetaData(), autoload_with=engine)
        rng = np.random.default_rng(0)
        with engine.begin() as conn:
            for m in ids:
                conn.execute(
                    sa.insert(table),
                    rows(rng, m, 1000, T0 - 7200, T0 - 3600, numeric, categorical, 0),
                )
                conn.execute(
                    sa.insert(table),
                    rows(rng, m, 2000, T0 - 3600, T0 - 1, numeric, categorical, 1000),
                )
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        for spec in config.models:
            store_baseline(engine, spec, T0 - 7200, T0 - 3600)
        exporter = InProcess(config) if args.shards == 1 else Shards(config, args.shards)
        before = rss_mb() if args.shards == 1 else exporter.rss_before
        now = T0

        def scrape() -> float:
            nonlocal now
            now += STEP
            return exporter.scrape(now)

        scrape()  # the first scrape after the rebuild
        idle = [scrape() for _ in range(args.scrapes)]
        active, offset = [], 3000
        collections = FullCollections()
        for _ in range(args.scrapes):
            new = [
                r
                for m in ids
                for r in rows(rng, m, 200, now, now + STEP - 1, numeric, categorical, offset)
            ]
            offset += 200
            with engine.begin() as conn:
                conn.execute(sa.insert(table), new)
            collections.on = True
            active.append(scrape())
            collections.on = False
        if isinstance(exporter, InProcess):
            size, totals = exporter.size(), exporter.totals()
            reports = [r.report for r in exporter.service.refreshers.values()]
            drifted = sum(bool(r.multivariate and r.multivariate.detected) for r in reports)
            end, peak = rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        else:
            size, totals, end, peak = exporter.finish()
        assert totals == args.scrapes * 200 * args.models, totals
        engine.dispose()

    def figures(values: list[float]) -> str:
        values = sorted(values)
        return (
            f"p50 {statistics.median(values) * 1000:7.1f} ms, "
            f"p90 {values[int(len(values) * 0.9)] * 1000:7.1f} ms"
        )

    store = engine.dialect.name
    print(f"store {store}: start-up rebuild {exporter.rebuild:.1f} s; /metrics {size / 1e6:.1f} MB")
    slowest = " (the slowest shard's)" if args.shards > 1 else ""
    print(f"idle scrape:   {figures(idle)}{slowest}")
    print(f"active scrape: {figures(active)} (200 new rows per model){slowest}")
    if isinstance(exporter, InProcess):
        print(
            f"full garbage collections during the active scrapes: {collections.count} "
            f"({collections.seconds * 1000:.0f} ms in all)"
        )
        print(f"models with multivariate drift (none drifted): {drifted} of {args.models}")
    print(
        f"RSS after the rebuild {before:.0f} MB, at the end {end:.0f} MB, peak {peak:.0f} MB"
        + (" (all shards)" if args.shards > 1 else "")
    )


if __name__ == "__main__":
    main()
