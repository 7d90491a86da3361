"""Real Prometheus and Alertmanager processes on free loopback ports, for tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import requests

from tests.conftest import binary
from tests.servers import free_port, stop, wait_for

ALERTMANAGER_NAMES = ("prometheus-alertmanager", "alertmanager")


def alertmanager_binary() -> str:
    import shutil

    for name in ALERTMANAGER_NAMES:
        if shutil.which(name):
            return str(shutil.which(name))
    return binary(ALERTMANAGER_NAMES[0])  # skips, or fails under CI, with the reason


@contextmanager
def _server(name: str, args: list[str], workdir: Path) -> Iterator[str]:
    """Run a Prometheus-style server on a free port until the block ends; yields its base URL."""
    port = free_port()
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [*args, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, 30, name)
        yield url
    finally:
        stop(process)
        log.close()


def alertmanager(config: Path, workdir: Path) -> AbstractContextManager[str]:
    """Run Alertmanager with `config`; yields its base URL."""
    return _server(
        "alertmanager",
        [
            alertmanager_binary(),
            f"--config.file={config}",
            f"--storage.path={workdir / 'am-data'}",
            "--cluster.listen-address=",
        ],
        workdir,
    )


def prometheus(config: Path, workdir: Path) -> AbstractContextManager[str]:
    """Run Prometheus with `config`; yields its base URL."""
    return _server(
        "prometheus",
        [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'prom-data'}",
        ],
        workdir,
    )
