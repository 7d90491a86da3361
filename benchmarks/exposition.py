"""What the exporter conventions cost a scrape: a real `model-monitor serve` (gunicorn) with the
two reference models (an hour of reference traffic, baselines, 20 minutes of live rows, no new
rows between scrapes: the exposition and an idle refresh), scraped over one keep-alive session.

    python benchmarks/exposition.py [--scrapes 200] [--baseline-checkout DIR]

Rows: plain HTTP, the `name[]` filter (one family), gzip, OpenMetrics, TLS 1.3, and TLS with
basic auth (a verified credential: cached). With --baseline-checkout (a checkout of an older
commit, e.g. `git worktree add /tmp/old c8c0cf7`), the same plain scrape against that code's
server, started with its own flags, for a before/after figure in one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bcrypt
import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.cli import capture  # noqa: E402
from exporter.config import load_config  # noqa: E402
from exporter.logging.prediction_logger import PredictionLogger  # noqa: E402
from exporter.simulator import LabelDelay, Simulator  # noqa: E402
from tests.certs import localhost_cert  # noqa: E402
from tests.servers import free_port, stop, wait_for  # noqa: E402

MODELS = {"ad_score": "ad_score_model_v1", "account_health": "account_health_model_v1"}


def seed(folder: Path) -> Path:
    raw = yaml.safe_load((ROOT / "examples" / "demo.yml").read_text())
    raw["store"]["url"] = f"sqlite:///{folder / 'store.db'}"
    path = folder / "mm.yml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    logger = PredictionLogger(config)
    sim = Simulator(logger, MODELS, rate=20.0, delay=LabelDelay(1.0, 5.0), seed=3)
    now = time.time()
    sim.seed_reference(now - 7200, now - 3600, 20_000)
    for model_id in MODELS.values():
        capture(config, model_id, now - 7200, now - 3600, command="bench")
    sim.seed_reference(now - 1200, now - 5, 24_000)  # the live window: 20 minutes at 20/s
    logger.close()
    return path


def serve(command: list[str], cwd: Path = ROOT) -> subprocess.Popen:
    """`command` from `cwd`: `python -m exporter.cli` imports the exporter found there first."""
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def timed(session: requests.Session, url: str, scrapes: int, **kw) -> tuple[float, float, int]:
    """(p50 ms, p90 ms, bytes on the wire) of `scrapes` GETs after 5 warm-up ones; uncompressed
    unless the caller asks (requests offers gzip by default)."""
    kw["headers"] = {"Accept-Encoding": "identity", **kw.get("headers", {})}
    for _ in range(5):
        session.get(url, timeout=30, **kw).raise_for_status()
    times, size = [], 0
    for _ in range(scrapes):
        start = time.perf_counter()
        response = session.get(url, timeout=30, stream=True, **kw)
        body = response.raw.read()
        times.append((time.perf_counter() - start) * 1000)
        size = len(body)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9)], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--baseline-checkout", type=Path, default=None)
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    folder = Path(tempfile.mkdtemp(prefix="mm-exposition-"))
    config = seed(folder)
    localhost_cert(folder)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=10)).decode()
    webs = {
        "tls": {
            "tls_server_config": {
                "cert_file": "tls.crt",
                "key_file": "tls.key",
                "min_version": "TLS13",
            }
        },
    }
    webs["tls_auth"] = {**webs["tls"], "basic_auth_users": {"prometheus": hashed}}
    for name, web in webs.items():
        (folder / f"{name}.yml").write_text(yaml.safe_dump(web))

    def start(web: str | None) -> tuple[subprocess.Popen, str]:
        port = free_port()
        flags = [f"--web.listen-address=127.0.0.1:{port}"]
        if web:
            flags.append(f"--web.config.file={folder / f'{web}.yml'}")
        server = serve(
            [sys.executable, "-m", "exporter.cli", "serve", "--config", str(config), *flags]
        )
        scheme = "https" if web else "http"
        url = f"{scheme}://127.0.0.1:{port}"
        wait_for(
            lambda: requests.get(f"{url}/-/ready", verify=False, timeout=2).ok,
            180,
            "a ready exporter",
        )
        return server, url

    rows = []
    session = requests.Session()
    server, url = start(None)
    try:
        accept_om = {"Accept": "application/openmetrics-text; version=1.0.0"}
        rows.append(("plain HTTP, whole /metrics", *timed(session, f"{url}/metrics", args.scrapes)))
        rows.append(
            (
                "name[]=model_monitor_up",
                *timed(session, f"{url}/metrics?name[]=model_monitor_up", args.scrapes),
            )
        )
        rows.append(
            (
                "gzip",
                *timed(
                    session, f"{url}/metrics", args.scrapes, headers={"Accept-Encoding": "gzip"}
                ),
            )
        )
        om = session.get(f"{url}/metrics", headers=accept_om, timeout=30)
        assert om.headers["Content-Type"].startswith("application/openmetrics-text"), om.headers
        rows.append(
            ("OpenMetrics", *timed(session, f"{url}/metrics", args.scrapes, headers=accept_om))
        )
    finally:
        stop(server)
    for web, label in (("tls", "TLS 1.3"), ("tls_auth", "TLS 1.3 + basic auth")):
        server, url = start(web)
        try:
            kw = {"verify": str(folder / "tls.crt")}
            if web == "tls_auth":
                kw["auth"] = ("prometheus", "s3cret")
            rows.append((label, *timed(requests.Session(), f"{url}/metrics", args.scrapes, **kw)))
        finally:
            stop(server)
    if args.baseline_checkout:
        port = free_port()
        old = serve(
            [
                sys.executable,
                "-m",
                "exporter.cli",
                "serve",
                "--config",
                str(config),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            cwd=args.baseline_checkout,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: requests.get(f"{url}/-/ready", timeout=2).ok, 180, "the old exporter")
            rows.append(
                (
                    "before (hand-written handler), plain",
                    *timed(requests.Session(), f"{url}/metrics", args.scrapes),
                )
            )
        finally:
            stop(old)
    print(f"\n{'scrape':40} {'p50 ms':>8} {'p90 ms':>8} {'bytes':>9}")
    for name, p50, p90, size in rows:
        print(f"{name:40} {p50:8.1f} {p90:8.1f} {size:9,d}")


if __name__ == "__main__":
    main()
