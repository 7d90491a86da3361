"""The deployment files. deploy/kubernetes rendered by the real `kubectl kustomize` and checked
offline: core objects against Kubernetes' own OpenAPI schemas (kubernetes-validate), the
Prometheus Operator objects against the fields of its API reference, the PrometheusRule through
`promtool check rules`, and the objects against each other (selectors, ports, probes, config map
names, flags). The systemd unit and the Dockerfile run commands the CLI accepts."""

from __future__ import annotations

import json
import re
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from exporter.cli import build_parser
from tests.conftest import ROOT, binary

KUSTOMIZATIONS = ("base", "overlays/sharded")
K8S_VERSION = "1.30.0"
# Prometheus Operator durations (monitoring.coreos.com/v1 Duration).
DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
OPERATOR_SCHEMAS = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["selector", "endpoints"],
        "additionalProperties": False,
        "properties": {
            "selector": {
                "type": "object",
                "properties": {"matchLabels": LABELS},
                "additionalProperties": False,
            },
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string", "pattern": "^/"},
                        "scheme": {"enum": ["http", "https"]},
                        "interval": {"type": "string", "pattern": DURATION},
                        "scrapeTimeout": {"type": "string", "pattern": DURATION},
                    },
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["groups"],
        "additionalProperties": False,
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "rules"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "rules": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["expr"],
                                "additionalProperties": False,
                                "properties": {
                                    "alert": {"type": "string"},
                                    "record": {"type": "string"},
                                    "expr": {"type": "string"},
                                    "for": {"type": "string", "pattern": DURATION},
                                    "labels": LABELS,
                                    "annotations": LABELS,
                                },
                            },
                        },
                    },
                },
            }
        },
    },
}


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def objects(request: pytest.FixtureRequest) -> dict[str, dict]:
    out = subprocess.run(
        [binary("kubectl"), "kustomize", str(ROOT / "deploy" / "kubernetes" / request.param)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def _one(objects: dict[str, dict], *kinds: str) -> dict:
    (found,) = [
        o
        for o in objects.values()
        if o["kind"] in kinds and o["metadata"]["name"] == "model-monitor"
    ]
    return found


def test_every_object_validates_offline(objects) -> None:
    kinds = {o["kind"] for o in objects.values()}
    assert kinds - {"Deployment", "StatefulSet"} == {
        "Service",
        "ConfigMap",
        "ServiceMonitor",
        "PrometheusRule",
    }
    assert len(kinds & {"Deployment", "StatefulSet"}) == 1
    for key, obj in objects.items():
        assert obj["metadata"]["namespace"] == "monitoring", key
        if obj["kind"] in OPERATOR_SCHEMAS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1", key
            jsonschema.validate(obj["spec"], OPERATOR_SCHEMAS[obj["kind"]])
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_prometheus_rule_is_the_alert_rules_and_passes_promtool(objects, tmp_path) -> None:
    groups = _one(objects, "PrometheusRule")["spec"]["groups"]
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    subprocess.run([binary("promtool"), "check", "rules", str(rules)], check=True, timeout=60)
    on_disk = [
        g
        for f in sorted((ROOT / "alert_rules").glob("*.yml"))
        for g in yaml.safe_load(f.read_text())["groups"]
    ]
    assert groups == on_disk


def test_objects_agree_with_each_other(objects) -> None:
    deployment = _one(objects, "Deployment", "StatefulSet")
    service = _one(objects, "Service")
    monitor = _one(objects, "ServiceMonitor")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    pod_labels = pod["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    port_names = {p["name"] for p in container["ports"]}
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in port_names
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [service_port["name"]]
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in port_names

    args = build_parser().parse_args(container["args"])
    assert args.command == "serve"
    if deployment["kind"] == "StatefulSet":  # one shard per pod, as many shards as pods
        assert args.shard == f"auto/{deployment['spec']['replicas']}"
    else:
        assert args.shard is None and deployment["spec"]["replicas"] == 1
    assert int(args.listen.rsplit(":", 1)[1]) == next(
        p["containerPort"] for p in container["ports"] if p["name"] == service_port["targetPort"]
    )
    mounts = {v["name"]: v for v in pod["spec"]["volumes"]}
    config_map = mounts["config"]["configMap"]["name"]
    assert f"ConfigMap/{config_map}" in objects  # kustomize's hashed name, rewritten
    assert args.config.startswith(
        next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "config")
    )
    assert (
        objects[f"ConfigMap/{config_map}"]["data"]["model-monitor.yml"].split("\n", 2)[2]
        == (ROOT / "model-monitor.yml").read_text()
    )


def test_dashboards_are_sidecar_config_maps_of_the_generated_json(objects) -> None:
    found = {}
    for obj in objects.values():
        if obj["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            ((name, text),) = obj["data"].items()
            found[name] = json.loads(text)
    generated = {
        f"model-monitor-{p.stem}.json": json.loads(p.read_text())
        for p in (ROOT / "dashboards" / "generated").glob("*.json")
    }
    assert found == generated


def _unit(path) -> dict[str, dict[str, str]]:
    """A systemd unit's sections and keys (continuation lines joined)."""
    text = path.read_text().replace("\\\n", " ")
    sections: dict[str, dict[str, str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current[key] = value
    return sections


def test_systemd_unit_runs_a_valid_serve_command() -> None:
    unit = _unit(ROOT / "deploy" / "systemd" / "model-monitor.service")
    assert {"Unit", "Service", "Install"} <= unit.keys()
    command = unit["Service"]["ExecStart"].split()
    assert command[0].endswith("/model-monitor")
    args = build_parser().parse_args(command[1:])
    assert args.command == "serve" and args.web_config and args.config
    assert unit["Service"]["User"] != "root"
    assert "MODEL_MONITOR_STORE_URL" not in unit["Service"].get("Environment", "")


def test_dockerfile_runs_and_checks_the_same_listener() -> None:
    text = (ROOT / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    check = json.loads(re.search(r"^\s+CMD (\[.*\])$", text, re.M).group(1))
    serve = build_parser().parse_args(cmd[1:])
    probe = build_parser().parse_args(check[1:])
    assert (serve.command, probe.command) == ("serve", "healthcheck")
    port = serve.listen.rsplit(":", 1)[1]
    assert probe.listen == f"127.0.0.1:{port}"
    assert f"EXPOSE {port}" in text


def test_the_sharded_pods_run_the_deployments_pod() -> None:
    """The StatefulSet of the sharded overlay is the base Deployment's pod plus --shard."""
    base = ROOT / "deploy" / "kubernetes"
    deployment = yaml.safe_load((base / "base" / "deployment.yaml").read_text())
    stateful = yaml.safe_load((base / "overlays" / "sharded" / "statefulset.yaml").read_text())
    pod = stateful["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    container["args"] = [a for a in container["args"] if not a.startswith("--shard")]
    assert pod == deployment["spec"]["template"]
    assert stateful["spec"]["selector"] == deployment["spec"]["selector"]
