"""The `--web.config.file` YAML of Prometheus' exporter-toolkit, read and checked.

Every key of the toolkit's schema (docs/web-configuration.md of prometheus/exporter-toolkit) is
accepted: `tls_server_config` (files or inline PEM, client certificates, allowed SANs, TLS
versions, cipher suites by their Go names, curve), `http_server_config` (`http2`, security
headers), `basic_auth_users` (bcrypt hashes) and `rate_limit`. Where Python's TLS stack cannot do
what Go's does, loading fails with the key and what to write instead, rather than serving
something weaker than the file asks for.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from exporter.config import ConfigError, load_yaml_model

TLSVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]

# Go's tls.CipherSuites() for TLS 1.0-1.2 (what the toolkit accepts), as OpenSSL names them.
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# TLS 1.3 suites are listed by Go too but cannot be configured there either: accepted, no effect.
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
CURVES = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}
# The headers the toolkit lets a file set, with the values it accepts (None: any).
HEADERS: dict[str, set[str] | None] = {
    "Content-Security-Policy": None,
    "X-Frame-Options": {"deny", "sameorigin"},
    "X-Content-Type-Options": {"nosniff"},
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float:
    """Seconds of a Go duration string such as `1s`, `250ms` or `1m30s` (`0` allowed)."""
    text = text.strip()
    if text == "0":
        return 0.0
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 1s, 250ms or 1m30s")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


class TLSServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cert: str | None = None
    key: str | None = None
    client_ca: str | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: Path | None = None
    client_allowed_sans: list[str] = Field(default_factory=list)
    min_version: TLSVersion = "TLS12"
    max_version: TLSVersion = "TLS13"
    cipher_suites: list[str] = Field(default_factory=list)
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[str] = Field(default_factory=list)

    @field_validator("cipher_suites")
    @classmethod
    def _known_suites(cls, suites: list[str]) -> list[str]:
        for suite in suites:
            if suite not in CIPHER_SUITES and suite not in TLS13_SUITES:
                raise ValueError(
                    f"unknown cipher suite {suite!r}; use Go's names, one of "
                    + ", ".join(sorted(CIPHER_SUITES))
                )
        return suites

    @field_validator("curve_preferences")
    @classmethod
    def _one_known_curve(cls, curves: list[str]) -> list[str]:
        for curve in curves:
            if curve not in CURVES:
                raise ValueError(f"unknown curve {curve!r}; one of {', '.join(CURVES)}")
        if len(curves) > 1:
            raise ValueError(
                "Python's TLS can limit the key exchange to one curve, not a preference list: "
                "give one curve, or none for OpenSSL's default list"
            )
        return curves

    @property
    def openssl_ciphers(self) -> str:
        return ":".join(CIPHER_SUITES[s] for s in self.cipher_suites if s in CIPHER_SUITES)


class HTTPServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    http2: bool = True
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _allowed_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if name not in HEADERS:
                raise ValueError(f"header {name!r} cannot be set; one of {', '.join(HEADERS)}")
            allowed = HEADERS[name]
            if allowed is not None and value.lower() not in allowed:
                raise ValueError(f"{name}: {value!r} is not one of {', '.join(sorted(allowed))}")
        return {name: value for name, value in headers.items() if value}  # blank: unset


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    interval: float = 0.0  # seconds between two requests; 0 disables the limiter
    burst: int = Field(default=0, ge=0)

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return go_duration(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _burst_with_interval(self) -> RateLimit:
        if self.interval > 0 and self.burst < 1:
            raise ValueError("burst must be at least 1 with an interval (0 refuses every request)")
        return self


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    rate_limit: RateLimit = Field(default_factory=RateLimit)


def load_web_config(path: str | Path) -> WebConfig:
    """The web config at `path`, with relative file names resolved against its folder."""
    path = Path(path)
    web = load_yaml_model(path, WebConfig, "web config")
    if web.tls_server_config is not None:
        web = web.model_copy(
            update={"tls_server_config": _checked_tls(web.tls_server_config, path)}
        )
    for user, hashed in web.basic_auth_users.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(
                f"{path}: basic_auth_users.{user}: give a bcrypt hash, not a password"
            )
    return web


def _checked_tls(tls: TLSServerConfig, path: Path) -> TLSServerConfig:
    where = f"{path}: tls_server_config"
    base = path.resolve().parent
    resolved = {
        key: (file if file is None or file.is_absolute() else base / file)
        for key, file in (
            ("cert_file", tls.cert_file),
            ("key_file", tls.key_file),
            ("client_ca_file", tls.client_ca_file),
        )
    }
    for key, file in resolved.items():
        if file is not None and not file.is_file():
            raise ConfigError(f"{where}.{key}: {file} does not exist")
    for inline, file in (
        ("cert", "cert_file"),
        ("key", "key_file"),
        ("client_ca", "client_ca_file"),
    ):
        if getattr(tls, inline) is not None and resolved[file] is not None:
            raise ConfigError(f"{where}: give {inline} or {file}, not both")
    if (tls.cert is None and resolved["cert_file"] is None) or (
        tls.key is None and resolved["key_file"] is None
    ):
        raise ConfigError(f"{where}: a certificate and its key are needed (cert_file, key_file)")
    if tls.client_auth_type in ("RequestClientCert", "RequireAnyClientCert"):
        raise ConfigError(
            f"{where}.client_auth_type: {tls.client_auth_type} accepts client certificates "
            "without verifying them, which Python's TLS cannot do; use "
            "RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file"
        )
    verifies = tls.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
    if verifies and tls.client_ca is None and resolved["client_ca_file"] is None:
        raise ConfigError(
            f"{where}.client_ca_file is needed to verify client certificates "
            f"({tls.client_auth_type})"
        )
    if tls.client_allowed_sans and tls.client_auth_type != "RequireAndVerifyClientCert":
        raise ConfigError(
            f"{where}.client_allowed_sans needs client_auth_type RequireAndVerifyClientCert: "
            "other types let a client connect without a certificate, leaving no SAN to match"
        )
    order = ["TLS10", "TLS11", "TLS12", "TLS13"]
    if order.index(tls.min_version) > order.index(tls.max_version):
        raise ConfigError(f"{where}: min_version {tls.min_version} is above max_version")
    return tls.model_copy(update=resolved)
