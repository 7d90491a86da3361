"""The statement-deadline watchdog: deadlines fire in time order, after their time and not
before, cancelled ones never, an earlier deadline armed later wakes the sleeping thread,
however many are armed one thread serves them all, and a forked child has its own."""

from __future__ import annotations

import os
import threading
import time

from exporter.storage.watchdog import WATCHDOG, Watchdog
from tests.servers import wait_for


def test_deadlines_fire_in_order_and_cancelled_ones_never() -> None:
    watchdog = Watchdog()
    fired: list[tuple[str, float]] = []
    start = time.monotonic()

    def note(name: str):
        return lambda: fired.append((name, time.monotonic() - start))

    late = watchdog.arm(0.6, note("late"))
    cancelled = watchdog.arm(0.2, note("cancelled"))
    early = watchdog.arm(0.1, note("early"))  # earlier than what the thread sleeps towards
    cancelled.cancel()
    wait_for(lambda: len(fired) == 2, 5, "both deadlines")
    time.sleep(0.3)  # the cancelled one's time is long past
    assert [name for name, _ in fired] == ["early", "late"]
    assert fired[0][1] >= 0.1 and fired[1][1] >= 0.6
    assert early.fired.is_set() and late.fired.is_set() and not cancelled.fired.is_set()


def test_one_thread_serves_every_deadline_and_survives_a_failing_action() -> None:
    watchdog = Watchdog()
    before = threading.active_count()
    done = threading.Event()

    def fail() -> None:
        raise RuntimeError("an action that fails")

    watchdog.arm(0.05, fail)
    handles = [watchdog.arm(30, done.set) for _ in range(500)]
    assert threading.active_count() == before + 1
    for handle in handles:
        handle.cancel()
    watchdog.arm(0.1, done.set)
    assert done.wait(5)  # still firing after the failed action
    assert threading.active_count() == before + 1


def test_a_forked_child_arms_its_own_deadlines() -> None:
    """A gunicorn worker is a fork of a process that may have armed deadlines (its watchdog
    thread does not survive the fork, its lock may have been held): the child's fire."""
    WATCHDOG.arm(30, lambda: None).cancel()  # the parent's thread is running
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its own deadline fires
        fired = threading.Event()
        WATCHDOG.arm(0.05, fired.set)
        os._exit(0 if fired.wait(5) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
