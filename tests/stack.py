"""A whole monitoring stack on loopback for tests: exporter config with second-long windows, the
repo's Prometheus config and rules with minutes turned into seconds, and simulated traffic."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from exporter.simulator import Simulator
from tests.conftest import ROOT
from tests.receivers import Receivers

RATE = 60  # predictions per second per model


def exporter_config(tmp: Path, model_ids: tuple[str, ...]) -> Path:
    """The reference config for `model_ids`, windows of seconds, a SQLite store in `tmp`."""
    raw = yaml.safe_load((ROOT / "model-monitor.yml").read_text())
    raw["models"] = [m for m in raw["models"] if m["model_id"] in model_ids]
    for model in raw["models"]:
        model |= {
            "drift_window": {"length": "10s", "bucket": "1s"},
            "performance_window": {"length": "15s", "bucket": "1s"},
            "min_samples": 100,
            "min_labeled": 30,
            "fairness": {"min_group_size": 20},
            "alerts": {"latency_p99_seconds": 0.25, "min_label_coverage": 0.1},
        }
    raw["store"]["url"] = f"sqlite:///{tmp / 'store.db'}"
    raw["exporter"] = {"min_refresh_interval": 0.2, "read_lag": 0.2}
    path = tmp / "model-monitor.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def short_durations(text: str) -> str:
    """The test's only changes to the rules: minutes and hours become seconds. The exporter's
    liveness waits 10 s, not 3: with 1 s scrape timeouts on a machine the parallel test workers
    share, a scrape or two now and then miss their second (the real rule waits 2 minutes)."""
    text = re.sub(r"for: \d+[mh]", "for: 3s", text)
    text = re.sub(
        r"(alert: ModelMonitorExporterDown\n\s+expr: .*\n\s+)for: 3s", r"\1for: 10s", text
    )
    text = re.sub(r"\[(5|15)m\]", "[10s]", text)
    return text.replace("[1h] offset 5m", "[60s] offset 10s")


def prometheus_config(tmp: Path, exporter: str, alertmanager_url: str) -> Path:
    rules = tmp / "alert_rules"
    rules.mkdir()
    for path in (ROOT / "alert_rules").glob("*.yml"):
        (rules / path.name).write_text(short_durations(path.read_text()))
    raw = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    raw["global"] |= {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    raw["rule_files"] = [str(rules / "*.yml")]
    raw["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
        alertmanager_url.removeprefix("http://")
    ]
    for job in raw["scrape_configs"]:
        job.pop("scrape_timeout", None)
        if job["job_name"] == "model-monitor":
            job["static_configs"][0]["targets"] = [exporter]
    raw["scrape_configs"] = [j for j in raw["scrape_configs"] if j["job_name"] == "model-monitor"]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def alertmanager_config(tmp: Path, receivers: Receivers) -> Path:
    secrets = tmp / "secrets"
    secrets.mkdir()
    (secrets / "slack_webhook_url").write_text(f"{receivers.http_url}/slack\n")
    (secrets / "pagerduty_routing_key").write_text("test-routing-key\n")
    text = (ROOT / "alertmanager" / "alertmanager.yml").read_text()
    text = text.replace("/etc/alertmanager/secrets", str(secrets))
    text = text.replace("/etc/alertmanager/templates", str(ROOT / "alertmanager" / "templates"))
    raw = yaml.safe_load(text)
    raw["global"]["smtp_smarthost"] = f"127.0.0.1:{receivers.smtp_port}"
    raw["route"] |= {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}
    for receiver in raw["receivers"]:
        for config in receiver.get("pagerduty_configs", []):
            config["url"] = f"{receivers.http_url}/v2/enqueue"
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


class Traffic(threading.Thread):
    """The simulator at RATE predictions/s, switching scenario when told."""

    def __init__(self, sim: Simulator) -> None:
        super().__init__(daemon=True)
        self.sim, self.scenario, self.halt = sim, "stable", threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            now = time.time()
            self.sim.emit(
                now,
                RATE // 10,
                self.scenario,
                timestamps=np.sort(now - self.sim.rng.uniform(0, 0.1, RATE // 10)),
            )
            self.sim.deliver_labels(now)
            self.sim.logger.flush()
            self.halt.wait(0.1)
