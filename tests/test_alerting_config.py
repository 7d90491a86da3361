"""Alert rules, their promtool tests, prometheus.yml and Alertmanager routing, checked with the
real promtool and amtool; and a completeness check: every alert is tested and has a runbook."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, binary

RULES = sorted((ROOT / "alert_rules").glob("*.yml"))
RULE_TESTS = sorted((ROOT / "alert_rules" / "tests").glob("*_test.yml"))
RUNBOOK_BASE = "https://github.com/model-monitor/model-monitor/blob/main/docs/runbooks.md#"


def _rules() -> list[dict]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


def test_promtool_checks_and_unit_tests_pass() -> None:
    promtool = binary("promtool")
    result = _run(promtool, "check", "rules", *map(str, RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    result = _run(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    result = _run(promtool, "check", "config", str(ROOT / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    fired, silent, recorded = set(), set(), set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else silent).add(check["alertname"])
            for check in case.get("promql_expr_test", []):
                recorded.add(check["expr"])
    alerts = {r["alert"] for r in _rules() if "alert" in r}
    assert alerts - fired == set(), "alerts without a firing case"
    assert alerts - silent == set(), "alerts without a case where they stay silent"
    records = {r["record"] for r in _rules() if "record" in r}
    assert records - recorded == set(), "recording rules without a test"


def test_alerts_follow_the_mixin_conventions() -> None:
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    sections = {m.lower() for m in re.findall(r"^## (\w+)$", runbooks, re.M)}
    for rule in (r for r in _rules() if "alert" in r):
        name = rule["alert"]
        assert re.fullmatch(r"ModelMonitor[A-Z][A-Za-z]+", name), name
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
        assert rule["annotations"]["runbook_url"] == RUNBOOK_BASE + name.lower(), name
        assert name.lower() in sections, f"{name} has no section in docs/runbooks.md"
        assert "for" in rule, name


def _alertmanager_config(tmp_path: Path) -> Path:
    """alertmanager.yml with its secret files and templates pointed at real files here."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    for name in ("slack_webhook_url", "pagerduty_routing_key", "smtp_password"):
        (secrets / name).write_text("test-secret\n")
    text = (ROOT / "alertmanager" / "alertmanager.yml").read_text()
    text = text.replace("/etc/alertmanager/secrets", str(secrets))
    text = text.replace("/etc/alertmanager/templates", str(ROOT / "alertmanager" / "templates"))
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    return path


def test_alertmanager_config_is_valid(tmp_path) -> None:
    result = _run(binary("amtool"), "check-config", str(_alertmanager_config(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout and "3 inhibit rules" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=ModelMonitorNoPredictions"], "pagerduty-and-slack"),
        (["severity=warning", "alertname=ModelMonitorFeatureDrift"], "slack"),
        (["severity=info", "alertname=ModelMonitorLabelsDelayed"], "email"),
        (["alertname=SomethingUnlabelled"], "email"),
    ],
)
def test_routes_by_severity(tmp_path, labels: list[str], receiver: str) -> None:
    config = _alertmanager_config(tmp_path)
    result = _run(
        binary("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={config}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_secrets_come_only_from_files() -> None:
    config = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    text = yaml.safe_dump(config)
    for literal in ("api_url:", "routing_key:", "service_key:", "auth_password:", "slack_api_url:"):
        assert literal not in text, literal
    assert config["global"]["slack_api_url_file"].startswith("/etc/alertmanager/secrets/")
