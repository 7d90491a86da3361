"""`model-monitor healthcheck`: the container health check, whatever the web config says.

It asks the exporter's own probe over TLS first and falls back to plain HTTP when the listener
does not speak TLS, so one `HEALTHCHECK` line works with and without `tls_server_config`; the
probes need no password (web.middleware), so basic auth does not break it either. The
certificate is not verified: the check talks to its own container over loopback. A listener
that requires client certificates refuses it: use a TCP check there.
"""

from __future__ import annotations

import http.client
import ssl


def probe(listen: str, path: str = "/-/healthy", timeout: float = 3.0) -> tuple[bool, str]:
    """(healthy, what was seen) for `GET path` at the `host:port` the exporter listens on."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1" if host != "::" else "::1"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        return _get(
            http.client.HTTPSConnection(host, int(port), timeout=timeout, context=context), path
        )
    except ssl.SSLError as exc:
        if exc.reason not in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST"):
            return False, f"TLS handshake with {listen} failed: {exc.reason or exc}"
    except OSError as exc:
        return False, f"cannot reach {listen}: {exc}"
    try:  # the listener answered the TLS hello with plain HTTP
        return _get(http.client.HTTPConnection(host, int(port), timeout=timeout), path)
    except OSError as exc:
        return False, f"cannot reach {listen}: {exc}"


def _get(connection: http.client.HTTPConnection, path: str) -> tuple[bool, str]:
    scheme = "https" if isinstance(connection, http.client.HTTPSConnection) else "http"
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read(200).decode(errors="replace").strip()
    finally:
        connection.close()
    url = f"{scheme}://{connection.host}:{connection.port}{path}"
    return response.status == 200, f"{url}: {response.status} {body}"
