"""`model-monitor serve` under gunicorn, with TLS and basic auth from an exporter-toolkit style web
config."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
from importlib import metadata
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import ConfigError
from exporter.web.config import load_web_config
from tests.certs import issue, localhost_cert
from tests.conftest import REGRESSION_MODEL, binary
from tests.servers import free_port, model_monitor, model_monitor_run, stop, wait_for


def _config(tmp_path: Path) -> str:
    (tmp_path / "mm.yml").write_text(
        yaml.safe_dump(
            {"store": {"url": f"sqlite:///{tmp_path / 's.db'}"}, "models": [REGRESSION_MODEL]}
        )
    )
    model_monitor("init-store", "--config", str(tmp_path / "mm.yml")).wait(timeout=60)
    return str(tmp_path / "mm.yml")


def _serve(tmp_path: Path, web: dict, *flags: str) -> tuple[subprocess.Popen, int]:
    (tmp_path / "web.yml").write_text(yaml.safe_dump(web))
    port = free_port()
    server = model_monitor(
        "serve",
        "--config",
        _config(tmp_path),
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.config.file",
        str(tmp_path / "web.yml"),
        *flags,
        log=tmp_path / "serve.log",
    )
    return server, port


def _handshake(
    port: int, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3, cert: str | None = None
) -> tuple[str, bytes]:
    """(the ALPN protocol the server picks, its certificate in DER) for a client capped at TLS
    `version`, presenting `cert` if given; the server's certificate is not verified."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = version
    context.set_alpn_protocols(["h2", "http/1.1"])
    if cert:
        context.load_cert_chain(f"{cert}.crt", f"{cert}.key")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        return tls.selected_alpn_protocol() or "", tls.getpeercert(binary_form=True)


def test_exporter_toolkit_web_config(tmp_path) -> None:
    """A web config as exporter-toolkit documents it: TLS 1.3 only with Go cipher names and a
    curve, security headers, HTTP/2, basic auth; metrics through prometheus_client's WSGI app
    at a custom telemetry path; probes and the health check without a password."""
    localhost_cert(tmp_path)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    headers = {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"}
    web = {
        "tls_server_config": {
            "cert_file": "tls.crt",
            "key_file": "tls.key",
            "min_version": "TLS13",
            "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"],
            "prefer_server_cipher_suites": True,
            "curve_preferences": ["CurveP256"],
        },
        "http_server_config": {"http2": True, "headers": headers},
        "basic_auth_users": {"prometheus": hashed},
    }
    server, port = _serve(tmp_path, web, "--web.telemetry-path=/probe/metrics")
    url = f"https://127.0.0.1:{port}"
    ca = str(tmp_path / "tls.crt")
    auth = ("prometheus", "s3cret")
    try:
        wait_for(
            lambda: requests.get(f"{url}/-/healthy", verify=ca, timeout=2).ok,
            30,
            "the TLS exporter",
        )
        with pytest.raises(ssl.SSLError):
            _handshake(port, ssl.TLSVersion.TLSv1_2)  # below min_version
        assert _handshake(port)[0] == "h2"

        assert requests.get(f"{url}/probe/metrics", verify=ca, timeout=5).status_code == 401
        wrong = requests.get(f"{url}/probe/metrics", verify=ca, auth=("prometheus", "x"), timeout=5)
        assert wrong.status_code == 401
        ok = requests.get(f"{url}/probe/metrics", verify=ca, auth=auth, timeout=10)
        assert ok.status_code == 200 and "model_monitor_up" in ok.text
        assert all(ok.headers[name] == value for name, value in headers.items())
        assert requests.get(f"{url}/metrics", verify=ca, auth=auth, timeout=5).status_code == 404

        def scrape(**kw: object) -> requests.Response:
            return requests.get(f"{url}/probe/metrics", verify=ca, auth=auth, timeout=10, **kw)

        only = scrape(params={"name[]": ["model_monitor_up", "model_monitor_build_info"]})
        names = {family.name for family in text_string_to_metric_families(only.text)}
        assert names == {"model_monitor_up", "model_monitor_build_info"}
        assert scrape(headers={"Accept-Encoding": "gzip"}).headers["Content-Encoding"] == "gzip"
        open_metrics = scrape(headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert open_metrics.headers["Content-Type"].startswith("application/openmetrics-text")
        assert open_metrics.text.endswith("# EOF\n")

        check = model_monitor_run("healthcheck", f"--web.listen-address=127.0.0.1:{port}")
        assert check.returncode == 0, check.stderr
        assert "https://" in check.stdout
        out = subprocess.run(
            [
                binary("curl"),
                "-sk",
                "--http2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
                f"{url}/-/healthy",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        assert out == "2 200"  # HTTP/2 over ALPN, as http_server_config.http2 asks
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)  # plain HTTP is refused

        localhost_cert(tmp_path)  # renewed in place: served from the next connection on
        renewed = ssl.PEM_cert_to_DER_cert((tmp_path / "tls.crt").read_text())
        assert _handshake(port)[1] == renewed
    finally:
        stop(server)
    for line in (tmp_path / "serve.log").read_text().splitlines():
        assert re.match(r"ts=\S+ level=(debug|info|warn|error) logger=\S+ msg=", line), line


def test_client_certificates_and_allowed_sans(tmp_path) -> None:
    """RequireAndVerifyClientCert with client_allowed_sans: a certificate the CA signed for an
    allowed name gets the metrics, one for another name 403, none no handshake."""
    ca = issue(tmp_path, "ca", [], is_ca=True)
    localhost_cert(tmp_path)
    issue(tmp_path, "prometheus", [x509.DNSName("prometheus.monitoring.svc")], ca)
    issue(tmp_path, "intruder", [x509.DNSName("intruder.example")], ca)
    web = {
        "tls_server_config": {
            "cert_file": "tls.crt",
            "key_file": "tls.key",
            "client_auth_type": "RequireAndVerifyClientCert",
            "client_ca_file": "ca.crt",
            "client_allowed_sans": ["prometheus.monitoring.svc"],
        },
        "http_server_config": {"http2": False},
    }
    server, port = _serve(tmp_path, web)
    url = f"https://127.0.0.1:{port}/metrics"
    verify = str(tmp_path / "tls.crt")

    def get(who: str) -> requests.Response:
        cert = (str(tmp_path / f"{who}.crt"), str(tmp_path / f"{who}.key"))
        return requests.get(url, cert=cert, verify=verify, timeout=10)

    try:
        wait_for(lambda: get("prometheus").ok, 30, "the mTLS exporter")
        assert _handshake(port, cert=str(tmp_path / "prometheus"))[0] == "http/1.1"
        assert get("intruder").status_code == 403
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, verify=verify, timeout=10)
    finally:
        stop(server)


def test_healthcheck_plain_http_and_version(tmp_path) -> None:
    """The same health check works without TLS; --version prints the package version."""
    port = free_port()
    server = model_monitor(
        "serve", "--config", _config(tmp_path), f"--web.listen-address=127.0.0.1:{port}"
    )
    try:
        wait_for(
            lambda: (
                model_monitor_run(
                    "healthcheck", "--ready", f"--web.listen-address=127.0.0.1:{port}"
                ).returncode
                == 0
            ),
            60,
            "a ready exporter",
        )
        check = model_monitor_run("healthcheck", f"--web.listen-address=127.0.0.1:{port}")
        assert check.returncode == 0 and check.stdout.startswith("http://"), check
    finally:
        stop(server)
    down = model_monitor_run("healthcheck", f"--web.listen-address=127.0.0.1:{port}")
    assert down.returncode == 1 and "cannot reach" in down.stderr
    version = model_monitor_run("--version")
    assert version.stdout.strip().startswith(
        f"model-monitor, version {metadata.version('model-monitor')}"
    )


def test_web_config_refuses_plain_passwords(tmp_path) -> None:
    (tmp_path / "web.yml").write_text("basic_auth_users: {admin: hunter2}\n")
    with pytest.raises(ConfigError, match="give a bcrypt hash"):
        load_web_config(tmp_path / "web.yml")
