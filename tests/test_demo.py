"""`make run` end to end: the demo serves both models within 60 s and flags exactly the drifted
features."""

from __future__ import annotations

import shutil
import time

import requests

from exporter.simulator import DRIFTED_FEATURES
from tests.conftest import FIRST_FAMILIES, FIRST_PERFORMANCE, ROOT, metric_value
from tests.servers import free_port, model_monitor, stop, wait_for
from tests.test_label_sets import duplicate_series

FIRST = {
    "ad_score_model_v1": FIRST_FAMILIES + FIRST_PERFORMANCE["regression"],
    "account_health_model_v1": FIRST_FAMILIES + FIRST_PERFORMANCE["binary_classification"],
}
FEATURES = {
    "ad_score_model_v1": [
        "ctr_history",
        "ad_length",
        "sentiment_score",
        "bid",
        "placement",
        "device",
    ],
    "account_health_model_v1": ["spend_trend", "days_since_login", "support_tickets", "plan"],
}


def _verdicts(text: str) -> dict[str, dict[str, float | None]]:
    return {
        m: {
            f: metric_value(text, "model_feature_drift_detected", model_id=m, feature=f) for f in fs
        }
        for m, fs in FEATURES.items()
    }


def test_demo_serves_both_models_and_flags_only_drifted_features(tmp_path) -> None:
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "demo.yml", tmp_path / "examples" / "demo.yml")
    port = free_port()
    started = time.monotonic()
    demo = model_monitor(
        "demo",
        "--config",
        str(tmp_path / "examples" / "demo.yml"),
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--schedule",
        "stable=50,drift=600",
        "--reference-rows",
        "5000",
        log=tmp_path / "demo.log",
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:

        def complete() -> bool:
            text = requests.get(url, timeout=5).text
            return all(
                metric_value(text, name, model_id=m) is not None
                for m in FEATURES
                for name in FIRST[m]
            )

        wait_for(complete, 60 - (time.monotonic() - started), "every first family of both models")
        text = requests.get(url, timeout=5).text
        assert duplicate_series(text) == []  # every series of the demo has its own label set
        stable = _verdicts(text)
        assert all(v == 0 for fs in stable.values() for v in fs.values()), stable

        def drift_seen() -> bool:
            verdicts = _verdicts(requests.get(url, timeout=5).text)
            return all(
                verdicts[f"{m}_model_v1"][f] == 1 for m, fs in DRIFTED_FEATURES.items() for f in fs
            )

        wait_for(drift_seen, 200, "the drift verdicts of the drifted features")
        text = requests.get(url, timeout=5).text
        assert duplicate_series(text) == []
        verdicts = _verdicts(text)
        for model_id, features in verdicts.items():
            for feature, verdict in features.items():
                drifted = DRIFTED_FEATURES[model_id.removesuffix("_model_v1")]
                assert verdict == (1 if feature in drifted else 0), (model_id, feature)
    finally:
        stop(demo)
        print((tmp_path / "demo.log").read_text()[-3000:])
