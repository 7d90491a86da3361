"""Every code example of the seed document runs as written (import path `exporter` instead of
`app.monitoring`) on the simulator's data, and returns the documented shape with sensible values."""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import numpy as np
import pandas as pd
import pytest
import requests
import yaml

from exporter.cli import capture
from exporter.logging.prediction_logger import PredictionLogger
from exporter.simulator import AD_SCORE, DRIFTED_FEATURES, LabelDelay, Simulator, ad_score_batch
from tests.binaries import alertmanager
from tests.conftest import ROOT

SEED = (ROOT / "docs" / "seed.md").read_text()
EXAMPLES = {
    block.split("import ", 1)[1].split()[0]: block.replace("app.monitoring", "exporter")
    for block in re.findall(r"```python\n(.*?)```", SEED, re.S)
}
AD_FEATURES = ["ctr_history", "ad_length", "sentiment_score", "bid", "placement", "device"]
ATTRIBUTES = ["age_group", "gender", "location_type", "language", "value_tier"]


def _frame(scenario: str, n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    batch = ad_score_batch(np.random.default_rng(seed), n, scenario)
    frame = pd.DataFrame({**batch.features, **batch.attributes})
    return frame, batch.prediction, batch.actual


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory):
    """The reference config on a fresh SQLite store with an hour of stable traffic and baselines."""
    tmp = tmp_path_factory.mktemp("seed")
    raw = yaml.safe_load((ROOT / "model-monitor.yml").read_text())
    raw["store"]["url"] = f"sqlite:///{tmp / 'store.db'}"
    path = tmp / "model-monitor.yml"
    path.write_text(yaml.safe_dump(raw))
    mp = pytest.MonkeyPatch()
    mp.setenv("MODEL_MONITOR_CONFIG", str(path))
    from exporter.config import load_config

    config = load_config(path)
    with PredictionLogger(config) as logger:
        sim = Simulator(
            logger,
            {AD_SCORE: "ad_score_model_v1", "account_health": "account_health_model_v1"},
            delay=LabelDelay(5, 30),
        )
        end = time.time() - 7200
        sim.seed_reference(end - 3600, end, 4000)
    for model in config.models:
        capture(config, model.model_id, end - 3600, end, command="test")
    yield config, tmp
    mp.undo()


def test_the_seed_has_the_examples_we_run() -> None:
    assert set(EXAMPLES) == {
        "AdScoreModelMonitor",
        "DataDriftDetector",
        "FairnessAssessor",
        "PerformanceTracker",
        "RetrainingScheduler",
        "MonitoringDashboardGenerator",
        "AlertManager",
        "MetricsStore",
    }


