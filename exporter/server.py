"""`model-monitor serve`: the Flask app under gunicorn, one worker process with threads.

One process keeps a single window per model and monotonic counters: with several worker
processes each would hold its own window and Prometheus would scrape whichever answered, so
counters would jump and rows would be read once per process. Threads serve concurrent scrapes
and probes; refreshes are serialised per model inside the process. To scale out, shard models
across exporter instances with `--shard` (exporter/sharding.py, docs/deploy.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from exporter.app import create_app
from exporter.config import Config
from exporter.log_format import LogFormat, logging_config
from exporter.sharding import Shard
from exporter.web.config import WebConfig
from exporter.web.tls import ReloadingContext


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    """Builds the app in the worker (`load`), after the fork: threads, locks and database
    connections made before a fork do not survive it."""

    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._factory()


def gunicorn_options(
    listen: str,
    threads: int,
    web: WebConfig | None,
    log_level: str = "info",
    log_format: LogFormat = "logfmt",
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bind": listen,
        "workers": 1,  # see the module docstring: one window, monotonic counters
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 120,
        "graceful_timeout": 10,
        "accesslog": None,
        "logconfig_dict": logging_config(log_level, log_format),
    }
    tls = web.tls_server_config if web is not None else None
    if tls is not None:
        http2 = web.http_server_config.http2
        context = ReloadingContext(tls, http2=http2)
        # gunicorn turns TLS on when certfile is set; the context below is what it serves with.
        options |= {
            "certfile": str(tls.cert_file or "inline"),
            "keyfile": str(tls.key_file or "inline"),
            "ssl_context": lambda _config, _default: context.get(),
            "http_protocols": "h2,h1" if http2 else "h1",
        }
    return options


def serve(
    config: Config,
    listen: str,
    threads: int = 64,
    web: WebConfig | None = None,
    telemetry_path: str = "/metrics",
    log_level: str = "info",
    log_format: LogFormat = "logfmt",
    shard: Shard | None = None,
) -> None:
    """Run until SIGTERM/SIGINT. The app (and its window warm-up) starts inside the worker."""
    _Gunicorn(
        lambda: create_app(
            config, web=web, threads=threads, telemetry_path=telemetry_path, shard=shard
        ),
        gunicorn_options(listen, threads, web, log_level, log_format),
    ).run()
