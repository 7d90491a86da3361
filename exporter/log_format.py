"""Log lines as Prometheus' own servers write them (`--log.format=logfmt|json`).

One line per record, `ts`, `level`, `logger`, `msg` first, then an exception as `err`, so
Loki, Vector or `jq` parse the exporter's logs like node_exporter's. gunicorn's own logger is
routed through the same handler (`logging_config` is also its `logconfig_dict`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, Literal

LogFormat = Literal["logfmt", "json"]
LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "error": "ERROR"}
_NAMES = {"WARNING": "warn", "CRITICAL": "error"}


class LineFormatter(logging.Formatter):
    """A record as one logfmt or JSON line."""

    def __init__(self, style: LogFormat = "logfmt") -> None:
        super().__init__()
        self.style = style

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        stamp = dt.datetime.fromtimestamp(record.created, dt.UTC)
        fields = {
            "ts": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": _NAMES.get(record.levelname, record.levelname.lower()),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            fields["err"] = self.formatException(record.exc_info)
        return fields

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        if self.style == "json":
            return json.dumps(fields, ensure_ascii=False)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())


def _logfmt_value(value: str) -> str:
    if value and not any(c in value for c in ' "=\\\n\t'):
        return value
    return json.dumps(value, ensure_ascii=False)  # quoted, with \", \\ and \n escaped


def logging_config(level: str, style: LogFormat) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the whole process: every logger, gunicorn's included,
    writes `style` lines to stderr at `level` (debug, info, warn, error)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": {"()": LineFormatter, "style": style}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": LEVELS[level], "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": LEVELS[level], "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }
