"""Baselines: captured from a store range or a CSV/Parquet file, versioned, the newest one used."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from exporter.baseline import FINE_BINS, CategoricalReference, NumericReference
from exporter.cli import capture, main
from exporter.logging.prediction_logger import PredictionLogger
from exporter.rows import parse_rows
from exporter.service import MonitorService
from exporter.storage import json_codec
from exporter.storage.baseline_store import BaselineStore, read_range
from exporter.storage.engine import create_engine
from exporter.window import capture_baseline
from tests.conftest import (
    REGRESSION_MODEL,
    T0,
    Clock,
    make_config,
    regression_rows,
    seed_regression,
)


def test_numeric_reference_bins_are_baseline_quantiles() -> None:
    values = np.random.default_rng(0).normal(size=10_001)
    ref = NumericReference.capture(values)
    assert len(ref.edges) == FINE_BINS + 1
    np.testing.assert_allclose(ref.edges, np.quantile(values, np.linspace(0, 1, FINE_BINS + 1)))
    assert ref.counts[0] == ref.counts[-1] == 0  # nothing below the minimum or above the maximum
    np.testing.assert_allclose(ref.counts[1:-1], 100, atol=1)  # 1% of the rows per fine bin
    # Deciles for PSI: each of the 10 inner PSI bins holds 10 fine bins.
    assert np.bincount(ref.psi_bins).tolist() == [1] + [10] * 10 + [1]
    assert ref.mean == pytest.approx(values.mean()) and ref.std == pytest.approx(values.std())


def test_constant_and_discrete_features_get_valid_bins() -> None:
    constant = NumericReference.capture(np.full(100, 3.0))
    assert constant.bin(np.array([2.0, 3.0, 4.0])).tolist() == [0, 1, 2]
    tickets = NumericReference.capture(np.random.default_rng(1).poisson(1.2, 5000).astype(float))
    assert np.all(np.diff(tickets.edges) > 0)
    assert tickets.counts.sum() == 5000


def test_categories_keep_top_k_and_pool_the_rest() -> None:
    values = np.array([f"c{i}" for i in range(30) for _ in range(30 - i)], dtype=object)
    ref = CategoricalReference.capture(values)
    assert ref.categories[:3] == ("c0", "c1", "c2") and len(ref.categories) == 20
    assert ref.counts[-1] == sum(30 - i for i in range(20, 30))
    assert ref.is_new(np.array(["c25", "zzz"], dtype=object)).tolist() == [False, True]


def test_file_baseline_and_versions(tmp_path) -> None:
    config = make_config(f"sqlite:///{tmp_path / 's.db'}")
    seed_regression(
        config, np.random.default_rng(3)
    )  # stores version 1 for "reg" from the store range
    d = regression_rows(np.random.default_rng(4), 2000, shift=5.0)
    frame = pd.DataFrame(
        {
            "x1": d["x1"],
            "x2": d["x2"],
            "color": d["color"],
            "prediction": d["prediction"],
            "tier": d["tier"],
            "actual": d["actual"],
        }
    )
    frame.to_parquet(tmp_path / "train.parquet")
    frame.to_csv(tmp_path / "train.csv", index=False)
    assert (
        main(
            [
                "baseline",
                "--config",
                str(_write(config, tmp_path)),
                "--model",
                "reg",
                "--file",
                str(tmp_path / "train.parquet"),
            ]
        )
        == 0
    )
    service = MonitorService(config, clock=Clock(T0))
    service.refresh_all()
    assert service.refreshers["reg"].baseline.version == 2
    v3 = capture(config, "reg", file=tmp_path / "train.csv", command="test")
    store = BaselineStore(create_engine(config.store.url))
    newest = store.load("reg")
    assert newest.version == v3 == 3 and "train.csv" in newest.source
    assert newest.features["x1"].mean == pytest.approx(d["x1"].mean())
    assert store.load("reg", 1).features["x1"].mean == pytest.approx(0.0, abs=0.2)
    assert newest.performance["all"]["rmse"] == pytest.approx(
        np.sqrt(np.mean((d["prediction"] - d["actual"]) ** 2))
    )

    corr = newest.correlation
    assert corr["features"] == ["x1", "x2"]
    assert corr["matrix"][0][1] == pytest.approx(np.corrcoef(d["x1"], d["x2"])[0, 1], rel=1e-9)

    # A running exporter switches to the newest version at its next refresh.
    service.refreshers["reg"].clock.advance(5)
    service.refresh_all()
    assert service.refreshers["reg"].baseline.version == 3
    assert service.refreshers["reg"].report.window_predictions == 200  # rebuilt, not lost
    # The live window (no shift) against a baseline shifted by 5 sd: drift everywhere in x1.
    assert service.refreshers["reg"].report.features["x1"].drift.detected is True


def test_group_rates_for_fairness() -> None:
    from exporter.baseline import group_rates
    from exporter.config import parse_config
    from exporter.rows import parse_rows
    from exporter.storage.prediction_store import (
        LABEL,
        PREDICTION,
        SCORE,
        attribute_key,
        feature_key,
    )
    from tests.conftest import CLASSIFIER_MODEL

    model = parse_config(
        {"models": [{**CLASSIFIER_MODEL, "protected_attributes": ["region"]}]}
    ).models[0]
    rng = np.random.default_rng(8)
    score = rng.random(400)
    region = rng.choice(["eu", "us"], 400)
    label = (rng.random(400) < 0.3).astype(float)
    frame = pd.DataFrame(
        {
            PREDICTION: (score >= 0.5).astype(float),
            SCORE: score,
            LABEL: label,
            feature_key("x1"): 0.0,
            feature_key("plan"): "pro",
            attribute_key("region"): region,
        }
    )
    rows, _ = parse_rows(frame, model, pd.Series(np.zeros(400)), label="optional")
    rates = group_rates(model, rows)["region"]
    for group in ("eu", "us"):
        mask = region == group
        assert rates[group]["count"] == mask.sum()
        assert rates[group]["selection_rate"] == pytest.approx(np.mean(score[mask] >= 0.5))
        assert rates[group]["mean_prediction"] == pytest.approx(score[mask].mean())
        assert rates[group]["label_mean"] == pytest.approx(label[mask].mean())


def test_file_missing_columns_is_a_clear_error(tmp_path) -> None:
    config = make_config(f"sqlite:///{tmp_path / 's.db'}")
    pd.DataFrame({"x1": [1.0]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"columns \['color', 'prediction', 'tier', 'x2'\]"):
        capture(config, "reg", file=tmp_path / "bad.csv")


def _write(config, tmp_path):
    import yaml

    path = tmp_path / "mm.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "store": {"url": config.store.url},
                "models": [m.model_dump(mode="json", exclude_defaults=True) for m in config.models],
            }
        )
    )
    return path


def _same(a: object, b: object) -> bool:
    """Equal, with NaN equal to NaN, through nested dicts and lists."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


