"""What a web config asks of every request, as WSGI layers around the app (before Flask routes).

Outermost first: the configured security headers on every answer; the probes; the rate limit
(429); the client certificate's SAN (403); basic auth (401). The probes `/-/healthy` and
`/-/ready` pass without credentials and without counting against the rate limit: they carry no
data, and Docker and Kubernetes probes cannot hold a password (TLS still applies to them).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from exporter.web.auth import BasicAuth
from exporter.web.config import RateLimit, WebConfig

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

PROBES = frozenset({"/-/healthy", "/-/ready"})
# getpeercert() names SAN kinds differently from Go's x509.Certificate fields.
SAN_KINDS = {"DNS": "DNS", "IP Address": "IP", "email": "email", "URI": "URI"}


def _refuse(start_response: StartResponse, status: str) -> list[bytes]:
    body = (status.split(" ", 1)[1] + "\n").encode()
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


class TokenBucket:
    """`burst` requests at once, then one per `interval` seconds (Go's rate.Limiter)."""

    def __init__(self, limit: RateLimit) -> None:
        self.interval = limit.interval
        self.burst = limit.burst
        self._tokens = float(limit.burst)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) / self.interval)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


def peer_sans(environ: WSGIEnvironment) -> set[str]:
    """The verified client certificate's subject alternative names, as written in a config."""
    sock = environ.get("gunicorn.socket")
    cert = sock.getpeercert() if hasattr(sock, "getpeercert") else None
    names = set()
    for kind, value in (cert or {}).get("subjectAltName", ()):
        if kind in SAN_KINDS:
            names.add(str(ipaddress.ip_address(value.strip())) if kind == "IP Address" else value)
    return names


def guard(app: WSGIApplication, web: WebConfig, threads: int) -> WSGIApplication:
    """`app` behind what `web` asks for (see the module docstring)."""
    inner = app
    if web.basic_auth_users:
        inner = BasicAuth(web.basic_auth_users, delay_slots=threads - 2).protect(inner)
    tls = web.tls_server_config
    allowed = set(tls.client_allowed_sans) if tls is not None else set()
    bucket = TokenBucket(web.rate_limit) if web.rate_limit.interval > 0 else None
    headers = list(web.http_server_config.headers.items())

    def checked(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in PROBES:
            return app(environ, start_response)
        if bucket is not None and not bucket.allow():
            return _refuse(start_response, "429 Too Many Requests")
        if allowed and not allowed & peer_sans(environ):
            return _refuse(start_response, "403 Forbidden")
        return inner(environ, start_response)

    if not headers:
        return checked

    def with_headers(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(
            status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            return start_response(status, response_headers + headers, exc_info)

        return checked(environ, start)

    return with_headers
