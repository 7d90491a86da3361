"""An idle model's report is reused, never stale: a refresh builds a new report exactly when the
window's sums change (new rows, a bucket leaving the window, a new baseline); the collector's
samples of a report are built once and render exactly as a fresh collector's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from exporter.collector import ModelCollector
from exporter.config import Config, WindowConfig
from exporter.exposition import _body
from exporter.report import build_report
from exporter.service import MonitorService
from exporter.window import BucketRing
from tests.conftest import T0, Clock, log_regression, make_config, regression_rows, seed_regression


def _started(tmp_path) -> tuple[Config, Clock, MonitorService]:
    """A regression model with its window built, on a clock that moves only when told."""
    config = make_config(f"sqlite:///{tmp_path / 's.db'}", models=None)
    seed_regression(config, np.random.default_rng(2))
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    service.start_warmup().join()
    return config, clock, service


def test_report_is_rebuilt_exactly_when_the_sums_change(tmp_path) -> None:
    config, clock, service = _started(tmp_path)
    refresher = service.refreshers["reg"]

    def fresh() -> object:
        return build_report(refresher.model, refresher.baseline, refresher.window.totals(clock()))

    idle = refresher.report
    clock.advance(5)  # within the same minute bucket: nothing enters or leaves
    refresher.refresh()
    assert refresher.report is idle and refresher.report == fresh()

    _log_new_rows(config, clock)
    clock.advance(5)
    refresher.refresh()
    assert refresher.report is not idle and refresher.report == fresh()
    assert refresher.report.window_predictions == idle.window_predictions + 50

    with_rows = refresher.report
    clock.advance(600)  # the early buckets leave the 10-minute drift window
    refresher.refresh()
    assert refresher.report is not with_rows and refresher.report == fresh()
    assert refresher.report.window_predictions < with_rows.window_predictions


# A ring's steps: add a batch (live buckets, as offsets from now; a value), or move the clock.
_STEPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.lists(st.integers(-4, 0), min_size=1, max_size=4),  # live buckets only
            st.integers(1, 5),
        ),
        st.tuples(st.just("move"), st.integers(0, 250), st.just(0)),
    ),
    max_size=30,
)


@given(_STEPS)
def test_a_rings_total_is_the_sum_of_its_live_buckets_after_any_adds_and_moves(steps) -> None:
    """`BucketRing.total` keeps its sums between adds and moves of the window; the reference
    is a plain record of what was added to which bucket, summed over the buckets live now."""
    ring = BucketRing(WindowConfig(length=300, bucket=60), size=3)
    now, added = T0, {}
    for kind, what, value in steps:
        if kind == "move":
            now += what
        else:
            ids = np.unique(ring.current(now) + np.array(what))
            rows = np.outer(np.arange(1, len(ids) + 1), [value, 1.0, 0.5])
            ring.add(ids, rows)
            for bucket, row in zip(ids.tolist(), rows, strict=True):
                added[bucket] = added.get(bucket, 0.0) + row
        live = [v for b, v in added.items() if ring.current(now) - 5 < b <= ring.current(now)]
        expected = np.sum(live, axis=0) if live else np.zeros(3)
        total = ring.total(now)
        assert np.array_equal(total, expected), (steps, now)
        with pytest.raises(ValueError):  # kept for every caller: nobody may write to it
            total[0] = -1.0


def _log_new_rows(config: Config, clock: Clock) -> None:
    log_regression(
        config, regression_rows(np.random.default_rng(3), 50), clock() - 3, {"tier": "gold"}
    )


def _render(collector: ModelCollector) -> bytes:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry)


def test_cached_report_samples_render_as_a_fresh_collectors(tmp_path) -> None:
    config, clock, service = _started(tmp_path)
    refresher = service.refreshers["reg"]
    collector = ModelCollector(service)  # kept across scrapes, as the app keeps it

    first = _render(collector)
    idle = refresher.report
    clock.advance(5)
    refresher.refresh()
    assert refresher.report is idle
    again = _render(collector)
    assert collector._cached["reg"][0] is idle  # served from the cache
    assert again == _render(ModelCollector(service))  # a collector that has seen nothing
    assert b'model_feature_psi{feature="x1",model_id="reg"}' in again

    _log_new_rows(config, clock)
    clock.advance(5)
    refresher.refresh()
    assert refresher.report is not idle
    changed = _render(collector)
    assert changed == _render(ModelCollector(service))
    assert changed != first
    # The new report's lines reuse the text of the series the last one had (`_Families.known`):
    # the served text is still prometheus_client's, byte for byte.
    registry = CollectorRegistry()
    registry.register(collector)
    assert _body(registry, None, {})[0] == generate_latest(registry)
    assert collector._cached["reg"][0] is refresher.report
