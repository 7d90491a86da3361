"""Rendering dashboards/*.dashboard.py to Grafana JSON (exporter.mixin writes the files), and
pushing the generated JSON to Grafana through its HTTP API (requests)."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path
from typing import Any

import requests

from exporter.visualization.grafana import to_json

SUFFIX = ".dashboard.py"


class GrafanaError(RuntimeError):
    """A push failed; the message says what to fix."""


def render(source: Path) -> str:
    dashboard = runpy.run_path(str(source))["dashboard"]
    return json.dumps(to_json(dashboard), indent=2, sort_keys=True) + "\n"


def render_all(folder: Path) -> dict[str, str]:
    """The JSON of each `<name>.dashboard.py` in `folder`, by name (written by exporter.mixin,
    with the mixin config of the run active)."""
    return {
        source.name.removesuffix(SUFFIX): render(source)
        for source in sorted(folder.glob(f"*{SUFFIX}"))
    }


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40] or "model-monitor"


def _check(response: requests.Response, url: str) -> None:
    if response.ok:
        return
    hints = {
        401: "the token was rejected: check --token-file (a Grafana service account token)",
        403: "the token may not write dashboards: give its service account the Editor role",
        404: f"no Grafana API at {url}: check --grafana-url",
    }
    hint = hints.get(response.status_code, response.text[:200])
    raise GrafanaError(
        f"Grafana answered {response.status_code} to {response.request.method} "
        f"{response.url}: {hint}"
    )


def push(
    files: list[Path],
    grafana_url: str,
    token: str,
    folder: str | None = None,
    timeout: float = 10.0,
) -> list[dict[str, Any]]:
    """Create or overwrite each dashboard (stable uids, so pushing twice changes nothing)."""
    base = grafana_url.rstrip("/")
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
    try:
        folder_uid = None
        if folder:
            folder_uid = _slug(folder)
            found = session.get(f"{base}/api/folders/{folder_uid}", timeout=timeout)
            if found.status_code == 404:
                created = session.post(
                    f"{base}/api/folders",
                    json={"uid": folder_uid, "title": folder},
                    timeout=timeout,
                )
                _check(created, base)
            else:
                _check(found, base)
        results = []
        for path in files:
            dashboard = json.loads(path.read_text())
            dashboard["id"] = None
            body = {"dashboard": dashboard, "overwrite": True, "message": "pushed by model-monitor"}
            if folder_uid:
                body["folderUid"] = folder_uid
            response = session.post(f"{base}/api/dashboards/db", json=body, timeout=timeout)
            _check(response, base)
            results.append(response.json())
        return results
    except requests.ConnectionError as exc:
        raise GrafanaError(
            f"cannot reach Grafana at {base}: {exc.__class__.__name__}; "
            "check --grafana-url and the network"
        ) from None
    except requests.Timeout:
        raise GrafanaError(f"Grafana at {base} did not answer within {timeout:g}s") from None
