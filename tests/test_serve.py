"""`model-monitor serve` under gunicorn, with TLS and basic auth from an exporter-toolkit style web
config."""

from __future__ import annotations

import datetime as dt
import ipaddress

import bcrypt
import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter.config import ConfigError
from exporter.web_config import load_web_config
from tests.conftest import REGRESSION_MODEL
from tests.servers import free_port, model_monitor, stop, wait_for


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_tls_and_basic_auth(tmp_path) -> None:
    _self_signed(tmp_path)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "web.yml").write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": "tls.crt", "key_file": "tls.key"},
                "basic_auth_users": {"prometheus": hashed},
            }
        )
    )
    (tmp_path / "mm.yml").write_text(
        yaml.safe_dump(
            {"store": {"url": f"sqlite:///{tmp_path / 's.db'}"}, "models": [REGRESSION_MODEL]}
        )
    )
    model_monitor("init-store", "--config", str(tmp_path / "mm.yml")).wait(timeout=60)
    port = free_port()
    server = model_monitor(
        "serve",
        "--config",
        str(tmp_path / "mm.yml"),
        "--listen",
        f"127.0.0.1:{port}",
        "--web-config",
        str(tmp_path / "web.yml"),
        log=tmp_path / "serve.log",
    )
    url = f"https://127.0.0.1:{port}"
    ca = str(tmp_path / "tls.crt")
    try:
        wait_for(
            lambda: (
                requests.get(
                    f"{url}/-/healthy", verify=ca, auth=("prometheus", "s3cret"), timeout=2
                ).ok
            ),
            30,
            "the TLS exporter",
        )
        assert requests.get(f"{url}/metrics", verify=ca, timeout=5).status_code == 401
        assert (
            requests.get(
                f"{url}/metrics", verify=ca, auth=("prometheus", "wrong"), timeout=5
            ).status_code
            == 401
        )
        ok = requests.get(f"{url}/metrics", verify=ca, auth=("prometheus", "s3cret"), timeout=10)
        assert ok.status_code == 200 and "model_monitor_up" in ok.text
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)  # plain HTTP is refused
    finally:
        stop(server)


def test_web_config_refuses_plain_passwords(tmp_path) -> None:
    (tmp_path / "web.yml").write_text("basic_auth_users: {admin: hunter2}\n")
    with pytest.raises(ConfigError, match="give a bcrypt hash"):
        load_web_config(tmp_path / "web.yml")
