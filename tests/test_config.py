"""Config errors name the key path, the bad value and the fix; check-config finds missing
columns."""

from __future__ import annotations

import copy

import pytest

from exporter.cli import main
from exporter.config import STORE_URL_ENV, ConfigError, load_config, parse_config
from tests.conftest import REGRESSION_MODEL, ROOT, make_config


def _raw(**changes):
    model = copy.deepcopy(REGRESSION_MODEL)
    model.update(changes)
    return {"store": {"url": "sqlite:///unused.db"}, "models": [model]}


@pytest.mark.parametrize("path", ["model-monitor.yml", "examples/demo.yml"])
def test_shipped_configs_are_valid(path: str) -> None:
    config = load_config(ROOT / path)
    assert {m.model_id for m in config.models} == {"ad_score_model_v1", "account_health_model_v1"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"kind": "ranking"},
            "(model_id=reg).kind: Input should be 'regression' or 'binary_classification'",
        ),
        (
            {"drift_window": {"length": "1h", "bucket": "7m"}},
            "(model_id=reg).drift_window: length (3600s) must be a whole number of buckets",
        ),
        (
            {"drift_window": {"length": "soon", "bucket": "1m"}},
            "drift_window.length: 'soon' is not a duration",
        ),
        (
            {"features": {"x1": "numerc"}},
            "features.x1.type: Input should be 'numeric' or 'categorical'",
        ),
        ({"feature_thresholds": {"nope": {"psi": 0.1}}}, "feature_thresholds names ['nope']"),
        (
            {"treshold": 1},
            "(model_id=reg).treshold: Extra inputs are not permitted (got 1); fix: remove it",
        ),
    ],
)
def test_errors_name_path_value_and_fix(change, expected) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_raw(**change))
    assert expected in str(err.value)
    assert "fix:" in str(err.value)


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:m?mode=memory&cache=shared&uri=true"]
)
def test_an_in_memory_sqlite_store_is_refused_with_the_fix(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each thread's connection to an in-memory SQLite database opens a new, empty one, and the
    exporter refreshes on its own thread: it would read nothing and say the store is down."""
    monkeypatch.delenv(STORE_URL_ENV, raising=False)
    raw = _raw()
    raw["store"]["url"] = url
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert str(err.value).startswith(f"store.url: {url!r} is an in-memory SQLite database")
    assert "fix: use a file" in str(err.value)
    monkeypatch.setenv(STORE_URL_ENV, url)  # the key named is where the URL came from
    with pytest.raises(ConfigError, match=f"^{STORE_URL_ENV}: "):
        parse_config(_raw())
    monkeypatch.setenv(STORE_URL_ENV, "sqlite:///data/memory_store.db")  # a file: accepted
    assert parse_config(_raw()).store.url.endswith("/data/memory_store.db")


def test_classifier_needs_a_score_column() -> None:
    raw = _raw(kind="binary_classification")
    with pytest.raises(ConfigError, match=r"needs `source\.score_column`"):
        parse_config(raw)


def test_per_feature_threshold_overrides() -> None:
    config = parse_config(
        _raw(thresholds={"psi": 0.2, "js_distance": 0.1}, feature_thresholds={"x1": {"psi": 0.5}})
    )
    model = config.models[0]
    assert model.thresholds_for("x1").psi == 0.5
    assert model.thresholds_for("x1").js_distance == 0.1
    assert model.thresholds_for("x2").psi == 0.2


def test_store_url_from_environment_and_relative_sqlite(tmp_path, monkeypatch) -> None:
    path = tmp_path / "conf" / "mm.yml"
    path.parent.mkdir()
    path.write_text("store: {url: 'sqlite:///data/x.db'}\nmodels: []\n")
    assert load_config(path).store.url == f"sqlite:///{tmp_path / 'conf' / 'data' / 'x.db'}"
    monkeypatch.setenv("MODEL_MONITOR_STORE_URL", "sqlite:////elsewhere.db")
    assert load_config(path).store.url == "sqlite:////elsewhere.db"


def test_check_config_reports_missing_columns(tmp_path, capsys) -> None:
    from exporter.storage.engine import create_engine
    from exporter.storage.prediction_store import create_schema

    url = f"sqlite:///{tmp_path / 's.db'}"
    create_schema(create_engine(url), make_config(url))
    config_path = tmp_path / "mm.yml"
    broken = copy.deepcopy(REGRESSION_MODEL)
    broken["features"] = {"x1": "numeric", "x9": "numeric"}
    import yaml

    config_path.write_text(yaml.safe_dump({"store": {"url": url}, "models": [broken]}))
    assert main(["check-config", "--config", str(config_path)]) == 1
    err = capsys.readouterr().err
    assert "features.x9.column: column 'x9' is not in table 'reg_predictions'" in err
    config_path.write_text(yaml.safe_dump({"store": {"url": url}, "models": [REGRESSION_MODEL]}))
    assert main(["check-config", "--config", str(config_path)]) == 0


def test_cli_prints_config_errors_without_traceback(tmp_path, capsys) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("models:\n  - model_id: m\n    kind: regression\n")
    assert main(["check-config", "--config", str(path), "--no-store"]) == 2
    err = capsys.readouterr().err
    assert "models[0] (model_id=m).source: Field required; fix: add this key" in err
