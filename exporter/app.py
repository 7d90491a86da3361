"""Flask app factory: /metrics, health and readiness probes, a landing page."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Flask, Response, jsonify, request
from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
)

from exporter.collector import ModelCollector
from exporter.config import Config
from exporter.exposition import metrics_app
from exporter.monitors import health
from exporter.service import MonitorService
from exporter.sharding import Shard
from exporter.web.config import WebConfig
from exporter.web.middleware import guard

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

LANDING = """<!doctype html><html><head><title>model-monitor</title></head><body>
<h1>model-monitor</h1><p>Prometheus exporter for {n} models: {models}.</p>
<ul><li><a href="{telemetry}">metrics</a></li><li><a href="api/v1/models">models (JSON)</a></li>
<li><a href="-/healthy">healthy</a></li>
<li><a href="-/ready">ready</a></li></ul></body></html>"""


def create_app(
    config: Config,
    service: MonitorService | None = None,
    web: WebConfig | None = None,
    warmup: bool = True,
    threads: int = 4,
    telemetry_path: str = "/metrics",
    shard: Shard | None = None,
) -> Flask:
    """The exporter's WSGI app; `threads`: of the worker serving it (sizes the refusal delay's
    share of them, see `BasicAuth`). The metrics are served at `telemetry_path` by
    `exposition.metrics_app` (prometheus_client's negotiation, `name[]` filter and gzip, with
    each model's kept text), ahead of Flask's routing."""
    service = service or MonitorService(config, shard=shard)
    registry = CollectorRegistry()
    registry.register(ModelCollector(service))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    if warmup:
        service.start_warmup()

    app = Flask("exporter")
    app.config["service"] = service
    app.config["registry"] = registry

    def refresh_within_deadline(header: str | None) -> None:
        """Fresh numbers if the refresh finishes in time, the last good ones otherwise.

        The deadline is Prometheus' own scrape timeout (its request header) or the configured
        default, less a margin for rendering; while the windows are still being built the
        refresh is only started, so probes and early scrapes answer at once.
        """
        try:
            timeout = float(header) if header else config.exporter.scrape_timeout
        except ValueError:
            timeout = config.exporter.scrape_timeout
        wait = max(0.0, timeout * 0.9 - 0.25) if service.ready else 0.0
        service.refresh_all(wait)

    exposition = metrics_app(registry)
    routes = app.wsgi_app

    def dispatch(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == telemetry_path:
            refresh_within_deadline(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"))
            return exposition(environ, start_response)
        return routes(environ, start_response)

    app.wsgi_app = (  # type: ignore[method-assign]
        guard(dispatch, web, threads) if web is not None else dispatch
    )

    @app.get("/-/healthy")
    def healthy() -> Response:
        return Response("OK\n", 200, {"Content-Type": "text/plain"})

    @app.get("/-/ready")
    def ready() -> Response:
        if service.ready:
            return Response("Ready\n", 200, {"Content-Type": "text/plain"})
        return Response(
            f"Windows not built yet from the store: {', '.join(service.waiting)}\n",
            503,
            {"Content-Type": "text/plain"},
        )

    @app.get("/api/v1/models")
    def models() -> Response:
        return jsonify(
            {
                "models": [
                    {
                        "model_id": model_id,
                        "kind": r.model.kind,
                        "up": r.status.up,
                        "status": health.status_of(r.findings) if r.report is not None else None,
                        "baseline_version": r.baseline.version if r.baseline is not None else None,
                    }
                    for model_id, r in service.refreshers.items()
                ]
            }
        )

    @app.get("/api/v1/models/<model_id>/health")
    def model_health(model_id: str) -> Response:
        """The seed's health report for the live window (the numbers /metrics shows)."""
        refresher = service.refreshers.get(model_id)
        if refresher is None:
            return jsonify(
                {"error": f"unknown model {model_id!r}", "models": list(service.refreshers)}
            ), 404
        refresh_within_deadline(request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"))
        if refresher.report is None:
            return jsonify({"error": "the window is not built yet", "model_id": model_id}), 503
        decision = refresher.decision.to_json() if refresher.decision is not None else None
        body = health.health_json(refresher.model, refresher.report, refresher.findings, decision)
        body["exporter"] = {
            "up": refresher.status.up,
            "last_refresh": refresher.status.last_success,
        }
        return jsonify(body)

    @app.get("/")
    def landing() -> Response:
        models = ", ".join(service.refreshers)
        return Response(
            LANDING.format(
                n=len(service.refreshers), models=models, telemetry=telemetry_path.lstrip("/")
            ),
            200,
            {"Content-Type": "text/html"},
        )

    return app
