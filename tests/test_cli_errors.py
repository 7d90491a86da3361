"""Every CLI failure is one line saying what failed, where, and what to do; exit non-zero;
`--debug` shows the traceback. Run as a user runs it: a real process, real stores."""

from __future__ import annotations

import subprocess
from pathlib import Path

import sqlalchemy as sa
import yaml

from tests.conftest import REGRESSION_MODEL
from tests.servers import free_port, model_monitor_run


def _config(tmp_path: Path, url: str, name: str = "config.yml", **model: object) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"store": {"url": url}, "models": [REGRESSION_MODEL | model]}))
    return str(path)


def _one_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "valid" not in result.stdout  # nothing claims success before the failure
    return lines[0]


def test_an_unreachable_store_is_one_line_for_every_command(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    config = _config(tmp_path, url)
    for command in (
        ["check-config"],
        ["init-store"],
        ["baseline", "--model", "reg", "--from", "2026-11-24T10:54:58Z"],
    ):
        result = model_monitor_run(*command, "--config", config, cwd=tmp_path)
        _one_line(result, "store.url", "Connection refused")


def test_a_wrong_user_is_one_line(tmp_path: Path, pg_url: str) -> None:
    config = _config(tmp_path, pg_url.replace("postgres@", "nobody_here@"))
    _one_line(
        model_monitor_run("check-config", "--config", config, cwd=tmp_path),
        "nobody_here",
        "store.url",
    )


def test_files_and_arguments_are_one_line(tmp_path: Path) -> None:
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'store.db'}")
    _one_line(
        model_monitor_run(
            "baseline", "--config", config, "--model", "reg", "--file", "missing.csv", cwd=tmp_path
        ),
        "missing.csv",
        "No such file",
    )
    _one_line(
        model_monitor_run("baseline", "--config", config, "--model", "reg", cwd=tmp_path), "--file"
    )
    _one_line(
        model_monitor_run(
            "baseline", "--config", config, "--model", "nope", "--file", "x.csv", cwd=tmp_path
        ),
        "nope",
    )
    _one_line(
        model_monitor_run("check-config", "--config", str(tmp_path / "absent.yml"), cwd=tmp_path),
        "absent.yml",
    )
    bad = _config(tmp_path, "sqlite:///x.db", name="bad.yml", kind="ranking")
    _one_line(model_monitor_run("check-config", "--config", bad, cwd=tmp_path), "kind", "fix:")
    assert model_monitor_run("check-config", "--config", bad, cwd=tmp_path).returncode == 2


def test_a_mapping_on_wrong_column_types_names_each_column_and_the_fix(
    tmp_path: Path, store_url: str
) -> None:
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE reg_predictions (prediction_id VARCHAR(64) PRIMARY KEY, created_at "
            "BOOLEAN, prediction TEXT, latency_seconds REAL, x1 TEXT, x2 REAL, color TEXT, "
            "tier TEXT)"
        )
        conn.exec_driver_sql(
            "CREATE TABLE reg_labels (prediction_id VARCHAR(64) PRIMARY KEY, actual REAL, "
            "labeled_at TIMESTAMP)"
        )
    engine.dispose()
    result = model_monitor_run(
        "check-config", "--config", _config(tmp_path, store_url), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "valid" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert any("created_at" in e and "holds no time" in e for e in errors), errors
    assert any("'prediction'" in e and "must hold numbers" in e for e in errors), errors
    assert any("'x1'" in e and "categorical" in e for e in errors), errors
    assert not any("'color'" in e or "'x2'" in e for e in errors), errors


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    config = _config(tmp_path, f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    result = model_monitor_run("--debug", "check-config", "--config", config, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr
