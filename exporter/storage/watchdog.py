"""One thread for every statement deadline of the process.

Every statement the exporter sends is armed with a client-side deadline (`storage/engine.py`).
A `threading.Timer` per statement meant a thread started and torn down per statement: 400 of
them per scrape for 50 models. The watchdog keeps the deadlines in a heap and one daemon thread
sleeps until the earliest, so arming is a heap push and cancelling a flag.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Deadline:
    """One armed deadline: `fired` is set (before `action` runs) when it passed uncancelled."""

    action: Callable[[], None]
    seconds: float  # as armed, for the error that says how long was waited
    fired: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False

    def cancel(self) -> None:
        """Stop it from firing; as with a Timer, a deadline already firing still fires."""
        self.cancelled = True


class Watchdog:
    def __init__(self) -> None:
        self._order = itertools.count()  # ties in time fire in arming order
        self._reset()

    def _reset(self) -> None:
        """Empty, without a thread: also what a forked child (a gunicorn worker) starts from,
        since the parent's thread is not there and its lock may have been held at the fork.
        The parent's deadlines guard the parent's connections, not the child's."""
        self._wake = threading.Condition()
        self._due: list[tuple[float, int, Deadline]] = []
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, action: Callable[[], None]) -> Deadline:
        deadline = Deadline(action, seconds)
        with self._wake:
            entry = (time.monotonic() + seconds, next(self._order), deadline)
            heapq.heappush(self._due, entry)
            if self._thread is None:  # first use (in this process)
                self._thread = threading.Thread(
                    target=self._run, name="store-deadlines", daemon=True
                )
                self._thread.start()
            elif self._due[0] is entry:
                self._wake.notify()  # earlier than what the thread sleeps towards
        return deadline

    def _next(self) -> Deadline:
        """Block until a deadline passes uncancelled; take it off the heap."""
        with self._wake:
            while True:
                while self._due and self._due[0][2].cancelled:
                    heapq.heappop(self._due)
                if not self._due:
                    self._wake.wait()
                    continue
                wait = self._due[0][0] - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                deadline = heapq.heappop(self._due)[2]
                deadline.fired.set()
                return deadline

    def _run(self) -> None:
        while True:
            deadline = self._next()
            try:  # outside the lock: breaking a connection may take a moment
                deadline.action()
            except Exception:  # one failed action must not end every later deadline
                log.exception("store deadline action failed")


WATCHDOG = Watchdog()
os.register_at_fork(after_in_child=WATCHDOG._reset)