def test_model_monitor_example(seeded, capsys) -> None:
    recent_features, recent_predictions, recent_actuals = _frame("drift", 1500, 1)
    namespace: dict = {
        "recent_features": recent_features,
        "recent_predictions": recent_predictions,
        "recent_actuals": recent_actuals,
    }
    exec(EXAMPLES["AdScoreModelMonitor"], namespace)
    report = namespace["health_report"]
    assert report["model_id"] == "ad_score_model_v1"
    assert dt.datetime.strptime(report["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    assert report["status"] in ("warning", "critical")
    assert {f["type"] for f in report["findings"]} >= {"data_drift"}
    drift = report["metrics"]["drift"]
    assert drift["drift_detected"] is True
    assert set(drift["drifted_features"]) == set(DRIFTED_FEATURES[AD_SCORE])
    assert set(drift["feature_metrics"]["ctr_history"]) >= {
        "kl_divergence",
        "psi",
        "drift_detected",
    }
    overall = report["metrics"]["performance"]["overall"]
    assert set(overall) >= {"rmse", "mae", "r2"} and 0 < overall["rmse"] < 20
    segments = report["metrics"]["performance"]["segments"]
    assert set(segments) >= {"high_value", "medium_value", "low_value"}
    tiers = ("high_value", "medium_value", "low_value", "other")
    assert sum(segments[t]["count"] for t in tiers if t in segments) == 1500
    assert "top_bids" in segments  # the edge-case slice of the config
    assert "Issue: data_drift, Severity:" in capsys.readouterr().out


def test_model_monitor_is_healthy_on_stable_data(seeded) -> None:
    from exporter.monitors import AdScoreModelMonitor

    features, predictions, actuals = _frame("stable", 1500, 2)
    report = AdScoreModelMonitor(model_id="ad_score_model_v1").check_model_health(
        features, predictions, actuals
    )
    assert report["status"] == "healthy", report["findings"]
    assert report["metrics"]["drift"]["drifted_features"] == []


def test_drift_detector_example(seeded) -> None:
    baseline_data = _frame("stable", 3000, 3)[0][AD_FEATURES]
    current_data = _frame("drift", 2000, 4)[0][AD_FEATURES]
    namespace = {"baseline_data": baseline_data, "current_data": current_data}
    exec(EXAMPLES["DataDriftDetector"], namespace)
    results = namespace["drift_results"]
    assert results["drift_detected"] is True
    assert set(results["drifted_features"]) == set(DRIFTED_FEATURES[AD_SCORE])
    for name in AD_FEATURES:
        m = results["feature_metrics"][name]
        assert set(m) >= {"kl_divergence", "psi", "js_divergence", "drift_detected"}
        assert m["drift_detected"] == (name in DRIFTED_FEATURES[AD_SCORE])


def test_fairness_assessor_example(seeded, capsys) -> None:
    user_metadata, model_predictions, actual_values = _frame("fairness_gap", 4000, 5)
    namespace = {
        "model_predictions": model_predictions,
        "actual_values": actual_values,
        "user_metadata": user_metadata,
    }
    exec(EXAMPLES["FairnessAssessor"], namespace)
    report = namespace["fairness_report"]
    assert report["overall_fairness"] is False
    assert report["attributes"]["age_group"]["violation"] is True
    assert report["attributes"]["gender"]["violation"] is False
    recommendation = report["recommendations"][0]
    assert recommendation["attribute"] == "age_group" and recommendation["group"] == "55+"
    assert "Issue with age_group:" in capsys.readouterr().out


def test_performance_tracker_example(seeded) -> None:
    namespace: dict = {"datetime": dt.datetime}
    exec(EXAMPLES["PerformanceTracker"], namespace)
    history = namespace["performance_history"]
    assert list(history.columns)[:1] == ["timestamp"] and history.empty  # 2023 holds no entries
    degradation = namespace["degradation"]
    assert set(degradation) >= {"degraded", "metrics", "threshold_percent"}
    from exporter.performance import PerformanceTracker

    tracker = PerformanceTracker(model_id="ad_score_model_v1")
    today = tracker.get_metrics_history(
        start_date=dt.date.today().isoformat(), metrics=["rmse", "r2"]
    )
    assert today["rmse"].iloc[-1] == 8.7 and today["r2"].iloc[-1] == 0.85
    baseline_rmse = tracker.baseline_metrics()["rmse"]
    check = tracker.check_degradation({"rmse": baseline_rmse * 1.2}, threshold_percent=10)
    assert check["degraded"] and check["metrics"]["rmse"]["change_percent"] == pytest.approx(20)
    assert not tracker.check_degradation({"rmse": baseline_rmse * 1.05}, threshold_percent=10)[
        "degraded"
    ]


def test_retraining_scheduler_example(seeded, capsys) -> None:
    from exporter.drift import DataDriftDetector
    from exporter.performance import PerformanceTracker

    drift_results = DataDriftDetector(_frame("stable", 3000, 6)[0][AD_FEATURES]).detect_drift(
        _frame("drift", 2000, 7)[0][AD_FEATURES]
    )
    tracker = PerformanceTracker("ad_score_model_v1")
    performance_results = tracker.check_degradation(
        {"rmse": tracker.baseline_metrics()["rmse"] * 1.5}
    )
    namespace = {"drift_results": drift_results, "performance_results": performance_results}
    exec(EXAMPLES["RetrainingScheduler"], namespace)
    decision = namespace["retraining_decision"]
    assert decision["should_retrain"] is True and decision["urgency"] == "high"
    assert "Model retraining recommended with high urgency" in capsys.readouterr().out


def test_metrics_store_example(seeded) -> None:
    namespace = {
        "datetime": dt.datetime,
        "feature_distributions": {"bid": {"mean": 1.8, "std": 0.7}},
        "prediction_distribution": np.array([0.1, 0.3, 0.6]),
        "performance_metrics": {"rmse": 8.7},
    }
    exec(EXAMPLES["MetricsStore"], namespace)
    historical = namespace["historical_metrics"]
    assert historical.empty  # the example asks for 2023
    from exporter.storage import MetricsStore

    recent = MetricsStore().get_metrics("ad_score_model_v1", start_date=dt.date.today().isoformat())
    assert {"rmse", "mae", "r2"} <= set(recent["metric"])


def test_alert_manager_example_reaches_a_real_alertmanager(seeded, tmp_path, monkeypatch) -> None:
    (tmp_path / "am.yml").write_text(
        "route: {receiver: blackhole}\nreceivers: [{name: blackhole}]\n"
    )
    with alertmanager(tmp_path / "am.yml", tmp_path) as url:
        monkeypatch.setenv("MODEL_MONITOR_ALERTMANAGER_URL", url)
        namespace: dict = {}
        exec(EXAMPLES["AlertManager"], namespace)
        alerts = requests.get(f"{url}/api/v2/alerts", timeout=5).json()
    assert len(alerts) == 1
    labels = alerts[0]["labels"]
    assert labels["model_id"] == "ad_score_model_v1" and labels["severity"] == "warning"
    assert labels["finding_type"] == "data_drift"
    assert alerts[0]["annotations"]["description"] == "Data drift detected in 3 features"


def test_alert_manager_unreachable_fails_softly(monkeypatch) -> None:
    from exporter.config import AlertingConfig
    from exporter.performance import AlertManager
    from tests.servers import free_port

    manager = AlertManager(f"http://127.0.0.1:{free_port()}", AlertingConfig(timeout=2))
    started = time.monotonic()
    result = manager.send_alert(
        "critical", "m", [{"type": "x", "severity": "high", "description": "d"}]
    )
    assert result["status"] == "failed" and "error" in result
    assert time.monotonic() - started < 2 + 1


def test_dashboard_generator_example(seeded, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(EXAMPLES["MonitoringDashboardGenerator"], namespace)
    page = (tmp_path / "ad_score_model_dashboard.html").read_text()
    for section in (
        "Performance",
        "Data drift",
        "Prediction distribution",
        "Fairness",
        "Error analysis",
        "Resource utilization",
    ):
        assert f"<h2>{section}</h2>" in page
    assert "no data in this range" in page  # the example asks for 2023
    namespace["dashboard"].save(tmp_path / "ad_score.json")
    grafana = json.loads((tmp_path / "ad_score.json").read_text())
    model = next(v for v in grafana["templating"]["list"] if v["name"] == "model_id")
    assert model["current"]["value"] == "ad_score_model_v1"
    assert grafana["time"]["from"].startswith("2023-01-01")
