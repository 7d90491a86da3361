"""Health, retraining and mitigation: one set of numbers everywhere; triggers fire, or not."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from fairlearn.metrics import demographic_parity_ratio

from exporter.app import create_app
from exporter.config import parse_config
from exporter.fairness import mitigator
from exporter.logging.prediction_logger import PredictionLogger
from exporter.monitors import ModelMonitor, RetrainingScheduler, SystemMonitor
from exporter.monitors.retraining_scheduler import RETRAINED_ACTION, Evidence, decide
from exporter.monitors.system_monitor import latency_quantile
from exporter.service import MonitorService
from exporter.storage.audit import record
from tests.conftest import (
    REGRESSION_MODEL,
    T0,
    Clock,
    log_regression,
    make_config,
    metric_value,
    regression_rows,
    seed_regression,
)

SAME_WINDOW = {
    **REGRESSION_MODEL,
    "drift_window": {"length": "10m", "bucket": "1m"},
    "performance_window": {"length": "10m", "bucket": "1m"},
    "protected_attributes": ["tier"],
}


def test_python_api_json_and_metrics_agree(tmp_path) -> None:
    config = make_config(f"sqlite:///{tmp_path / 's.db'}", models=[SAME_WINDOW])
    seed_regression(config, np.random.default_rng(21))
    service = MonitorService(config, clock=Clock(T0))
    app = create_app(config, service)
    service.start_warmup().join()
    client = app.test_client()
    text = client.get("/metrics").text
    body = client.get("/api/v1/models/reg/health").get_json()

    # The same rows through the Python API: the window's predictions with their labels.
    import datetime as dt

    import sqlalchemy as sa

    window_start = dt.datetime.fromtimestamp(T0 - 9 * 60, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    with sa.create_engine(config.store.url).connect() as conn:
        frame = pd.read_sql(
            sa.text(
                "SELECT p.*, l.actual FROM reg_predictions p JOIN reg_labels l "
                "USING (prediction_id) WHERE p.created_at >= :start"
            ),
            conn,
            params={"start": window_start},
        )
    assert len(frame) == body["metrics"]["window"]["predictions"] == 200
    api = ModelMonitor(
        "reg", config=config, baseline=service.refreshers["reg"].baseline
    ).check_model_health(frame, frame["prediction"], frame["actual"])

    for feature in ("x1", "x2", "color"):
        from_metrics = metric_value(text, "model_feature_psi", model_id="reg", feature=feature)
        assert body["metrics"]["drift"]["feature_metrics"][feature]["psi"] == pytest.approx(
            from_metrics, rel=1e-12
        )
        assert api["metrics"]["drift"]["feature_metrics"][feature]["psi"] == pytest.approx(
            from_metrics, rel=1e-9
        )
    for metric in ("rmse", "mae", "r2"):
        from_metrics = metric_value(
            text, f"model_performance_{metric}", model_id="reg", segment="all"
        )
        assert body["metrics"]["performance"]["overall"][metric] == pytest.approx(
            from_metrics, rel=1e-12
        )
        assert api["metrics"]["performance"]["overall"][metric] == pytest.approx(
            from_metrics, rel=1e-9
        )
    assert api["status"] == body["status"]
    assert (
        metric_value(
            text, "model_health_status", model_id="reg", model_health_status=body["status"]
        )
        == 1
    )
    assert [f["type"] for f in api["findings"]] == [f["type"] for f in body["findings"]]
    models = client.get("/api/v1/models").get_json()["models"]
    assert models == [
        {
            "model_id": "reg",
            "kind": "regression",
            "up": True,
            "status": body["status"],
            "baseline_version": 1,
        }
    ]
    assert client.get("/api/v1/models/nope/health").status_code == 404


def test_group_thresholds_reach_the_four_fifths_line_they_promise() -> None:
    rng = np.random.default_rng(3)
    groups = rng.choice(["a", "b", "c"], 6000, p=[0.5, 0.3, 0.2])
    scores = np.clip(rng.beta(2, 3, 6000) + np.where(groups == "c", -0.2, 0.0), 0, 1)
    before = demographic_parity_ratio(np.zeros(6000), scores >= 0.5, sensitive_features=groups)
    assert before < 0.8
    thresholds = mitigator.parity_thresholds(scores, groups, 0.5)
    _, promised = mitigator.parity_after(scores, groups, thresholds, 0.5)
    selected = mitigator.apply_thresholds(scores, groups, thresholds, 0.5)
    after = demographic_parity_ratio(np.zeros(6000), selected, sensitive_features=groups)
    assert after == pytest.approx(promised, rel=1e-12)
    assert after >= 0.8


def test_opportunity_thresholds_equalise_true_positive_rates() -> None:
    rng = np.random.default_rng(4)
    groups = rng.choice(["a", "b"], 5000)
    labels = (rng.random(5000) < 0.4).astype(int)
    scores = np.clip(0.3 + 0.3 * labels + rng.normal(0, 0.15, 5000) - 0.15 * (groups == "b"), 0, 1)
    thresholds = mitigator.opportunity_thresholds(scores, labels, groups, 0.5)
    selected = mitigator.apply_thresholds(scores, groups, thresholds, 0.5)
    tpr = [selected[(groups == g) & (labels == 1)].mean() for g in ("a", "b")]
    assert abs(tpr[0] - tpr[1]) < 0.01


def test_reweighing_equalises_weighted_label_rates() -> None:
    rng = np.random.default_rng(5)
    groups = rng.choice(["x", "y", "z"], 3000, p=[0.6, 0.3, 0.1])
    labels = (rng.random(3000) < np.select([groups == "x", groups == "y"], [0.6, 0.3], 0.1)).astype(
        int
    )
    weights = mitigator.reweighing(groups, labels)
    overall = labels.mean()
    for g in ("x", "y", "z"):
        mask = groups == g
        assert np.average(labels[mask], weights=weights[mask]) == pytest.approx(overall, rel=1e-12)
    assert weights.sum() == pytest.approx(len(labels), rel=1e-12)  # total weight preserved


MODEL = parse_config({"models": [{**REGRESSION_MODEL, "retraining": {"cooldown": "1d"}}]}).models[0]
FEATURES = ["x1", "x2", "color"]


@pytest.mark.parametrize(
    ("evidence", "urgency", "trigger"),
    [
        (Evidence(FEATURES, [], degradation={"rmse": 0.30}), "high", "performance_degradation"),
        (Evidence(FEATURES, [], degradation={"rmse": 0.12}), "medium", "performance_degradation"),
        (Evidence(FEATURES, ["x1"], degradation={"rmse": 0.0}), "medium", "feature_drift"),
        (
            Evidence(FEATURES, [], prediction_drift=True, label_coverage=0.5),
            "medium",
            "prediction_drift",
        ),
        (Evidence(FEATURES, [], fairness_violations=["tier"]), "medium", "fairness_violation"),
        (Evidence(FEATURES, ["x1"], label_coverage=0.01), "medium", "insufficient_labels"),
        (
            Evidence(FEATURES, [], estimated_degradation={"rmse": 0.40}, label_coverage=0.5),
            "medium",  # an estimate never makes it high
            "estimated_performance_degradation",
        ),
        (
            Evidence(FEATURES, [], estimate_disagrees=True, label_coverage=0.5),
            "medium",
            "concept_drift",
        ),
        (
            Evidence(FEATURES, [], multivariate_drift=True, label_coverage=0.5),
            "medium",
            "multivariate_drift",
        ),
    ],
)
def test_each_trigger_fires(evidence: Evidence, urgency: str, trigger: str) -> None:
    decision = decide(MODEL, evidence)
    assert trigger in decision.triggers
    assert decision.urgency == urgency
    assert decision.should_retrain


@pytest.mark.parametrize(
    "evidence",
    [
        Evidence(FEATURES, [], degradation={"rmse": 0.05}),  # below the 10% warning
        Evidence(FEATURES, [], label_coverage=0.5),  # nothing at all
        Evidence(FEATURES, [], prediction_drift=False, fairness_violations=[]),
        Evidence(
            [*FEATURES, "x4"], ["x1"], degradation={"rmse": 0.0}, label_coverage=0.9
        ),  # 25%: low
        # estimated 15% worse: low (medium from the critical share); 5%: below the warning
        Evidence(FEATURES, [], estimated_degradation={"mae": 0.15}, label_coverage=0.5),
        Evidence(FEATURES, [], estimated_degradation={"mae": 0.05}, label_coverage=0.5),
    ],
)
def test_quiet_evidence_does_not_recommend(evidence: Evidence) -> None:
    decision = decide(MODEL, evidence)
    assert not decision.should_retrain
    assert decision.urgency in ("none", "low")


def test_insufficient_labels_does_not_fire_with_labels() -> None:
    decision = decide(MODEL, Evidence(FEATURES, ["x1"], label_coverage=0.5))
    assert "insufficient_labels" not in decision.triggers


def test_cooldown_holds_back_all_but_high_urgency(tmp_path) -> None:
    config = make_config(f"sqlite:///{tmp_path / 's.db'}")
    from exporter.storage.engine import create_engine
    from exporter.storage.prediction_store import create_schema

    engine = create_engine(config.store.url)
    create_schema(engine, config)
    scheduler = RetrainingScheduler(config, engine)
    drifted = {
        "drift_detected": True,
        "drifted_features": ["x1", "x2"],
        "feature_metrics": {f: {} for f in FEATURES},
    }
    assert scheduler.schedule_retraining("reg", drifted, {})["should_retrain"] is True
    scheduler.record_retraining("reg", {"by": "test"})
    held = scheduler.schedule_retraining("reg", drifted, {})
    assert held["should_retrain"] is False and any("cooldown" in r for r in held["reasons"])
    urgent = scheduler.schedule_retraining("reg", drifted, {"degradation": {"rmse": 0.5}})
    assert urgent["should_retrain"] is True and urgent["urgency"] == "high"
    from exporter.storage.audit import entries

    assert [e["action"] for e in entries(engine, "reg")] == [
        "retraining_decision",
        "model_retrained",
        "retraining_decision",
        "retraining_decision",
    ]


def test_exporter_exports_the_decision_and_audits_changes(tmp_path) -> None:
    config = make_config(f"sqlite:///{tmp_path / 's.db'}", models=[REGRESSION_MODEL])
    seed_regression(config, np.random.default_rng(8))
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    app = create_app(config, service)
    service.start_warmup().join()
    text = app.test_client().get("/metrics").text
    assert metric_value(text, "model_retraining_recommended", model_id="reg") == 0
    # A burst of badly mispredicted, drifted traffic.
    rng = np.random.default_rng(9)
    d = regression_rows(rng, 400, shift=3.0)
    with PredictionLogger(config) as logger:
        for i in range(400):
            pid = logger.log_prediction(
                "reg",
                {"x1": d["x1"][i], "x2": d["x2"][i], "color": "red"},
                float(d["prediction"][i] + 20),
                timestamp=T0 + 1 + i * 0.01,
                attributes={"tier": "gold"},
            )
            logger.log_actual("reg", pid, float(d["actual"][i]), timestamp=T0 + 2 + i * 0.01)
    clock.advance(30)
    text = app.test_client().get("/metrics").text
    assert metric_value(text, "model_retraining_recommended", model_id="reg") == 1
    assert metric_value(text, "model_retraining_urgency", model_id="reg") == 3
    assert (
        metric_value(text, "model_health_status", model_id="reg", model_health_status="critical")
        == 1
    )
    from exporter.storage.audit import entries

    decisions = entries(service.engine, "reg", "retraining_decision")
    assert [d["details"]["urgency"] for d in decisions] == ["none", "high"]


def test_system_monitor_reports_process_and_latency() -> None:
    stats = SystemMonitor().collect()
    assert stats["process"]["resident_memory_bytes"] > 10_000_000
    assert stats["process"]["cpu_seconds_total"] > 0
    bounds = np.array([0.01, 0.05, 0.1, 0.5])
    samples = np.random.default_rng(1).uniform(0, 0.5, 100_000)
    cumulative = np.array([(samples <= b).sum() for b in bounds])
    # Uniform data: linear interpolation inside buckets is exact up to sampling noise.
    assert latency_quantile(bounds, cumulative, 0.5) == pytest.approx(
        np.quantile(samples, 0.5), rel=0.01
    )
    assert math.isnan(latency_quantile(bounds, np.zeros(4), 0.5))


def test_the_exporter_asks_for_the_last_retraining_only_when_it_could_hold_a_decision_back(
    tmp_path,
) -> None:
    """A healthy model's refresh makes no audit query; a drifted one asks, and a retraining
    within the cooldown holds its recommendation back."""
    config = make_config(
        f"sqlite:///{tmp_path / 's.db'}",
        models=[{**REGRESSION_MODEL, "retraining": {"cooldown": "1d", "recommend_from": "low"}}],
    )
    seed_regression(config, np.random.default_rng(5))
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    service.start_warmup().join()
    refresher = service.refreshers["reg"]
    asked: list[str] = []
    sa.event.listen(
        service.engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: (
            asked.append(statement)
            if "model_monitor_audit" in statement and statement.lstrip().startswith("SELECT")
            else None
        ),
    )
    clock.advance(5)
    refresher.refresh()
    assert refresher.decision is not None and not refresher.decision.should_retrain
    assert asked == []  # nothing to hold back: no lookup

    log_regression(config, regression_rows(np.random.default_rng(6), 600, shift=3.0), clock() - 2)
    clock.advance(5)
    refresher.refresh()
    assert refresher.decision.should_retrain and len(asked) == 1
    record(service.engine, "reg", RETRAINED_ACTION, {"by": "test"}, at=clock() - 60)
    clock.advance(5)
    refresher.refresh()
    assert not refresher.decision.should_retrain and len(asked) == 2
    assert any("cooldown" in r for r in refresher.decision.reasons)
