"""All monitored models of one exporter: the engine, one refresher per model, warm-up."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from exporter.config import Config
from exporter.refresher import ModelRefresher
from exporter.storage.prediction_store import create_engine

log = logging.getLogger(__name__)


class MonitorService:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.engine = create_engine(config.store.url)
        self.refreshers = {
            m.model_id: ModelRefresher(m, config.exporter, self.engine, clock)
            for m in config.models
        }
        self._warmed = threading.Event()

    def refresh_all(self, wait: float = 10.0) -> None:
        for refresher in self.refreshers.values():
            refresher.refresh(wait)

    def start_warmup(self) -> threading.Thread:
        """Rebuild every window from the store in the background; /-/ready waits for it."""

        def warm() -> None:
            started = time.perf_counter()
            self.refresh_all(wait=3600)
            self._warmed.set()
            log.info(
                "windows rebuilt for %d models in %.1fs",
                len(self.refreshers),
                time.perf_counter() - started,
            )

        thread = threading.Thread(target=warm, name="window-warmup", daemon=True)
        thread.start()
        return thread

    @property
    def ready(self) -> bool:
        return self._warmed.is_set()
