"""Flask app factory: /metrics, health and readiness probes, a landing page."""

from __future__ import annotations

import gzip

from flask import Flask, Response, jsonify, request
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from exporter.collector import ModelCollector
from exporter.config import Config
from exporter.monitors import health
from exporter.service import MonitorService
from exporter.web_config import BasicAuth, WebConfig

LANDING = """<!doctype html><html><head><title>model-monitor</title></head><body>
<h1>model-monitor</h1><p>Prometheus exporter for {n} models: {models}.</p>
<ul><li><a href="metrics">metrics</a></li><li><a href="api/v1/models">models (JSON)</a></li>
<li><a href="-/healthy">healthy</a></li>
<li><a href="-/ready">ready</a></li></ul></body></html>"""


def create_app(
    config: Config,
    service: MonitorService | None = None,
    web: WebConfig | None = None,
    warmup: bool = True,
    threads: int = 4,
) -> Flask:
    """The exporter's WSGI app; `threads`: of the worker serving it (sizes the refusal delay's
    share of them, see `BasicAuth`)."""
    service = service or MonitorService(config)
    registry = CollectorRegistry()
    registry.register(ModelCollector(service))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    if warmup:
        service.start_warmup()

    app = Flask("exporter")
    app.config["service"] = service
    app.config["registry"] = registry

    if web is not None and web.basic_auth_users:
        auth = BasicAuth(web.basic_auth_users, delay_slots=threads - 2)
        app.wsgi_app = auth.protect(app.wsgi_app)  # type: ignore[method-assign]

    def refresh_within_deadline() -> None:
        """Fresh numbers if the refresh finishes in time, the last good ones otherwise.

        The deadline is Prometheus' own scrape timeout (its request header) or the configured
        default, less a margin for rendering; while the windows are still being built the
        refresh is only started, so probes and early scrapes answer at once.
        """
        header = request.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
        try:
            timeout = float(header) if header else config.exporter.scrape_timeout
        except ValueError:
            timeout = config.exporter.scrape_timeout
        wait = max(0.0, timeout * 0.9 - 0.25) if service.ready else 0.0
        service.refresh_all(wait)

    @app.get("/metrics")
    def metrics() -> Response:
        refresh_within_deadline()
        encoder, content_type = choose_encoder(request.headers.get("Accept"))
        body = encoder(registry)
        headers = {"Content-Type": content_type}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return Response(body, 200, headers)

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
        refresh_within_deadline()
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
            LANDING.format(n=len(service.refreshers), models=models),
            200,
            {"Content-Type": "text/html"},
        )

    return app
