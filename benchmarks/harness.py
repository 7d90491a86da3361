"""What the store benchmarks share: a settable clock, the machine line they print, their
--store-url, a store with the project's schema for a set of models, and a baseline captured from
a time range of it."""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

import sqlalchemy as sa

from exporter.config import Config, ModelConfig, parse_config
from exporter.rows import parse_rows
from exporter.storage.baseline_store import BaselineStore, read_range
from exporter.storage.engine import create_engine
from exporter.storage.prediction_store import create_schema, default_tables, metadata_tables
from exporter.window import capture_baseline


class Clock:
    """Simulated time: every scrape sees exactly the rows written for it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d')}"
    )


def store_parser(doc: str) -> argparse.ArgumentParser:
    """The command line of a store benchmark: its docstring's first paragraph and --store-url
    (one empty database per run; without it, a temporary SQLite file)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--store-url", help="empty database (default: a temporary SQLite file)")
    return parser


def open_store(url: str, models: list[dict], **exporter: Any) -> tuple[Config, sa.Engine]:
    """The config of `models` on `url` (reads without a lag or a refresh interval, so the
    simulated clock alone decides what a scrape sees), and the engine, with the models' tables
    and the project's dropped and created empty (a benchmark of several sizes reuses the URL)."""
    config = parse_config(
        {
            "store": {"url": url},
            "exporter": {"read_lag": 0.001, "min_refresh_interval": 0.001, **exporter},
            "models": models,
        }
    )
    engine = create_engine(url)
    ours = sa.MetaData()
    metadata_tables(ours)
    for model in config.models:
        for table in default_tables(model, sa.MetaData()):
            if table.key not in ours.tables:  # models may share a table
                table.to_metadata(ours)
    ours.drop_all(engine)
    create_schema(engine, config)
    return config, engine


def store_baseline(engine: sa.Engine, model: ModelConfig, start: float, end: float) -> None:
    """A baseline of `model` from its rows in [start, end], stored as the exporter reads it."""
    frame, ts = read_range(engine, model, start, end)
    baseline = capture_baseline(model, parse_rows(frame, model, ts, label="optional")[0])
    BaselineStore(engine).save(baseline, "benchmark", "benchmarks/")
