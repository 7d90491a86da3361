"""The HTML report of the seed's MonitoringDashboardGenerator, from real history, opened in
headless Chromium: no console errors, the six sections' plots exist and are drawn."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from exporter.logging.prediction_logger import PredictionLogger
from exporter.service import MonitorService
from exporter.storage.metrics_store import MetricsStore
from exporter.visualization import MonitoringDashboardGenerator
from tests.conftest import (
    REGRESSION_MODEL,
    T0,
    Clock,
    make_config,
    need,
    regression_rows,
    seed_regression,
)

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _history(tmp_path):
    """20 refreshes, 30 s apart, of a model with live traffic: history in the metrics store."""
    model = {
        **REGRESSION_MODEL,
        "protected_attributes": ["tier"],
        "fairness": {"groups": {"tier": ["gold", "silver", "bronze"]}, "min_group_size": 10},
    }
    config = make_config(f"sqlite:///{tmp_path / 's.db'}", models=[model], history_interval=1)
    rng = np.random.default_rng(4)
    seed_regression(config, rng)
    clock = Clock(T0)
    service = MonitorService(config, clock=clock)
    with PredictionLogger(config) as logger:
        for step in range(20):
            d = regression_rows(rng, 60, shift=0.05 * step)
            for i in range(60):
                pid = logger.log_prediction(
                    "reg",
                    {"x1": d["x1"][i], "x2": d["x2"][i], "color": str(d["color"][i])},
                    float(d["prediction"][i]),
                    timestamp=clock.now - 25 + i * 0.3,
                    attributes={"tier": str(d["tier"][i])},
                )
                logger.log_actual("reg", pid, float(d["actual"][i]), timestamp=clock.now - 5)
            logger.flush()
            service.refresh_all()
            clock.advance(30)
    return MetricsStore(service.engine)


def test_report_from_history_in_chromium(tmp_path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    need(chromium is not None, "chromium is not installed (apt-get install chromium)")
    store = _history(tmp_path)
    dashboard = MonitoringDashboardGenerator.create_dashboard(
        "reg", "2027-01-15 07:00", "2027-01-15 09:00", store=store
    )
    path = dashboard.save(tmp_path / "report.html")
    page = path.read_text()
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # self-contained
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", "--enable-logging=stderr", "--v=0", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not re.search(r"CONSOLE\(\d+\)|Uncaught", dom.stderr), dom.stderr[-2000:]
    plots = re.findall(r'<svg class="plot([^"]*)"(.*?)</svg>', dom.stdout, re.S)
    assert len(plots) >= 7
    for classes, body in plots:
        assert "empty" not in classes, body[:200]
        lines = re.findall(r'<polyline class="series"[^>]*points="([^"]+)"', body)
        assert lines and all(len(points.split()) >= 2 for points in lines)
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1280,2400", path.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000  # a page of plots, not a blank image
    shutil.copy(shot, tmp_path.parent / "report-screenshot.png")


@pytest.mark.parametrize("suffix", [".svg", ".pdf"])
def test_save_refuses_other_formats(tmp_path, suffix: str) -> None:
    from exporter.storage.engine import create_engine

    store = MetricsStore(create_engine(f"sqlite:///{tmp_path / 's.db'}"))
    dashboard = MonitoringDashboardGenerator.create_dashboard(
        "reg", "2027-01-15", "2027-01-15", store=store
    )
    with pytest.raises(ValueError, match=r"save to a \.json"):
        dashboard.save(tmp_path / f"x{suffix}")
