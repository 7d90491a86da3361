"""Alert rules and dashboards as a monitoring mixin: one small config, generated output.

Like kubernetes-mixin's `_config`, `mixin/config.yml` holds the deployment facts (job selector,
runbook and Grafana URLs, default `for` durations and severities) and everything a Prometheus
or Grafana loads is generated from it and checked in: `alert_rules/*.yml` from the rule sources
in `mixin/alerts/`, `dashboards/generated/*.json` from `dashboards/*.dashboard.py`, and their
Kubernetes forms (a PrometheusRule, dashboard ConfigMaps for Grafana's sidecar) in
`deploy/kubernetes/base/` (with a copy of the reference `model-monitor.yml` for its config
ConfigMap). `model-monitor mixin --check` (run by `make test`) fails when any of
them is stale.

Rule sources are Prometheus rule files in which `${name}` stands for a config value (PromQL and
Go templates never use `${`); `runbook_url` is added to every alert from `runbook_url_base`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from exporter.config import ConfigError, load_yaml_model

DEFAULT_CONFIG = Path("mixin/config.yml")
RULE_SOURCES = Path("mixin/alerts")
RULES_OUT = Path("alert_rules")
K8S_OUT = Path("deploy/kubernetes/base")
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_DURATION = re.compile(r"^\d+[smhdwy]$|^0$")


class AlertOverride(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    for_: str | None = Field(None, alias="for", pattern=_DURATION.pattern)
    severity: str | None = None


class MixinConfig(BaseModel):
    """The deployment facts rules and dashboards are generated with (mixin/config.yml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    job_selector: str = Field(
        'job="model-monitor"', description="PromQL label matchers of the exporter's targets."
    )
    runbook_url_base: str = Field(
        "https://github.com/model-monitor/model-monitor/blob/main/docs/runbooks.md",
        description="Runbooks page; each alert links to `<base>#<alertname in lower case>`.",
    )
    grafana_url: str = Field(
        "http://localhost:3000", description="Grafana base URL for the alerts' dashboard links."
    )
    ingest_lag_seconds: float = Field(
        300, gt=0, description="Backlog age above which ModelMonitorIngestLagging fires."
    )
    dashboard_tags: list[str] = Field(default_factory=lambda: ["model-monitor"])
    severities: dict[str, str] = Field(
        default_factory=dict,
        description="Severity names of your routing, by the names the rules use "
        "(critical, warning, info); unlisted ones are kept.",
    )
    alerts: dict[str, AlertOverride] = Field(
        default_factory=dict, description="Per alert name: `for` and `severity` overrides."
    )

    def value(self, name: str) -> str:
        values = {
            "job_selector": self.job_selector,
            "grafana_url": self.grafana_url.rstrip("/"),
            "ingest_lag_seconds": f"{self.ingest_lag_seconds:g}",
        }
        if name not in values:
            raise ConfigError(f"unknown placeholder ${{{name}}}; one of {', '.join(values)}")
        return values[name]


_ACTIVE: ContextVar[MixinConfig | None] = ContextVar("mixin", default=None)


def settings() -> MixinConfig:
    """The config being generated with (`dashboards/*.dashboard.py` build from it), or the
    repository's own when none is (`mixin/config.yml` from the working directory)."""
    active = _ACTIVE.get()
    if active is not None:
        return active
    return load(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else MixinConfig()


@contextmanager
def active(config: MixinConfig) -> Iterator[None]:
    token = _ACTIVE.set(config)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def load(path: Path) -> MixinConfig:
    return load_yaml_model(path, MixinConfig, "mixin config")


def _substitute(text: str, config: MixinConfig) -> str:
    return _PLACEHOLDER.sub(lambda m: config.value(m.group(1)), text)


def render_groups(source: str, config: MixinConfig, known: set[str]) -> list[dict[str, Any]]:
    """The rule groups of one source file with the config applied; `known`: alert names seen
    so far (an override for an alert that exists nowhere is an error, not silently ignored)."""
    groups = yaml.safe_load(source)["groups"]
    for group in groups:
        for rule in group["rules"]:
            rule["expr"] = _substitute(rule["expr"], config)
            if "alert" not in rule:
                continue
            name = rule["alert"]
            known.add(name)
            override = config.alerts.get(name, AlertOverride())
            if override.for_:
                rule["for"] = override.for_
            severity = override.severity or rule["labels"]["severity"]
            rule["labels"]["severity"] = config.severities.get(severity, severity)
            annotations = {k: _substitute(v, config) for k, v in rule["annotations"].items()}
            annotations["runbook_url"] = f"{config.runbook_url_base}#{name.lower()}"
            rule["annotations"] = dict(sorted(annotations.items(), key=_annotation_order))
    return groups


def _annotation_order(item: tuple[str, str]) -> int:
    order = ("summary", "description", "runbook_url", "dashboard_url")
    return order.index(item[0]) if item[0] in order else len(order)


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line PromQL, keys in the order written."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any, header: str = "") -> str:
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)
    return header + body


def _header(source: str) -> str:
    return (
        f"# Generated by `model-monitor mixin` from {source} and mixin/config.yml: edit those,\n"
        "# then run `make mixin`. CI fails when this file is stale.\n"
    )


def outputs(root: Path, config: MixinConfig) -> dict[Path, str]:
    """Every generated file (path relative to `root`) and its text."""
    from exporter.visualization.dashboard_files import render_all

    files: dict[Path, str] = {}
    known: set[str] = set()
    all_groups = []
    for source in sorted((root / RULE_SOURCES).glob("*.yml")):
        groups = render_groups(source.read_text(), config, known)
        all_groups += groups
        rel = source.relative_to(root)
        files[RULES_OUT / source.name] = dump_yaml({"groups": groups}, _header(str(rel)))
    unknown = set(config.alerts) - known
    if unknown:
        raise ConfigError(f"mixin config: alerts: no rule is named {', '.join(sorted(unknown))}")
    with active(config):
        dashboards = render_all(root / "dashboards")
    for name, text in dashboards.items():
        files[Path("dashboards/generated") / f"{name}.json"] = text
    files[K8S_OUT / "prometheus-rule.yaml"] = dump_yaml(
        _prometheus_rule(all_groups), _header(str(RULE_SOURCES / "*.yml"))
    )
    # The reference config, for the config ConfigMap (kustomize reads files below it only);
    # replace it in an overlay with your own models.
    files[K8S_OUT / "model-monitor.yml"] = (
        _header("model-monitor.yml") + (root / "model-monitor.yml").read_text()
    )
    files[K8S_OUT / "grafana-dashboards.yaml"] = _header(
        "dashboards/*.dashboard.py"
    ) + "---\n".join(dump_yaml(_dashboard_configmap(n, t)) for n, t in dashboards.items())
    return files


def _prometheus_rule(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The rule groups as a Prometheus Operator PrometheusRule."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "model-monitor",
            "labels": {"app.kubernetes.io/name": "model-monitor", "role": "alert-rules"},
        },
        "spec": {"groups": groups},
    }


def _dashboard_configmap(name: str, text: str) -> dict[str, Any]:
    """A dashboard as the ConfigMap Grafana's dashboard sidecar (label grafana_dashboard) loads."""
    json.loads(text)  # generated JSON: a parse error here is a bug worth failing on
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"model-monitor-dashboard-{name}",
            "labels": {"app.kubernetes.io/name": "model-monitor", "grafana_dashboard": "1"},
            "annotations": {"grafana_folder": "Model monitor"},
        },
        "data": {f"model-monitor-{name}.json": text},
    }


def generate(root: Path, config_path: Path, check: bool = False) -> list[Path]:
    """Write every generated file that differs; return those (with `check`, write nothing)."""
    config = load(root / config_path if not config_path.is_absolute() else config_path)
    changed = []
    for rel, text in outputs(root, config).items():
        path = root / rel
        if not path.exists() or path.read_text() != text:
            changed.append(path)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return changed
