"""The server's TLS context, built from a web config's `tls_server_config`.

Certificates are picked up without a restart, as exporter-toolkit does (it rereads the file on
every request): the context is rebuilt when a certificate or key file changes on disk, so a
renewed certificate (cert-manager, a Secret update) is served from the next connection on.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
import threading
from pathlib import Path

from exporter.web.config import CURVES, TLSServerConfig

log = logging.getLogger(__name__)
VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}


def server_context(tls: TLSServerConfig, http2: bool = False) -> ssl.SSLContext:
    """A server-side context doing what `tls` asks; `http2` offers h2 over ALPN."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS[tls.min_version]
    context.maximum_version = VERSIONS[tls.max_version]
    _load_chain(context, tls)
    if tls.openssl_ciphers:
        context.set_ciphers(tls.openssl_ciphers)
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.curve_preferences:
        context.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
    if tls.client_auth_type != "NoClientCert":
        context.verify_mode = (
            ssl.CERT_REQUIRED
            if tls.client_auth_type == "RequireAndVerifyClientCert"
            else ssl.CERT_OPTIONAL
        )
        context.load_verify_locations(
            cafile=str(tls.client_ca_file) if tls.client_ca_file else None,
            cadata=tls.client_ca,
        )
    context.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
    return context


def _load_chain(context: ssl.SSLContext, tls: TLSServerConfig) -> None:
    """Loads the certificate and key, from files or inline PEM (through a private temporary
    file, removed at once: OpenSSL reads chains from files only)."""
    if tls.cert is None and tls.key is None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        return
    with tempfile.TemporaryDirectory(prefix="model-monitor-tls-") as folder:  # mode 0700
        cert = Path(folder, "cert.pem") if tls.cert is not None else tls.cert_file
        key = Path(folder, "key.pem") if tls.key is not None else tls.key_file
        for text, file in ((tls.cert, cert), (tls.key, key)):
            if text is not None:
                file.write_text(text)
        context.load_cert_chain(str(cert), str(key))


class ReloadingContext:
    """The current context for `tls`, rebuilt when one of its files changes (checked with a
    `stat` per connection: microseconds, against a handshake's milliseconds)."""

    def __init__(self, tls: TLSServerConfig, http2: bool = False) -> None:
        self.tls = tls
        self.http2 = http2
        self._lock = threading.Lock()
        self._stamp = self._files_stamp()
        self._context = server_context(tls, http2)
        self._failed: tuple[int, ...] | None = ()  # files whose reload failed (logged once)

    def _files_stamp(self) -> tuple[int, ...]:
        files = (self.tls.cert_file, self.tls.key_file, self.tls.client_ca_file)
        return tuple(os.stat(f).st_mtime_ns if f is not None else 0 for f in files)

    def get(self) -> ssl.SSLContext:
        with self._lock:
            try:
                stamp = self._files_stamp()
                if stamp != self._stamp:
                    self._context = server_context(self.tls, self.http2)
                    self._stamp = stamp
            except (OSError, ssl.SSLError) as exc:
                # Mid-rotation (a key written before its certificate) or a broken file: keep
                # serving the last good context, and say so once per state of the files.
                stamp = self._failed_stamp()
                if stamp != self._failed:
                    self._failed = stamp
                    log.warning(
                        "TLS files changed but cannot be loaded (%s); serving the "
                        "previous certificate",
                        exc,
                    )
            return self._context

    def _failed_stamp(self) -> tuple[int, ...] | None:
        try:
            return self._files_stamp()
        except OSError:
            return None
