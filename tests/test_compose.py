"""docker-compose.yml read, not run (no Docker engine here): every mounted path exists, ports and
service names agree with prometheus.yml and the Grafana provisioning, no secret is a literal,
and the configs it mounts pass promtool and amtool (tests/test_alerting_config.py runs those on
the same files)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _binds(service: dict) -> list[tuple[Path, str]]:
    out = []
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            out.append((ROOT / source, target))
    return out


def test_every_mounted_path_exists() -> None:
    for name, service in SERVICES.items():
        for source, _ in _binds(service):
            assert source.exists(), f"{name} mounts {source}, which is not in the repo"
    assert (ROOT / "Dockerfile").is_file()


def _published(service: str) -> set[int]:
    return {int(p.split(":")[1]) for p in SERVICES[service].get("ports", [])}


def test_ports_and_names_agree_with_prometheus_yml() -> None:
    prometheus = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "model-monitor")
    host, port = job["static_configs"][0]["targets"][0].split(":")
    assert host in SERVICES and int(port) in _published(host)
    assert "9747" in (ROOT / "Dockerfile").read_text()
    am_host, am_port = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][
        0
    ].split(":")
    assert am_host in SERVICES and int(am_port) in _published(am_host)
    # The rule files prometheus.yml names are where the compose file mounts alert_rules/.
    config_target = dict((t, s) for s, t in _binds(SERVICES["prometheus"]))
    assert config_target["/etc/prometheus/prometheus.yml"] == ROOT / "prometheus.yml"
    assert config_target["/etc/prometheus/alert_rules"] == ROOT / "alert_rules"
    assert prometheus["rule_files"] == ["alert_rules/*.yml"]  # relative to /etc/prometheus


def test_grafana_provisioning_agrees() -> None:
    binds = {t: s for s, t in _binds(SERVICES["grafana"])}
    datasources = yaml.safe_load(
        (ROOT / "dashboards/provisioning/datasources/prometheus.yml").read_text()
    )
    host, port = re.match(r"http://([\w-]+):(\d+)", datasources["datasources"][0]["url"]).groups()
    assert host in SERVICES and int(port) in _published(host)
    provider = yaml.safe_load(
        (ROOT / "dashboards/provisioning/dashboards/model-monitor.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    assert binds[path] == ROOT / "dashboards" / "generated"
    assert (
        binds["/etc/grafana/provisioning/datasources"]
        == ROOT / "dashboards/provisioning/datasources"
    )


def test_alertmanager_mounts_match_its_config() -> None:
    am = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    binds = {t: s for s, t in _binds(SERVICES["alertmanager"])}
    assert binds["/etc/alertmanager/alertmanager.yml"] == ROOT / "alertmanager" / "alertmanager.yml"
    templates = Path(am["templates"][0]).parent
    assert binds[str(templates)] == ROOT / "alertmanager" / "templates"
    secret_targets = {s["target"] for s in SERVICES["alertmanager"]["secrets"]}
    wanted = {v for k, v in am["global"].items() if k.endswith("_file")}
    wanted |= {
        c["routing_key_file"] for r in am["receivers"] for c in r.get("pagerduty_configs", [])
    }
    assert wanted <= secret_targets
    for secret in COMPOSE["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    assert (ROOT / "secrets" / "README.md").is_file()


def test_no_secret_is_a_literal() -> None:
    for name, service in SERVICES.items():
        for key, value in service.get("environment", {}).items():
            if re.search(r"PASSWORD|TOKEN|SECRET|STORE_URL", key):
                assert "${" in str(value), f"{name}.{key} must come from the environment"


def test_healthchecks_and_start_order() -> None:
    for name in ("postgres", "prometheus", "alertmanager", "grafana"):
        assert SERVICES[name]["healthcheck"]["test"], name
    assert "HEALTHCHECK" in (ROOT / "Dockerfile").read_text()  # the exporter's own
    assert SERVICES["exporter"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["prometheus"]["depends_on"]["exporter"]["condition"] == "service_healthy"
    assert SERVICES["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert "--seed-reference" in SERVICES["simulator"]["command"]
    assert {v.split(":")[0] for v in SERVICES["postgres"]["volumes"]} == {"postgres-data"}
