"""Alerting end to end: the real exporter on SQLite, real Prometheus and Alertmanager started from
the repo's prometheus.yml, alert_rules/ and alertmanager/ (rewritten only for ports, intervals,
`for:` durations and receiver URLs), and loopback Slack, PagerDuty and SMTP servers.

Stable traffic sends nothing; drift, a performance drop, a fairness gap, a latency regression and
a stopped exporter each reach exactly the receivers their severity routes to, name the model and
the problem, and resolve when the problem ends. A classifier's estimated drop is alerted before
any label of it arrives. Timings are printed (pytest -s) and returned in
the test report.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests

from exporter.cli import capture
from exporter.config import Config, load_config
from exporter.logging.prediction_logger import PredictionLogger
from exporter.simulator import ACCOUNT_HEALTH, AD_SCORE, LabelDelay, Simulator
from tests.binaries import alertmanager, prometheus
from tests.conftest import binary, metric_value
from tests.receivers import Receivers
from tests.servers import free_port, model_monitor, stop, wait_for
from tests.stack import RATE, Traffic, alertmanager_config, exporter_config, prometheus_config

MODEL = "ad_score_model_v1"
CLASSIFIER = "account_health_model_v1"


def _set_up(tmp_path: Path, model: str) -> tuple[Receivers, Path, Config, PredictionLogger]:
    """Loopback receivers, the exporter's config for `model`, and a logger writing its store."""
    binary("promtool")
    config_path = exporter_config(tmp_path, (model,))
    config = load_config(config_path)
    return Receivers(), config_path, config, PredictionLogger(config, flush_interval=0.2)


def _serve(config_path: Path, port: int, log: Path) -> subprocess.Popen:
    """The exporter serving `config_path` on 127.0.0.1:`port`."""
    listen = f"--web.listen-address=127.0.0.1:{port}"
    return model_monitor("serve", "--config", str(config_path), listen, log=log)


def test_each_problem_reaches_its_receivers_and_resolves(tmp_path, record_property) -> None:
    receivers, config_path, config, logger = _set_up(tmp_path, MODEL)
    inbox = receivers.inbox
    sim = Simulator(logger, {AD_SCORE: MODEL}, rate=RATE, delay=LabelDelay(0.3, 1.5, 0.05), seed=3)
    end = time.time() - 600
    sim.seed_reference(end - 600, end, 6000)
    capture(config, MODEL, end - 600, end, command="test")
    port = free_port()
    exporter = _serve(config_path, port, tmp_path / "exporter.log")
    traffic = Traffic(sim)
    timings: list[str] = []
    try:
        with (
            alertmanager(alertmanager_config(tmp_path, receivers), tmp_path) as am_url,
            prometheus(prometheus_config(tmp_path, f"127.0.0.1:{port}", am_url), tmp_path),
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
            # One notice per (alert, model) group: features whose drift is seen a scrape later
            # arrive in the group's next update, so wait for the one named here.
            wait_for(
                lambda: inbox.find("slack", "ModelMonitorFeatureDrift", "ctr_history", since=t),
                45,
                "ModelMonitorFeatureDrift for ctr_history at slack",
            )
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
            wait_for(
                lambda: inbox.find(
                    "slack", "ModelMonitorFairnessViolation", "age_group", since=t_fair
                ),
                45,
                "ModelMonitorFairnessViolation for age_group at slack",
            )
            t_lat = problem("latency_regression", "ModelMonitorLatencyHigh", {"slack"})
            resolved("ModelMonitorFairnessViolation", {"slack"}, t_fair, ended=t_lat)
            traffic.scenario, t_stable = "stable", time.time()
            resolved("ModelMonitorLatencyHigh", {"slack"}, t_lat, ended=t_stable)

            stop(exporter)
            t_down = problem(None, "ModelMonitorExporterDown", {"pagerduty", "slack"})
            exporter, t_up = _serve(config_path, port, tmp_path / "exporter2.log"), time.time()
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


def test_estimated_drop_is_alerted_before_any_label_of_it_arrives(
    tmp_path, record_property
) -> None:
    """The classifier's inputs shift towards its decision boundary; its labels take an hour.
    ModelMonitorEstimatedPerformanceDegraded reaches Slack while the exporter has read no label
    at all since the stable phase, and no labelled prediction is in the performance window."""
    receivers, config_path, config, logger = _set_up(tmp_path, CLASSIFIER)
    inbox = receivers.inbox
    end = time.time() - 600
    reference = Simulator(logger, {ACCOUNT_HEALTH: CLASSIFIER}, delay=LabelDelay(1, 5, 0.0), seed=4)
    reference.seed_reference(end - 600, end, 6000)
    capture(config, CLASSIFIER, end - 600, end, command="test")
    sim = Simulator(logger, {ACCOUNT_HEALTH: CLASSIFIER}, delay=LabelDelay(3600, 7200, 0.0), seed=5)
    port = free_port()
    exporter = _serve(config_path, port, tmp_path / "exporter.log")
    traffic = Traffic(sim)
    alert = "ModelMonitorEstimatedPerformanceDegraded"

    def exposed(name: str) -> float | None:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return metric_value(text, name, model_id=CLASSIFIER)

    try:
        with (
            alertmanager(alertmanager_config(tmp_path, receivers), tmp_path) as am_url,
            prometheus(prometheus_config(tmp_path, f"127.0.0.1:{port}", am_url), tmp_path),
        ):
            traffic.start()
            time.sleep(20)  # stable: the window fills, the estimate matches the baseline
            assert not inbox.find("slack", alert), [m.text for m in inbox.messages]
            labels_before = exposed("model_labels_total")
            shifted = time.time()
            traffic.scenario = "covariate_shift"
            took = wait_for(
                lambda: inbox.find("slack", alert, CLASSIFIER, since=shifted), 45, alert
            )
            assert exposed("model_labels_total") == labels_before
            assert exposed("model_window_labeled_predictions") == 0
            assert exposed("model_estimated_performance_recall") < 0.5  # baseline: about 0.7
            record_property(
                "timings", [f"{alert}: shift -> slack in {took:.1f} s, 0 labels of it read"]
            )
    finally:
        traffic.halt.set()
        stop(exporter)
        logger.close()
        receivers.close()
