"""The demo does not cry wolf: five simulated minutes of its stable phase raise no finding and
no retraining recommendation, scraped every 5 s as Prometheus would, from the first scrape on.

The traffic is the demo's own (its config, simulator, reference size, label delays), written
through the PredictionLogger into SQLite; only the clock is simulated, so the test takes
seconds instead of minutes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from exporter.cli import _simulator, capture
from exporter.config import parse_config
from exporter.monitors import health
from exporter.service import MonitorService
from exporter.storage.engine import create_engine
from exporter.storage.prediction_store import create_schema
from tests.conftest import ROOT, T0, Clock

STABLE_SECONDS = 300
SCRAPE_INTERVAL = 5.0
REFERENCE_ROWS = 20_000  # the demo's default --reference-rows
RATE = 20.0  # the demo's default --rate, predictions per second per model


def test_five_minutes_of_the_stable_phase_raise_nothing(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "examples" / "demo.yml").read_text())
    raw["store"]["url"] = f"sqlite:///{tmp_path / 'demo.db'}"
    config = parse_config(raw)
    create_schema(create_engine(config.store.url), config)
    logger, sim = _simulator(config, RATE, (5.0, 30.0))  # the demo's label delays
    reference_end = T0 - max(m.performance_window.length for m in config.models) - 60
    sim.seed_reference(reference_end - 3600, reference_end, REFERENCE_ROWS)
    for model in config.models:
        capture(config, model.model_id, reference_end - 3600, reference_end)

    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    raised: list[str] = []
    for step in range(int(STABLE_SECONDS / SCRAPE_INTERVAL)):
        now = clock()
        n = int(RATE * SCRAPE_INTERVAL)
        sim.emit(now, n, "stable", timestamps=np.sort(now - sim.rng.uniform(0, SCRAPE_INTERVAL, n)))
        sim.deliver_labels(now)
        logger.flush()
        clock.advance(SCRAPE_INTERVAL)
        service.refresh_all(timeout=60)
        for model_id, refresher in service.refreshers.items():
            at = f"{step * SCRAPE_INTERVAL:.0f}s {model_id}"
            raised += [f"{at}: {f.description}" for f in refresher.findings if f.severity != "low"]
            assert refresher.decision is not None
            if refresher.decision.should_retrain:
                raised.append(f"{at}: retrain ({refresher.decision.reasons})")
            assert health.status_of(refresher.findings) == "healthy" or raised
    logger.close()
    assert not raised, "\n".join(raised[:20])
    versions = {m: service.refreshers[m].baseline.version for m in service.refreshers}
    assert versions == {m.model_id: 1 for m in config.models}  # numbered per model