_json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text() | st.just("NaN"),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=6) | st.sampled_from(["$float", "$float$"]), inner, max_size=4
        )
    ),
    max_leaves=20,
)


@given(_json_values)
def test_json_codec_round_trips_every_float_and_keeps_strings(value) -> None:
    text = json_codec.dumps(value)
    json.loads(text, parse_constant=lambda token: pytest.fail(f"bare {token} in {text}"))
    assert _same(json_codec.loads(text), value)


def test_baseline_with_a_one_row_segment_is_stored(store_url: str) -> None:
    """R² of a segment with one labelled row is undefined (NaN): PostgreSQL's json refused it."""
    config = make_config(store_url, models=[REGRESSION_MODEL])
    rng = np.random.default_rng(8)
    d = regression_rows(rng, 300)
    with PredictionLogger(config) as logger:
        for i, ts in enumerate(np.linspace(T0 - 3600, T0 - 60, 300)):
            tier = "silver" if i == 0 else "gold"  # silver: exactly one labelled row
            pid = logger.log_prediction(
                "reg",
                {"x1": d["x1"][i], "x2": d["x2"][i], "color": str(d["color"][i])},
                float(d["prediction"][i]),
                timestamp=float(ts),
                attributes={"tier": tier},
            )
            logger.log_actual("reg", pid, float(d["actual"][i]), timestamp=float(ts) + 1)
    version = capture(config, "reg", T0 - 3600, T0, command="test")
    stored = BaselineStore(create_engine(config.store.url)).load("reg", version)
    silver = stored.performance["silver"]
    assert not all(math.isfinite(v) for v in silver.values())  # the case under test
    frame, ts = read_range(create_engine(config.store.url), config.models[0], T0 - 3600, T0)
    expected = capture_baseline(
        config.models[0], parse_rows(frame, config.models[0], ts, "optional")[0]
    )
    assert _same(stored.performance, expected.performance)


def test_a_baseline_with_in_sample_multivariate_errors_serves_no_multivariate_drift(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Stored before the reference errors were held out: its verdicts would be false, so it
    loads without components and says how to get them back."""
    config = make_config(store_url, models=[REGRESSION_MODEL])
    seed_regression(config, np.random.default_rng(9))
    store = BaselineStore(create_engine(config.store.url))
    fresh = store.load("reg")
    assert fresh.multivariate is not None
    old = fresh.to_json()
    del old["multivariate"]["reference_errors"]
    with store.engine.begin() as conn:
        conn.execute(store.table.update().values(content=old))
    with caplog.at_level(logging.WARNING, "exporter.storage.baseline_store"):
        stored = store.load("reg")
    assert stored.multivariate is None
    assert stored.features.keys() == fresh.features.keys()
    assert "in-sample multivariate" in caplog.text
    assert "model-monitor baseline --model reg" in caplog.text


def test_a_pass_asks_for_newer_baselines_once_for_all_models(store_url: str) -> None:
    """While no baseline is captured, a pass over every model makes one baselines query; a
    capture is seen by the next pass, and only then does each model look up its own version."""
    config = make_config(store_url)  # two models; only "reg" has a baseline
    seed_regression(config, np.random.default_rng(10))
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    service.start_warmup().join()
    asked: list[str] = []
    sa.event.listen(
        service.engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: (
            asked.append(statement) if "model_monitor_baselines" in statement else None
        ),
    )
    clock.advance(5)
    service.refresh_all()
    assert len(asked) == 1 and "WHERE" not in asked[0]
    assert service.refreshers["reg"].baseline.version == 1

    capture(config, "reg", T0 - 7200, T0 - 3600, command="test")
    asked.clear()
    clock.advance(5)
    service.refresh_all()
    assert service.refreshers["reg"].baseline.version == 2
    assert sum("WHERE" in s for s in asked) >= 2  # each model looked (and "reg" loaded)
    asked.clear()
    clock.advance(5)
    service.refresh_all()
    assert len(asked) == 1
