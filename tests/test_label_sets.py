"""No two series on /metrics share a label set, whatever values the data holds.

The exporter names some label values itself: `segment="all"` (overall figures) and the pooled
`"other"` of categories, segments and groups. Here the data holds exactly those values (and
values starting with the escape mark, and a segment value equal to a slice name); every series
must stay distinct, and each must mean what its labels say (checked against numpy).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import create_app
from exporter.cli import capture
from exporter.logging.prediction_logger import PredictionLogger
from exporter.service import MonitorService
from tests.conftest import REGRESSION_MODEL, T0, Clock, make_config, metric_value

SEGMENTS = ["all", "other", "~all", "gold", "silver"]
COLORS = ["all", "other", "~other", "red"]
REGIONS = ["all", "other", "north"]


def duplicate_series(body: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """Series of an exposition that share a name and label set with another."""
    seen = Counter(
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    )
    return [key for key, count in seen.items() if count > 1]


def test_data_values_equal_to_the_exporters_own_never_collide(store_url: str) -> None:
    model = {
        **REGRESSION_MODEL,
        "segments": [{"column": "tier"}],
        "protected_attributes": ["region"],
        "fairness": {"min_group_size": 5},
        "slices": [{"name": "gold", "where": "x1 > 0.5"}],  # a slice named like a segment value
    }
    config = make_config(store_url, models=[model])
    rng = np.random.default_rng(11)
    live: dict[str, list[float]] = {s: [] for s in SEGMENTS}
    errors_all: list[float] = []
    with PredictionLogger(config) as logger:
        for start, end, n, keep in (
            (T0 - 7200, T0 - 3600, 2000, False),
            (T0 - 300, T0 - 10, 2000, True),
        ):
            for ts in np.sort(rng.uniform(start, end, n)):
                tier, actual = str(rng.choice(SEGMENTS)), float(rng.normal(0, 3))
                prediction = actual + float(rng.normal(0.5 if tier == "all" else 0.0, 1.0))
                pid = logger.log_prediction(
                    "reg",
                    {"x1": float(rng.normal()), "x2": 1.0, "color": str(rng.choice(COLORS))},
                    prediction,
                    timestamp=float(ts),
                    attributes={"tier": tier, "region": str(rng.choice(REGIONS))},
                )
                logger.log_actual("reg", pid, actual, timestamp=float(ts) + 1)
                if keep:
                    live[tier].append(prediction - actual)
                    errors_all.append(prediction - actual)
    capture(config, "reg", T0 - 7200, T0 - 3600)
    service = MonitorService(config, clock=Clock(T0))
    client = create_app(config, service, warmup=False).test_client()
    service.start_warmup().join()
    body = client.get("/metrics").text

    assert duplicate_series(body) == []

    def rmse(errors: list[float]) -> float:
        return float(np.sqrt(np.mean(np.square(errors))))

    def served(segment: str, name: str = "model_performance_rmse") -> float | None:
        return metric_value(body, name, model_id="reg", segment=segment)

    assert served("all", "model_segment_labeled_predictions") == len(errors_all)
    assert served("all") == pytest.approx(rmse(errors_all), rel=1e-9)
    assert served("~all") == pytest.approx(rmse(live["all"]), rel=1e-9)  # the data's "all"
    assert served("~other") == pytest.approx(rmse(live["other"]), rel=1e-9)
    assert served("~~all") == pytest.approx(rmse(live["~all"]), rel=1e-9)
    assert served("~gold") == pytest.approx(rmse(live["gold"]), rel=1e-9)  # the slice keeps "gold"
    bins = {
        labels["bin"]
        for labels in (
            s.labels
            for f in text_string_to_metric_families(body)
            for s in f.samples
            if s.name == "model_feature_bin_ratio" and s.labels.get("feature") == "color"
        )
    }
    assert {"~all", "~other", "~~other", "red"} <= bins
    groups = {
        s.labels["group"]
        for f in text_string_to_metric_families(body)
        for s in f.samples
        if s.name == "model_group_predictions"
    }
    assert {"~all", "~other", "north"} <= groups
