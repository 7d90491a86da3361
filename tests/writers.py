"""Writer processes for the concurrency tests: `python -m tests.writers logger|slow-commit ...`.

`logger` logs through the project's PredictionLogger with its default batching (flush every
second), at a fixed rate. `slow-commit` stamps its rows with the current time, inserts them,
then keeps its transaction open a random 0-3 s before committing: rows whose commit comes long
after rows stamped later, which a read by time position alone would skip.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import threading
import time
import uuid

import numpy as np
import sqlalchemy as sa

from exporter.config import Config, parse_config
from exporter.logging.prediction_logger import PredictionLogger


def _config(url: str, model: dict) -> Config:
    return parse_config({"store": {"url": url}, "models": [model]})


def run_logger(url: str, model: dict, seconds: float, rate: float, seed: int) -> int:
    rng = np.random.default_rng(seed)
    sent = 0
    with PredictionLogger(_config(url, model)) as logger:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) + 1
            for _ in range(due - sent):
                logger.log_prediction(
                    model["model_id"],
                    {"x1": float(rng.normal()), "x2": float(rng.exponential(2)), "color": "red"},
                    float(rng.normal(3, 1)),
                    attributes={"tier": "gold"},
                )
            sent = due
            time.sleep(0.004)
    return sent


def run_slow_commits(url: str, model: dict, seconds: float, threads: int, seed: int) -> None:
    engine = sa.create_engine(url)
    table = sa.Table(model["source"]["table"], sa.MetaData(), autoload_with=engine)
    stop = time.monotonic() + seconds

    def writer(k: int) -> None:
        rnd = random.Random(seed * 100 + k)
        while time.monotonic() < stop:
            with engine.begin() as conn:
                now = time.time()
                rows = [
                    {
                        "prediction_id": uuid.uuid4().hex,
                        "created_at": _utc(now + i * 1e-3),
                        "prediction": rnd.gauss(3, 1),
                        "x1": rnd.gauss(0, 1),
                        "x2": rnd.expovariate(0.5),
                        "color": "blue",
                        "tier": "silver",
                    }
                    for i in range(10)
                ]
                conn.execute(table.insert(), rows)
                time.sleep(rnd.uniform(0, 3))  # the transaction stays open after stamping

    workers = [threading.Thread(target=writer, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["logger", "slow-commit"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True, help="the model's config as JSON")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--rate", type=float, default=250.0)
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = json.loads(args.model)
    if args.mode == "logger":
        run_logger(args.url, model, args.seconds, args.rate, args.seed)
    else:
        run_slow_commits(args.url, model, args.seconds, args.threads, args.seed)


if __name__ == "__main__":
    main()
