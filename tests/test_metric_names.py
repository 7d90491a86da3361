"""Metric hygiene: Prometheus' naming rules hold for every family of the catalog, one unit per
family, and `promtool check metrics` finds nothing to say about a real /metrics."""

from __future__ import annotations

import re
import subprocess

import numpy as np

from exporter.app import create_app
from exporter.baseline import NumericReference
from exporter.metric_catalog import CATALOG
from exporter.service import MonitorService
from tests.conftest import T0, Clock, binary, make_config, seed_regression

# Base units only (Prometheus' naming conventions): seconds, bytes, ratios of 0-1.
NON_BASE_UNITS = re.compile(r"_(milliseconds|ms|minutes|hours|percent|kilobytes|megabytes)(_|$)")
RESERVED_SUFFIXES = ("_total", "_created", "_count", "_sum", "_bucket", "_info")
# Labels that would let one family hold values of different units or scales.
UNIT_CHANGING_LABELS = {"unit", "statistic", "threshold_unit"}


def test_every_family_follows_the_naming_rules() -> None:
    names = [spec.name for spec in CATALOG]
    assert len(names) == len(set(names))
    for spec in CATALOG:
        assert re.fullmatch(r"model_[a-z0-9]+(_[a-z0-9]+)*", spec.name), spec.name
        assert not spec.name.endswith(RESERVED_SUFFIXES), spec.name  # the client adds these
        assert not NON_BASE_UNITS.search(spec.name), spec.name
        assert not UNIT_CHANGING_LABELS & set(spec.labels), spec.name
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", label) for label in spec.labels), spec.name
        help_ = spec.help.lower()
        if spec.kind in ("gauge", "counter") and (
            "unix time" in help_ or help_.startswith(("duration", "age of"))
        ):
            assert spec.name.endswith("_seconds"), spec.name
        if help_.startswith("share of") or "labelled share" in help_:
            # Fairness keeps its literature's names (selection rate, true-positive rate).
            fairness_term = spec.group == "fairness" and spec.name.endswith("_rate")
            assert spec.name.endswith("_ratio") or fairness_term, spec.name
        if spec.name.endswith("_seconds") and spec.kind != "histogram":
            assert any(w in help_ for w in ("second", "time", "duration", "age")), spec.name


def test_promtool_check_metrics_is_clean(tmp_path) -> None:
    config = make_config(f"sqlite:///{tmp_path / 's.db'}", min_refresh_interval=0.001)
    seed_regression(config, np.random.default_rng(3))
    service = MonitorService(config, clock=Clock(T0))
    client = create_app(config, service, warmup=False).test_client()
    service.start_warmup().join()
    body = client.get("/metrics").text
    assert "model_performance_rmse" in body and "model_feature_psi_threshold" in body
    result = subprocess.run(
        [binary("promtool"), "check", "metrics"],
        input=body,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout + result.stderr
    )


def test_bin_labels_stay_the_same_across_baselines() -> None:
    """Two baselines of the same distribution (different samples, different edges) name their
    PSI bins alike, so a dashboard's bin series continue across a new baseline; ties merge
    percentile ranges, still by name."""
    rng = np.random.default_rng(8)
    first = NumericReference.capture(rng.lognormal(0, 1, 20_000))
    second = NumericReference.capture(rng.lognormal(0.3, 1.4, 5_000))
    assert not np.array_equal(first.edges, second.edges)
    names = first.bin_labels
    assert names == second.bin_labels
    assert names == (
        "below_baseline",
        *(f"p{10 * i}-p{10 * (i + 1)}" for i in range(10)),
        "above_baseline",
    )
    tied = NumericReference.capture(np.repeat([0.0, 0.0, 0.0, 1.0, 2.0], 1000)).bin_labels
    assert tied[1] == "p0-p60"  # 60% of the baseline is one value: one bin
