"""The mixin: everything Prometheus and Grafana load is generated from mixin/config.yml and the
rule sources, up to date in the repository, and follows the config when it changes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from exporter import mixin
from exporter.config import ConfigError
from tests.conftest import ROOT, binary


def test_generated_files_are_up_to_date() -> None:
    assert mixin.generate(ROOT, mixin.DEFAULT_CONFIG, check=True) == []


@pytest.fixture
def root(tmp_path):
    """A copy of what the generator reads."""
    shutil.copytree(ROOT / "mixin", tmp_path / "mixin")
    (tmp_path / "dashboards").mkdir()
    for source in (ROOT / "dashboards").glob("*.dashboard.py"):
        shutil.copy(source, tmp_path / "dashboards")
    shutil.copy(ROOT / "model-monitor.yml", tmp_path)
    return tmp_path


def _configure(root, **settings) -> None:
    (root / "mixin" / "config.yml").write_text(yaml.safe_dump(settings))


def _alerts(root) -> dict[str, dict]:
    return {
        rule["alert"]: rule
        for path in (root / "alert_rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_changing_the_config_regenerates_rules_and_dashboards(root) -> None:
    _configure(
        root,
        job_selector='job="mm-prod",cluster="eu1"',
        runbook_url_base="https://runbooks.example.org/model-monitor",
        grafana_url="https://grafana.example.org/",
        severities={"critical": "page"},
        alerts={"ModelMonitorFeatureDrift": {"for": "45m", "severity": "info"}},
    )
    written = mixin.generate(root, mixin.DEFAULT_CONFIG)
    assert mixin.generate(root, mixin.DEFAULT_CONFIG, check=True) == []
    assert len(written) == len(list((root / "mixin" / "alerts").glob("*.yml"))) + 5

    alerts = _alerts(root)
    original = _alerts(ROOT)
    assert alerts.keys() == original.keys()
    for name, rule in alerts.items():
        assert rule["annotations"]["runbook_url"] == (
            f"https://runbooks.example.org/model-monitor#{name.lower()}"
        )
        link = rule["annotations"].get("dashboard_url", "https://grafana.example.org/d/")
        assert link.startswith("https://grafana.example.org/d/"), name
        expected = {"critical": "page"}.get(original[name]["labels"]["severity"])
        if name != "ModelMonitorFeatureDrift":
            assert rule["labels"]["severity"] == (
                expected or original[name]["labels"]["severity"]
            ), name
            assert rule.get("for") == original[name].get("for"), name
    assert alerts["ModelMonitorFeatureDrift"]["for"] == "45m"
    assert alerts["ModelMonitorFeatureDrift"]["labels"]["severity"] == "info"
    assert alerts["ModelMonitorExporterDown"]["labels"]["severity"] == "page"
    assert alerts["ModelMonitorExporterDown"]["expr"] == 'up{job="mm-prod",cluster="eu1"} == 0'

    generated = [*(root / "alert_rules").glob("*.yml"), *(root / "deploy").rglob("*.yaml")]
    generated += (root / "dashboards" / "generated").glob("*.json")
    for path in generated:
        assert 'job="model-monitor"' not in path.read_text(), path
    for path in (root / "alert_rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                # every selector of the exporter's metrics carries the job selector
                for selector in re.findall(
                    r"\b(?:model_\w+|job_model_id:\S+?|up)\{([^}]*)\}", rule["expr"]
                ):
                    assert selector.startswith('job="mm-prod",cluster="eu1"'), rule["expr"]
        subprocess.run([binary("promtool"), "check", "rules", str(path)], check=True, timeout=60)

    for path in (root / "dashboards" / "generated").glob("*.json"):
        variables = {v["name"]: v for v in json.loads(path.read_text())["templating"]["list"]}
        assert variables["job"]["query"] == (
            'label_values(model_monitor_build_info{job="mm-prod",cluster="eu1"}, job)'
        )
        assert variables["datasource"]["type"] == "datasource"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"alerts": {"ModelMonitorNoSuchThing": {"for": "5m"}}}, "no rule is named"),
        ({"alerts": {"ModelMonitorStale": {"for": "five minutes"}}}, "for"),
        ({"grafana": "x"}, "grafana"),
    ],
)
def test_a_bad_mixin_config_names_the_key(root, settings, message) -> None:
    _configure(root, **settings)
    with pytest.raises(ConfigError, match=message):
        mixin.generate(root, mixin.DEFAULT_CONFIG)


def test_an_unknown_placeholder_in_a_rule_source_fails(root) -> None:
    source = root / "mixin" / "alerts" / "drift.yml"
    source.write_text(source.read_text().replace("${job_selector}", "${jobselector}", 1))
    with pytest.raises(ConfigError, match=r"unknown placeholder \$\{jobselector\}"):
        mixin.generate(root, mixin.DEFAULT_CONFIG)


def test_dashboards_scope_every_query_by_job_and_use_the_rate_interval() -> None:
    for path in (ROOT / "dashboards" / "generated").glob("*.json"):
        model = json.loads(path.read_text())
        for panel in model["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                assert 'job=~"$job"' in expr, (panel["title"], expr)
                assert not re.search(r"\[\d+[smh]\]", expr), (panel["title"], expr)
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
            assert unit != "reqps", panel["title"]  # predictions and rows are not requests
