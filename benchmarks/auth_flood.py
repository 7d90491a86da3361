"""A legitimate scrape's latency under a flood of wrong basic-auth passwords.

A real exporter (`model-monitor serve --web.config.file`, gunicorn, one model on SQLite, cost-10
bcrypt hash) is scraped by one client with the right password over a kept-alive connection:
first idle, then while 20 clients (threads of another process, on the other core, as if from
other machines) send wrong passwords as fast as they are answered, once with one wrong password
each (a misconfigured job) and once with a new random password on every request (a brute
force). Target: the legitimate p50 under a flood within 2x its idle p50.

    python benchmarks/auth_flood.py [--scrapes 400] [--clients 20]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import bcrypt
import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "prometheus", "right-password"


def _start(tmp: Path, port: int) -> subprocess.Popen:
    config = {
        "store": {"url": f"sqlite:///{tmp / 'store.db'}"},
        "models": [
            {
                "model_id": "m",
                "kind": "regression",
                "source": {"table": "predictions"},
                "features": {"x": "numeric"},
            }
        ],
    }
    (tmp / "config.yml").write_text(yaml.safe_dump(config))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    (tmp / "web.yml").write_text(yaml.safe_dump({"basic_auth_users": {USER: hashed}}))
    cli = [sys.executable, "-m", "exporter.cli"]
    subprocess.run([*cli, "init-store", "--config", str(tmp / "config.yml")], check=True)
    server = subprocess.Popen(  # inherits CPU 0, the measuring client's; the flood gets CPU 1
        [
            *cli,
            "serve",
            "--config",
            str(tmp / "config.yml"),
            "--web.listen-address",
            f"127.0.0.1:{port}",
            "--web.config.file",
            str(tmp / "web.yml"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            if requests.get(f"http://127.0.0.1:{port}/metrics", auth=(USER, PASSWORD)).ok:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("the exporter did not start")


def _p50(port: int, scrapes: int) -> float:
    """Median seconds of a scrape over one kept-alive connection (http.client: the lightest
    client, so that the figure is the server's)."""
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    conn, took = http.client.HTTPConnection("127.0.0.1", port, timeout=30), []
    for _ in range(scrapes):
        start = time.perf_counter()
        conn.request("GET", "/metrics", headers={"Authorization": f"Basic {token}"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        took.append(time.perf_counter() - start)
    conn.close()
    return statistics.median(took)


def _flood(url: str, clients: int, random_passwords: bool, seconds: float) -> None:
    """Run in its own process (`--flood`), so that the flood's threads do not share the
    measuring client's interpreter lock: `clients` threads send wrong passwords for `seconds`."""
    stop, sent = threading.Event(), [0] * clients

    def client(i: int) -> None:
        session, password = requests.Session(), f"wrong-{i}"
        while not stop.is_set():
            if random_passwords:
                password = secrets.token_hex(8)
            assert session.get(url, auth=(USER, password), timeout=30).status_code == 401
            sent[i] += 1

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    print(f"{sum(sent) / (time.perf_counter() - started):.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=400)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument(
        "--flood", nargs=3, metavar=("URL", "RANDOM", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.flood:
        url, random_passwords, seconds = args.flood
        _flood(url, args.clients, random_passwords == "1", float(seconds))
        return
    # The flood on its own core, as if it came from other machines; the exporter and the
    # client measuring it share the other.
    os.sched_setaffinity(0, {0})
    with tempfile.TemporaryDirectory() as tmp:
        port = 19000 + secrets.randbelow(1000)
        server = _start(Path(tmp), port)
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            idle = _p50(port, args.scrapes)
            print(f"idle: legitimate scrape p50 {idle * 1000:.1f} ms")
            for random_passwords in (False, True):
                started = time.perf_counter()
                flood = subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--clients",
                        str(args.clients),
                        "--flood",
                        url,
                        str(int(random_passwords)),
                        "3600",
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                os.sched_setaffinity(flood.pid, {1})  # before its threads start: they inherit
                time.sleep(2.0)  # the flood at full speed
                flooded = _p50(port, args.scrapes)
                flood.terminate()
                rate = flood.communicate(timeout=20)[0].strip()
                kind = "random wrong passwords" if random_passwords else "one wrong password each"
                print(
                    f"flood of {args.clients} clients ({kind}, {rate} refused requests/s): "
                    f"legitimate p50 {flooded * 1000:.1f} ms = {flooded / idle:.2f}x idle "
                    f"({time.perf_counter() - started:.0f} s)"
                )
        finally:
            server.terminate()
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
