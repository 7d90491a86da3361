"""Flask app factory: /metrics, health and readiness probes, a landing page."""

from __future__ import annotations

import gzip

from flask import Flask, Response, request
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from exporter.collector import ModelCollector
from exporter.config import Config
from exporter.service import MonitorService
from exporter.web_config import BasicAuth, WebConfig

LANDING = """<!doctype html><html><head><title>model-monitor</title></head><body>
<h1>model-monitor</h1><p>Prometheus exporter for {n} models: {models}.</p>
<ul><li><a href="metrics">metrics</a></li><li><a href="-/healthy">healthy</a></li>
<li><a href="-/ready">ready</a></li></ul></body></html>"""


def create_app(
    config: Config,
    service: MonitorService | None = None,
    web: WebConfig | None = None,
    warmup: bool = True,
) -> Flask:
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
        auth = BasicAuth(web.basic_auth_users)

        @app.before_request
        def _require_auth() -> Response | None:
            if auth.check(request.headers.get("Authorization")):
                return None
            return Response(
                "Unauthorized\n", 401, {"WWW-Authenticate": 'Basic realm="model-monitor"'}
            )

    @app.get("/metrics")
    def metrics() -> Response:
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
        return Response("Rebuilding windows from the store\n", 503, {"Content-Type": "text/plain"})

    @app.get("/")
    def landing() -> Response:
        models = ", ".join(service.refreshers)
        return Response(
            LANDING.format(n=len(service.refreshers), models=models),
            200,
            {"Content-Type": "text/html"},
        )

    return app
