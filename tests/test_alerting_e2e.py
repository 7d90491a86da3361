"""Alerting end to end: the real exporter on SQLite, real Prometheus and Alertmanager started from
the repo's prometheus.yml, alert_rules/ and alertmanager/ (rewritten only for ports, intervals,
`for:` durations and receiver URLs), and loopback Slack, PagerDuty and SMTP servers.

Stable traffic sends nothing; drift, a performance drop, a fairness gap, a latency regression and
a stopped exporter each reach exactly the receivers their severity routes to, name the model and
the problem, and resolve when the problem ends. Timings are printed (pytest -s) and returned in
the test report.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from exporter.cli import capture
from exporter.config import load_config
from exporter.logging.prediction_logger import PredictionLogger
from exporter.simulator import AD_SCORE, LabelDelay, Simulator
from tests.binaries import alertmanager, prometheus
from tests.conftest import ROOT, binary
from tests.receivers import Receivers
from tests.servers import free_port, model_monitor, stop, wait_for

MODEL = "ad_score_model_v1"
RATE = 60  # predictions per second


def _exporter_config(tmp: Path) -> Path:
    raw = yaml.safe_load((ROOT / "model-monitor.yml").read_text())
    model = next(m for m in raw["models"] if m["model_id"] == MODEL)
    model |= {
        "drift_window": {"length": "10s", "bucket": "1s"},
        "performance_window": {"length": "15s", "bucket": "1s"},
        "min_samples": 100,
        "min_labeled": 30,
        "fairness": {"min_group_size": 20},
        "alerts": {"latency_p99_seconds": 0.25, "min_label_coverage": 0.1},
    }
    raw["models"] = [model]
    raw["store"]["url"] = f"sqlite:///{tmp / 'store.db'}"
    raw["exporter"] = {"min_refresh_interval": 0.2, "read_lag": 0.2}
    path = tmp / "model-monitor.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _short(text: str) -> str:
    """The test's only changes to the rules: minutes and hours become seconds."""
    text = re.sub(r"for: \d+[mh]", "for: 3s", text)
    text = re.sub(r"\[(5|15)m\]", "[10s]", text)
    return text.replace("[1h] offset 5m", "[60s] offset 10s")


def _prometheus_config(tmp: Path, exporter: str, alertmanager_url: str) -> Path:
    rules = tmp / "alert_rules"
    rules.mkdir()
    for path in (ROOT / "alert_rules").glob("*.yml"):
        (rules / path.name).write_text(_short(path.read_text()))
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


def _alertmanager_config(tmp: Path, receivers: Receivers) -> Path:
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


def test_each_problem_reaches_its_receivers_and_resolves(tmp_path, record_property) -> None:
    binary("promtool")
    receivers = Receivers()
    inbox = receivers.inbox
    config_path = _exporter_config(tmp_path)
    config = load_config(config_path)
    logger = PredictionLogger(config, flush_interval=0.2)
    sim = Simulator(logger, {AD_SCORE: MODEL}, rate=RATE, delay=LabelDelay(0.3, 1.5, 0.05), seed=3)
    end = time.time() - 600
    sim.seed_reference(end - 600, end, 6000)
    capture(config, MODEL, end - 600, end, command="test")
    port = free_port()
    serve = ["serve", "--config", str(config_path), "--listen", f"127.0.0.1:{port}"]
    exporter = model_monitor(*serve, log=tmp_path / "exporter.log")
    traffic = Traffic(sim)
    timings: list[str] = []
    try:
        with (
            alertmanager(_alertmanager_config(tmp_path, receivers), tmp_path) as am_url,
            prometheus(_prometheus_config(tmp_path, f"127.0.0.1:{port}", am_url), tmp_path),
        ):
            traffic.start()
            time.sleep(25)  # stable: windows fill, every rule is evaluated many times
            assert inbox.messages == [], [m.text for m in inbox.messages]
            timings.append("stable phase (25 s): 0 notifications")

            def problem(
                scenario: str | None, alert: str, routes: set[str], timeout: float = 45
            ) -> float:
                start = time.time()
                if scenario is not None:
                    traffic.scenario = scenario
                for receiver in routes:
                    names = MODEL if "ExporterDown" not in alert else ""  # that one is per exporter
                    wait_for(
                        lambda r=receiver, n=names: inbox.find(
                            r, alert, n, resolved=False, since=start
                        ),
                        timeout,
                        f"{alert} at {receiver}",
                    )
                    took = (
                        min(m.at for m in inbox.find(receiver, alert, resolved=False, since=start))
                        - start
                    )
                    timings.append(f"{alert}: injected -> {receiver} in {took:.1f} s")
                for receiver in {"slack", "pagerduty", "email"} - routes:
                    assert not inbox.find(receiver, alert, resolved=False, since=start), (
                        alert,
                        receiver,
                    )
                return start

            def resolved(
                alert: str, routes: set[str], since: float, ended: float, timeout: float = 45
            ) -> None:
                for receiver in routes:
                    wait_for(
                        lambda r=receiver: inbox.find(r, alert, resolved=True, since=since),
                        timeout,
                        f"{alert} resolved at {receiver}",
                    )
                    took = (
                        min(m.at for m in inbox.find(receiver, alert, resolved=True, since=since))
                        - ended
                    )
                    timings.append(
                        f"{alert}: problem ended -> resolved notice at {receiver} in {took:.1f} s"
                    )

            t = problem("drift", "ModelMonitorFeatureDrift", {"slack"})
            assert inbox.find("slack", "ModelMonitorFeatureDrift", "ctr_history", since=t)
            t_perf = problem(
                "performance_drop", "ModelMonitorPerformanceDegraded", {"pagerduty", "slack"}
            )
            resolved("ModelMonitorFeatureDrift", {"slack"}, t, ended=t_perf)
            # A group's halved scores are errors too: performance recovers only on stable traffic.
            traffic.scenario, t_stable = "stable", time.time()
            resolved(
                "ModelMonitorPerformanceDegraded", {"pagerduty", "slack"}, t_perf, ended=t_stable
            )
            t_fair = problem("fairness_gap", "ModelMonitorFairnessViolation", {"slack"})
            assert inbox.find("slack", "ModelMonitorFairnessViolation", "age_group", since=t_fair)
            t_lat = problem("latency_regression", "ModelMonitorLatencyHigh", {"slack"})
            resolved("ModelMonitorFairnessViolation", {"slack"}, t_fair, ended=t_lat)
            traffic.scenario, t_stable = "stable", time.time()
            resolved("ModelMonitorLatencyHigh", {"slack"}, t_lat, ended=t_stable)

            stop(exporter)
            t_down = problem(None, "ModelMonitorExporterDown", {"pagerduty", "slack"})
            exporter, t_up = model_monitor(*serve, log=tmp_path / "exporter2.log"), time.time()
            resolved("ModelMonitorExporterDown", {"pagerduty"}, t_down, ended=t_up)

            # Severity routing held for everything sent, not just what was waited for.
            for message in inbox.find("pagerduty"):
                assert '"severity": "critical"' in message.text or "(critical)" in message.text
            for message in inbox.find("email"):
                assert "(info)" in message.text.splitlines()[0], message.text
            for message in inbox.find("slack"):
                assert "(info)" not in message.text.splitlines()[0]
                assert "runbook: https://" in message.text
    finally:
        traffic.halt.set()
        stop(exporter)
        logger.close()
        receivers.close()
        record_property("timings", timings)  # printed in the terminal summary (conftest)
