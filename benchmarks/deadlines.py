"""What a statement's client-side deadline costs: one `threading.Timer` per statement (what
`storage/engine.py` armed before) against the shared watchdog (`storage/watchdog.py`), armed and
cancelled as a statement that answers in time does; and a trivial SQLite statement through the
project's engine, deadline included, for scale.

    python benchmarks/deadlines.py [--statements 5000]
"""

from __future__ import annotations

import argparse
import threading
import time

import sqlalchemy as sa
from harness import machine

from exporter.storage.engine import create_engine
from exporter.storage.watchdog import Watchdog


def per_call(n: int, call: object) -> float:
    """Microseconds per call of `call`, over `n` calls."""
    start = time.perf_counter()
    for _ in range(n):
        call()  # type: ignore[operator]
    return (time.perf_counter() - start) / n * 1e6


def timer() -> None:
    armed = threading.Timer(31, lambda: None)
    armed.daemon = True
    armed.start()
    armed.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--statements", type=int, default=5000)
    n = parser.parse_args().statements
    print(machine())
    watchdog = Watchdog()
    print(f"threading.Timer per statement: {per_call(n, timer):7.1f} us arm + cancel")
    shared = per_call(n, lambda: watchdog.arm(31, lambda: None).cancel())
    print(f"shared watchdog:               {shared:7.1f} us arm + cancel")
    with create_engine("sqlite://").connect() as conn:
        statement = sa.text("select 1")
        cost = per_call(n, lambda: conn.execute(statement).fetchall())
        print(f"SELECT 1 on SQLite through the engine, deadline included: {cost:.1f} us")


if __name__ == "__main__":
    main()
