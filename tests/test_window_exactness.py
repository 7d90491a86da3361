"""The window's numbers equal a from-scratch computation on exactly the window's rows.

The reference side reads the raw tables with pandas and computes with numpy and scikit-learn;
it shares nothing with the exporter but the config. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn import metrics as skm

from exporter.cli import capture
from exporter.logging.prediction_logger import PredictionLogger
from exporter.service import MonitorService
from tests.conftest import Clock, classifier_rows, make_config, regression_rows

T0 = 1_800_000_000.0  # a whole minute
DRIFT_START = T0 - 9 * 60  # 10 buckets of 1m, the current one included
PERF_START = T0 - 19 * 60  # 20 buckets of 1m
READ_LAG = 1.0
EPS = 1e-4


def _epoch(values: pd.Series) -> np.ndarray:
    return np.array(
        [
            pd.Timestamp(v).tz_localize("UTC").timestamp()
            if pd.Timestamp(v).tzinfo is None
            else pd.Timestamp(v).timestamp()
            for v in values
        ]
    )


def reference_psi(baseline: np.ndarray, current: np.ndarray) -> float:
    """PSI by the book: baseline deciles, under- and overflow bins, floor 1e-4, renormalise."""
    edges = np.unique(np.quantile(baseline, np.linspace(0, 1, 11)))

    def shares(x: np.ndarray) -> np.ndarray:
        counts = [np.sum(x < edges[0])]
        for i in range(len(edges) - 1):
            last = i == len(edges) - 2
            counts.append(
                np.sum((x >= edges[i]) & ((x <= edges[i + 1]) if last else (x < edges[i + 1])))
            )
        counts.append(np.sum(x > edges[-1]))
        p = np.maximum(np.array(counts, dtype=float) / len(x), EPS)
        return p / p.sum()

    e, a = shares(baseline), shares(current)
    return float(np.sum((a - e) * np.log(a / e)))


def reference_category_psi(baseline: np.ndarray, current: np.ndarray) -> float:
    cats = sorted(set(baseline))
    e = np.array([np.mean(baseline == c) for c in cats] + [0.0])
    a = np.array([np.mean(current == c) for c in cats] + [np.mean(~np.isin(current, cats))])
    e, a = np.maximum(e, EPS), np.maximum(a, EPS)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


@pytest.fixture
def populated(store_url: str):
    """Baseline history, then 25 minutes of traffic with labels arriving before and after T0."""
    config = make_config(store_url, read_lag=READ_LAG, batch_rows=500)
    rng = np.random.default_rng(42)
    history = {"reg": regression_rows(rng, 3000), "clf": classifier_rows(rng, 3000)}
    live = {"reg": regression_rows(rng, 1500, shift=0.3), "clf": classifier_rows(rng, 1500)}
    with PredictionLogger(config, batch_size=1000) as logger:
        for phase, data, start, end in (
            ("history", history, T0 - 7200, T0 - 3600),
            ("live", live, T0 - 1500, T0 - 2),
        ):
            for model_id, d in data.items():
                n = len(d["x1"])
                stamps = np.sort(rng.uniform(start, end, n))
                labelled = rng.random(n) < (1.0 if phase == "history" else 0.7)
                arrival = np.minimum(stamps + rng.uniform(10, 400, n), T0 + 300)
                for i in range(n):
                    if model_id == "reg":
                        pid = logger.log_prediction(
                            "reg",
                            {"x1": d["x1"][i], "x2": d["x2"][i], "color": str(d["color"][i])},
                            float(d["prediction"][i]),
                            latency_seconds=float(d["latency"][i]),
                            timestamp=float(stamps[i]),
                            attributes={"tier": str(d["tier"][i])},
                        )
                        actual = float(d["actual"][i])
                    else:
                        pid = logger.log_prediction(
                            "clf",
                            {"x1": d["x1"][i], "plan": str(d["plan"][i])},
                            float(d["score"][i] >= 0.5),
                            score=float(d["score"][i]),
                            timestamp=float(stamps[i]),
                        )
                        actual = float(d["outcome"][i])
                    if labelled[i]:
                        logger.log_actual(model_id, pid, actual, timestamp=float(arrival[i]))
    for model in config.models:
        capture(config, model.model_id, T0 - 7200, T0 - 3600, command="test")
    return config, history


def _raw(config, model_id: str) -> pd.DataFrame:
    """All predictions of a model with their label and label arrival, straight from the tables."""
    engine = sa.create_engine(config.store.url)
    with engine.connect() as conn:
        if model_id == "reg":
            frame = pd.read_sql(
                sa.text(
                    "SELECT p.*, l.actual AS label, l.labeled_at AS arrival FROM reg_predictions p "
                    "LEFT JOIN reg_labels l ON l.prediction_id = p.prediction_id"
                ),
                conn,
            )
        else:
            frame = pd.read_sql(
                sa.text(
                    "SELECT p.*, p.outcome AS label, p.outcome_at AS arrival FROM clf_predictions p"
                ),
                conn,
            )
    engine.dispose()
    frame["ts"] = _epoch(frame["created_at"])
    frame["arrival_ts"] = [
        np.nan if pd.isna(v) else _epoch(pd.Series([v]))[0] for v in frame["arrival"]
    ]
    return frame


def check_against_reference(service: MonitorService, config, history, now: float) -> None:
    until = now - READ_LAG
    drift_start = (math.floor(now / 60) - 9) * 60
    perf_start = (math.floor(now / 60) - 19) * 60

    reg = _raw(config, "reg")
    report = service.refreshers["reg"].report
    window = reg[(reg.ts >= drift_start) & (reg.ts <= until)]
    assert report.window_predictions == len(window)
    for feature in ("x1", "x2"):
        expected = reference_psi(history["reg"][feature], window[feature].to_numpy())
        assert report.features[feature].drift.psi == pytest.approx(expected, abs=1e-9, rel=1e-9)
    expected = reference_category_psi(history["reg"]["color"], window["color"].to_numpy())
    assert report.features["color"].drift.psi == pytest.approx(expected, abs=1e-9, rel=1e-9)
    expected = reference_psi(history["reg"]["prediction"], window["prediction"].to_numpy())
    assert report.prediction_drift.psi == pytest.approx(expected, abs=1e-9, rel=1e-9)

    labelled = reg[(reg.ts >= perf_start) & (reg.ts <= until) & (reg.arrival_ts <= until)]
    assert report.window_labeled == len(labelled)
    assert report.performance_window_predictions == int(
        ((reg.ts >= perf_start) & (reg.ts <= until)).sum()
    )
    perf = report.performance["all"]
    y, yhat = labelled["label"].to_numpy(), labelled["prediction"].to_numpy()
    assert perf["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, yhat)), rel=1e-9)
    assert perf["mae"] == pytest.approx(skm.mean_absolute_error(y, yhat), rel=1e-9)
    assert perf["r2"] == pytest.approx(skm.r2_score(y, yhat), rel=1e-9)
    gold = labelled[labelled.tier == "gold"]
    assert report.segment_counts["gold"] == len(gold)
    assert report.performance["gold"]["rmse"] == pytest.approx(
        math.sqrt(skm.mean_squared_error(gold["label"], gold["prediction"])), rel=1e-9
    )

    clf = _raw(config, "clf")
    report = service.refreshers["clf"].report
    labelled = clf[(clf.ts >= perf_start) & (clf.ts <= until) & (clf.arrival_ts <= until)]
    assert report.window_labeled == len(labelled)
    y, score = labelled["label"].to_numpy(), labelled["score"].to_numpy()
    perf = report.performance["all"]
    assert perf["accuracy"] == pytest.approx(skm.accuracy_score(y, score >= 0.5), rel=1e-9)
    # Binned AUC: ties within one of 1000 score bins count half; the gap is at most half the
    # share of (positive, negative) pairs that share a bin.
    bins = np.minimum((score * 1000).astype(int), 999)
    pos, neg = np.bincount(bins[y == 1], minlength=1000), np.bincount(bins[y == 0], minlength=1000)
    bound = 0.5 * np.sum(pos * neg) / (pos.sum() * neg.sum())
    assert abs(perf["roc_auc"] - skm.roc_auc_score(y, score)) <= bound + 1e-12


def test_window_equals_from_scratch_computation(populated) -> None:
    config, history = populated
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    service.refresh_all()
    assert all(r.status.up for r in service.refreshers.values())
    check_against_reference(service, config, history, clock.now)

    # 150 s later: labels that arrived meanwhile land in their prediction's bucket, and the
    # buckets that fell out of both windows are gone.
    clock.advance(150)
    before = service.refreshers["reg"].report.window_labeled
    service.refresh_all()
    assert service.refreshers["reg"].report.window_labeled != before
    check_against_reference(service, config, history, clock.now)

    # A restart rebuilds the same window from the store.
    restarted = MonitorService(config, clock=clock)
    restarted.refresh_all()
    for model_id in ("reg", "clf"):
        again = flatten(dataclasses.asdict(restarted.refreshers[model_id].report))
        first = flatten(dataclasses.asdict(service.refreshers[model_id].report))
        assert again.keys() == first.keys()
        for key, value in first.items():  # sums may add up in another order: 1e-12, not ==
            assert again[key] == (
                pytest.approx(value, rel=1e-12, nan_ok=True) if isinstance(value, float) else value
            ), key


def flatten(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        return {
            k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}.{key}").items()
        }
    if isinstance(value, list | tuple):
        return {
            k: v for i, item in enumerate(value) for k, v in flatten(item, f"{prefix}[{i}]").items()
        }
    return {prefix: value}


def test_eviction_removes_exactly_the_expired_rows(populated) -> None:
    config, _ = populated
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    service.refresh_all()
    reg = _raw(config, "reg")
    for step in range(12):  # walk the window forward one bucket at a time, past all traffic
        clock.advance(60)
        service.refresh_all()
        drift_start = (math.floor(clock.now / 60) - 9) * 60
        expected = int(((reg.ts >= drift_start) & (reg.ts <= clock.now - READ_LAG)).sum())
        assert service.refreshers["reg"].report.window_predictions == expected, step
