"""/metrics is byte for byte what prometheus_client writes for the same families, in every format
a scraper can negotiate, although each model's report lines are formatted once and kept: label
values from the data with quotes, backslashes, newlines and non-ASCII text included."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString
from werkzeug.test import Client

from exporter.collector import ModelCollector
from exporter.exposition import go_float, metrics_app
from exporter.service import MonitorService
from tests.conftest import REGRESSION_MODEL, T0, Clock, make_config, seed_regression

# Protected groups are the data's own values: every character the formats must escape.
TIERS = ('gold "vip"', "back\\slash", "new\nline", "ünïcode ✓")

ACCEPT = [
    None,  # text 0.0.4
    "text/plain; version=0.0.4",
    "text/plain; version=1.0.0; escaping=allow-utf-8",
    "text/plain; version=1.0.0; escaping=underscores",
    "application/openmetrics-text",
    "application/openmetrics-text; version=1.0.0",
    "application/openmetrics-text; version=1.0.0; escaping=allow-utf-8",
    "application/openmetrics-text; version=1.0.0; escaping=dots",  # renames: all by the library
    "application/openmetrics-text; version=1.0.0; escaping=values",
]


class _Other:
    """Families the app formats through prometheus_client: a counter with a created time (text
    0.0.4 moves `_created` to a family of its own) and a gauge with a timestamp."""

    def collect(self) -> Iterator[Metric]:
        counter = CounterMetricFamily("jobs", "Jobs done.", labels=["queue"])
        counter.add_metric(['a"b'], 3.0, created=1_700_000_000.5)
        yield counter
        gauge = GaugeMetricFamily("temperature", "Line one.\nLine two \\ end.", unit="celsius")
        gauge.add_metric([], 21.5, timestamp=1_700_000_001.25)
        yield gauge


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> CollectorRegistry:
    """A regression model with fairness across `TIERS`, window built and refreshed."""
    url = f"sqlite:///{tmp_path_factory.mktemp('exposition') / 's.db'}"
    config = make_config(url, models=[{**REGRESSION_MODEL, "protected_attributes": ["tier"]}])
    seed_regression(config, np.random.default_rng(5), n_live=400, tiers=TIERS)
    service = MonitorService(config, clock=Clock(T0))
    service.start_warmup().join()
    registry = CollectorRegistry()
    registry.register(ModelCollector(service))
    registry.register(_Other())
    return registry


def _served(registry: CollectorRegistry, accept: str | None, query: str = "", **h: str) -> bytes:
    headers = {"Accept": accept} if accept else {}
    response = Client(metrics_app(registry)).get(f"/metrics?{query}", headers={**headers, **h})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == choose_encoder(accept or "")[1]
    return response.get_data()


@pytest.mark.parametrize("accept", ACCEPT)
def test_every_format_is_the_librarys(registry: CollectorRegistry, accept: str | None) -> None:
    expected = choose_encoder(accept or "")[0](registry)
    assert _served(registry, accept) == expected
    assert _served(registry, accept) == expected  # again, from the collector's kept text


def test_name_filter_and_gzip_are_the_librarys(registry: CollectorRegistry) -> None:
    names = ["model_group_rmse", "jobs_total", "jobs_created", "model_monitor_up"]
    expected = choose_encoder("")[0](registry.restricted_registry(names))
    query = "&".join(f"name[]={n}" for n in names)
    assert _served(registry, None, query) == expected
    zipped = _served(registry, None, query, **{"Accept-Encoding": "gzip"})
    assert gzip.decompress(zipped) == expected
    # The groups are there, and the library's parser reads them back as the data had them.
    (family,) = (
        f
        for f in text_string_to_metric_families(expected.decode())
        if f.samples[0].name == "model_group_rmse"
    )
    assert sorted(s.labels["group"] for s in family.samples) == sorted(TIERS)


def test_other_methods_are_refused_as_the_library_does(registry: CollectorRegistry) -> None:
    client = Client(metrics_app(registry))
    assert client.options("/metrics").headers["Allow"] == "OPTIONS,GET"
    refused = client.post("/metrics")
    assert refused.status_code == 405
    assert refused.get_data() == b"# HTTP 405 Method Not Allowed: POST; use OPTIONS or GET\n"


@given(st.floats() | st.sampled_from([0.0, -0.0, 1e6, 999_999.999_999_9, 1e16, 1e21, -1e7, 5e-324]))
def test_values_are_written_as_the_library_writes_them(value: float) -> None:
    assert go_float(value) == floatToGoString(value)
