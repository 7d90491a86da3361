"""All monitored models of one exporter: the engine, one refresher per model, and the runner
that keeps a scrape within its deadline.

Refreshes run on a background thread, one pass over every model at a time. A scrape starts a
pass (or joins the one running) and waits for it only until its own deadline; past that it is
answered with the last good numbers while the pass goes on, bounded by the store timeouts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from threadpoolctl import threadpool_limits

from exporter.config import Config
from exporter.refresher import ModelRefresher
from exporter.sharding import Shard
from exporter.storage.baseline_store import BaselineStore
from exporter.storage.copy_pages import CopyPages
from exporter.storage.engine import create_engine

log = logging.getLogger(__name__)

# Start-up retries while the store cannot be read: quick at first, then every 30 s.
_RETRY_FIRST, _RETRY_MAX = 1.0, 30.0


class _Captures:
    """The store's count of baselines for one pass, read by the first model that asks, inside
    its own refresh: a failing store fails that model as its own query would, at no extra
    wait. After a failure the count is unknown and each model asks for its own version."""

    def __init__(self, store: BaselineStore) -> None:
        self._store = store
        self._asked = False
        self._count: int | None = None

    def count(self) -> int | None:
        if not self._asked:
            self._asked = True
            self._count = self._store.captures()
        return self._count


class MonitorService:
    """The models of `config` (those of `shard` only, when the exporter is one of several)."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.time,
        shard: Shard | None = None,
    ) -> None:
        self.config = config
        self.shard = shard
        # BLAS on the calling thread alone, for the whole process. The exporter's matrix products
        # are small (per bucket of a batch, the correlation sums' X^T X, a 45 x 45 block at most
        # in the benchmarks; PCA's projection), and its own threads (DLE's worker, the pages
        # read ahead, the sweep counts) take the other core: OpenBLAS's team of two waited at
        # its barriers, and ten folds of 10,000 rows x 45 numeric features spent 0.65-1.5 s in
        # the cross products against 0.01 s on one thread (docs/performance.md, Ingest).
        threadpool_limits(limits=1, user_api="blas")
        self.engine = create_engine(config.store.url, config.store.timeouts)
        bulk = CopyPages.for_engine(self.engine) if config.store.bulk_reads == "copy" else None
        push_down = config.store.push_down == "on" or (
            config.store.push_down == "auto" and self.engine.dialect.name == "duckdb"
        )
        self.refreshers = {
            m.model_id: ModelRefresher(
                m,
                config.exporter,
                self.engine,
                clock,
                bulk,
                push_down,
                config.store.timeouts.statement,
            )
            for m in config.models
            if shard is None or shard.owns(m.model_id)
        }
        if shard is not None:
            log.info(
                "shard %s: monitoring %d of %d models: %s",
                shard,
                len(self.refreshers),
                len(config.models),
                ", ".join(self.refreshers) or "none",
            )
        self.baselines = BaselineStore(self.engine)
        self._pass: threading.Thread | None = None
        self._pass_lock = threading.Lock()

    def _run_pass(self) -> None:
        captures = _Captures(self.baselines)
        for refresher in self.refreshers.values():
            refresher.refresh(captures=captures.count)

    def refresh_all(self, timeout: float | None = None) -> bool:
        """Refresh every model, waiting at most `timeout` seconds (None: until done).

        Concurrent callers share one pass. Returns whether the pass finished in time.
        """
        with self._pass_lock:
            if self._pass is None or not self._pass.is_alive():
                self._pass = threading.Thread(target=self._run_pass, name="refresh", daemon=True)
                self._pass.start()
            running = self._pass
        running.join(timeout)
        return not running.is_alive()

    def start_warmup(self) -> threading.Thread:
        """Build every window from the store in the background, retrying while it cannot be
        read; /-/ready answers 200 only once all are built."""

        def warm() -> None:
            started = time.perf_counter()
            delay = _RETRY_FIRST
            while True:
                self.refresh_all()
                if self.ready:
                    break
                if delay == _RETRY_FIRST:  # once; each model logs its own error once too
                    log.warning(
                        "windows not built for %s: the store could not be read; retrying until "
                        "it can (every %.0fs at most)",
                        ", ".join(self.waiting),
                        _RETRY_MAX,
                    )
                time.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
            log.info(
                "windows rebuilt for %d models in %.1fs",
                len(self.refreshers),
                time.perf_counter() - started,
            )

        thread = threading.Thread(target=warm, name="window-warmup", daemon=True)
        thread.start()
        return thread

    @property
    def waiting(self) -> list[str]:
        """Models whose window has never been built from the store (a rebuild after a new
        baseline does not count: the last good numbers are served meanwhile)."""
        return [m for m, r in self.refreshers.items() if r.report is None]

    @property
    def ready(self) -> bool:
        return not self.waiting
