"""The exporter-toolkit web config: what Python's TLS cannot honour is refused with the key and
the fix; rate limit and headers as WSGI layers; log lines in logfmt and JSON."""

from __future__ import annotations

import json
import logging
import shlex
import ssl
import sys

import pytest
import yaml
from flask import Flask
from werkzeug.test import Client

from exporter.config import ConfigError
from exporter.log_format import LineFormatter
from exporter.web.config import WebConfig, go_duration, load_web_config
from exporter.web.middleware import guard
from exporter.web.tls import server_context
from tests.certs import localhost_cert


def _load(tmp_path, web: dict) -> WebConfig:
    localhost_cert(tmp_path)
    (tmp_path / "web.yml").write_text(yaml.safe_dump(web))
    return load_web_config(tmp_path / "web.yml")


TLS = {"cert_file": "tls.crt", "key_file": "tls.key"}


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"client_auth_type": "RequireAnyClientCert"}, "client_auth_type: RequireAnyClientCert"),
        ({"client_auth_type": "RequireAndVerifyClientCert"}, "client_ca_file is needed"),
        ({"client_allowed_sans": ["a"]}, "client_allowed_sans needs client_auth_type"),
        ({"curve_preferences": ["X25519", "CurveP256"]}, "one curve"),
        ({"cipher_suites": ["TLS_RSA_WITH_RC4_128_SHA"]}, "unknown cipher suite"),
        ({"min_version": "TLS13", "max_version": "TLS12"}, "above max_version"),
        ({"min_version": "SSL3"}, "min_version"),
    ],
)
def test_what_python_cannot_honour_is_refused_by_key(tmp_path, tls, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, {"tls_server_config": TLS | tls})


@pytest.mark.parametrize(
    ("web", "message"),
    [
        ({"http_server_config": {"headers": {"X-Frame-Options": "allow"}}}, "not one of"),
        ({"http_server_config": {"headers": {"Server": "x"}}}, "cannot be set"),
        ({"rate_limit": {"interval": "1s", "burst": 0}}, "burst must be at least 1"),
        ({"rate_limit": {"interval": "1 second", "burst": 1}}, "not a duration"),
    ],
)
def test_bad_http_settings_are_refused(tmp_path, web, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, web)


def test_inline_pem_and_go_names_build_the_context(tmp_path) -> None:
    localhost_cert(tmp_path)
    web = _load(
        tmp_path,
        {
            "tls_server_config": {
                "cert": (tmp_path / "tls.crt").read_text(),
                "key": (tmp_path / "tls.key").read_text(),
                "min_version": "TLS12",
                "max_version": "TLS12",
                "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
            }
        },
    )
    context = server_context(web.tls_server_config)
    assert context.minimum_version == context.maximum_version == ssl.TLSVersion.TLSv1_2
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 == ["ECDHE-ECDSA-AES256-GCM-SHA384"]


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", 0.0), ("250ms", 0.25), ("1m30s", 90.0), ("2h", 7200.0)]
)
def test_go_durations(text, seconds) -> None:
    assert go_duration(text) == pytest.approx(seconds)


def test_rate_limit_answers_429_but_never_to_probes() -> None:
    app = Flask("t")
    app.add_url_rule("/metrics", "metrics", lambda: "m")
    app.add_url_rule("/-/healthy", "healthy", lambda: "ok")
    web = WebConfig.model_validate(
        {
            "rate_limit": {"interval": "1h", "burst": 2},
            "http_server_config": {"headers": {"X-Content-Type-Options": "nosniff"}},
        }
    )
    client = Client(guard(app.wsgi_app, web, threads=4))
    codes = [client.get("/metrics").status_code for _ in range(4)]
    assert codes == [200, 200, 429, 429]
    probe = client.get("/-/healthy")
    assert probe.status_code == 200 and probe.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/metrics").headers["X-Content-Type-Options"] == "nosniff"


def _record(msg: str, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("model-monitor", logging.WARNING, __file__, 1, msg, (), info)


def test_log_lines_parse_as_logfmt_and_json() -> None:
    message = 'store "db" failed = retry\nsoon'
    line = LineFormatter("logfmt").format(_record(message))
    fields = dict(token.split("=", 1) for token in shlex.split(line.replace("\\n", "\n")))
    assert fields["level"] == "warn" and fields["logger"] == "model-monitor"
    assert fields["msg"] == message
    assert fields["ts"].endswith("Z")
    record = json.loads(LineFormatter("json").format(_record(message, exc=True)))
    assert record["msg"] == message and record["level"] == "warn"
    assert "ValueError: boom" in record["err"]
