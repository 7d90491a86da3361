"""Dashboards as code: a JSON model Grafana 11 loads as is, regenerated JSON up to date, and the
push command against a loopback server that checks Grafana's dashboard API contract."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from exporter.cli import main
from exporter.visualization.grafana import DATASOURCE
from tests.conftest import ROOT
from tests.servers import free_port

GENERATED = sorted((ROOT / "dashboards" / "generated").glob("*.json"))
CURRENT_PANEL_TYPES = {"timeseries", "stat", "heatmap", "bargauge", "table", "row"}


def test_every_dashboard_source_is_generated() -> None:
    assert {p.name for p in GENERATED} == {"overview.json", "model-detail.json"}


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: p.name)
def test_json_model_needs_no_migration(path) -> None:
    model = json.loads(path.read_text())
    panels = model["panels"]
    assert {p["type"] for p in panels} <= CURRENT_PANEL_TYPES
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert not isinstance(panel.get("datasource"), str), panel["title"]  # never a bare string
        if panel["type"] != "row":
            assert panel["datasource"] == DATASOURCE, panel["title"]
            assert panel["targets"] and panel["description"], panel["title"]
        for t in panel.get("targets", []):
            assert t["datasource"] == DATASOURCE and t["expr"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    for variable in model["templating"]["list"]:
        assert not isinstance(variable.get("datasource"), str), variable["name"]
    assert model["uid"] in ("model-monitor-overview", "model-monitor-detail")


def test_detail_has_the_seed_sections() -> None:
    model = json.loads((ROOT / "dashboards" / "generated" / "model-detail.json").read_text())
    rows = [p["title"] for p in model["panels"] if p["type"] == "row"]
    assert rows == [
        "Performance",
        "Data drift",
        "Prediction distribution",
        "Fairness",
        "Error analysis",
        "Resource utilization",
    ]
    assert {v["name"] for v in model["templating"]["list"]} == {
        "datasource",
        "job",
        "model_id",
        "feature",
        "attribute",
        "segment",
    }


class FakeGrafana:
    """Grafana's folder and dashboard API, strict about the request contract."""

    def __init__(self, token: str = "s3cret", fail_with: int | None = None) -> None:
        self.token, self.fail_with = token, fail_with
        self.dashboards: dict[str, dict] = {}
        self.folders: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        grafana = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                grafana.requests.append((self.command, self.path))
                if grafana.fail_with:
                    self._reply(grafana.fail_with, {"message": "nope"})
                    return False
                if self.headers.get("Authorization") != f"Bearer {grafana.token}":
                    self._reply(401, {"message": "Unauthorized"})
                    return False
                return True

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                uid = self.path.removeprefix("/api/folders/")
                if uid in grafana.folders:
                    self._reply(200, {"uid": uid, "title": grafana.folders[uid]})
                else:
                    self._reply(404, {"message": "folder not found"})

            def do_POST(self) -> None:
                if not self._authorised():
                    return
                assert self.headers["Content-Type"] == "application/json"
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/api/folders":
                    assert set(body) == {"uid", "title"}
                    grafana.folders[body["uid"]] = body["title"]
                    self._reply(200, {"uid": body["uid"], "title": body["title"]})
                    return
                assert self.path == "/api/dashboards/db"
                dashboard = body["dashboard"]
                assert body["overwrite"] is True and dashboard["id"] is None and dashboard["uid"]
                assert body.get("folderUid") in (None, *grafana.folders)
                version = grafana.dashboards.get(dashboard["uid"], {}).get("version", 0) + 1
                grafana.dashboards[dashboard["uid"]] = {**dashboard, "version": version}
                self._reply(
                    200,
                    {
                        "uid": dashboard["uid"],
                        "version": version,
                        "status": "success",
                        "url": f"/d/{dashboard['uid']}",
                    },
                )

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text("s3cret\n")
    return path


def _push(url: str, token_file, folder: str | None = "Model monitor") -> int:
    args = [
        "dashboards",
        "push",
        "--grafana-url",
        url,
        "--token-file",
        str(token_file),
        "--dashboards",
        str(ROOT / "dashboards" / "generated"),
    ]
    return main([*args, "--folder", folder] if folder else args)


def test_push_creates_folder_and_is_idempotent(token_file, capsys) -> None:
    grafana = FakeGrafana()
    try:
        assert _push(grafana.url, token_file) == 0
        assert grafana.folders == {"model-monitor": "Model monitor"}
        assert set(grafana.dashboards) == {"model-monitor-overview", "model-monitor-detail"}
        assert _push(grafana.url, token_file) == 0  # again: same uids, overwritten
        assert set(grafana.dashboards) == {"model-monitor-overview", "model-monitor-detail"}
        assert all(d["version"] == 2 for d in grafana.dashboards.values())
        assert grafana.requests.count(("POST", "/api/folders")) == 1
        assert "pushed model-monitor-detail (version 2)" in capsys.readouterr().out
    finally:
        grafana.close()


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (401, "token was rejected"),
        (403, "Editor role"),
        (404, "no Grafana API at"),
    ],
)
def test_push_error_paths_say_what_to_fix(token_file, capsys, status: int, hint: str) -> None:
    grafana = FakeGrafana(fail_with=status)
    try:
        assert _push(grafana.url, token_file, folder=None) == 1
        err = capsys.readouterr().err
        assert f"Grafana answered {status}" in err and hint in err
    finally:
        grafana.close()


def test_push_with_a_wrong_token_is_a_401(tmp_path, capsys) -> None:
    grafana = FakeGrafana(token="other")
    (tmp_path / "token").write_text("s3cret")
    try:
        assert _push(grafana.url, tmp_path / "token") == 1
        assert "token was rejected" in capsys.readouterr().err
    finally:
        grafana.close()


def test_push_network_error(token_file, capsys) -> None:
    assert _push(f"http://127.0.0.1:{free_port()}", token_file) == 1
    assert "cannot reach Grafana" in capsys.readouterr().err
