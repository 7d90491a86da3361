"""Protecting the exporter's endpoints the way Prometheus' exporter-toolkit does.

The same `--web.config.file` YAML format: `tls_server_config` (cert_file, key_file, optional
client_ca_file with client_auth_type RequireAndVerifyClientCert) and `basic_auth_users` mapping
user names to bcrypt hashes. Secrets stay in files; the YAML holds only paths and hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exporter.config import ConfigError, format_validation_error


class TLSServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cert_file: Path
    key_file: Path
    client_auth_type: Literal["NoClientCert", "RequireAndVerifyClientCert"] = "NoClientCert"
    client_ca_file: Path | None = None


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, str] = Field(default_factory=dict)


def load_web_config(path: str | Path) -> WebConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read web config {path}: {exc}") from None
    try:
        web = WebConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, raw, str(path))) from None
    base = path.resolve().parent
    tls = web.tls_server_config
    if tls is not None:
        resolved = {
            k: (v if v is None or v.is_absolute() else base / v)
            for k, v in tls.model_dump().items()
            if k.endswith("_file")
        }
        for key, file in resolved.items():
            if file is not None and not file.is_file():
                raise ConfigError(f"{path}: tls_server_config.{key}: {file} does not exist")
        if (
            tls.client_auth_type == "RequireAndVerifyClientCert"
            and resolved["client_ca_file"] is None
        ):
            raise ConfigError(
                f"{path}: tls_server_config.client_ca_file is needed to verify client certificates"
            )
        web = web.model_copy(update={"tls_server_config": tls.model_copy(update=resolved)})
    for user, hashed in web.basic_auth_users.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(
                f"{path}: basic_auth_users.{user}: give a bcrypt hash, not a password"
            )
    return web


class BasicAuth:
    """Checks credentials against bcrypt hashes, caching successes (bcrypt is slow by design)."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    def check(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            return False
        key = hashlib.sha256(f"{user}\0{password}\0{hashed}".encode()).digest()
        with self._lock:
            if any(hmac.compare_digest(key, k) for k in self._verified):
                return True
        if bcrypt.checkpw(password.encode(), hashed.encode()):
            with self._lock:
                self._verified.add(key)
            return True
        return False
