"""Sharding: replicas started with `--shard I/N` split the models, and together serve exactly
what one exporter of all the models serves; models sharing one table read only their rows."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import create_app
from exporter.cli import capture
from exporter.service import MonitorService
from exporter.sharding import Shard, parse_shard, shard_of
from exporter.storage.engine import create_engine
from exporter.storage.prediction_store import ModelSource
from tests.conftest import (
    REGRESSION_MODEL,
    T0,
    Clock,
    keyset_read_plan,
    make_config,
    seed_regression,
)
from tests.servers import free_port, model_monitor, stop, wait_for

# Per process or per shard by nature: not part of what the shards must add up to.
OWN = (
    "process_",
    "python_",
    "model_monitor_build",
    "model_monitor_shard",
    "model_monitor_refresh_duration_seconds",
)


def test_every_model_has_exactly_one_shard_spread_evenly() -> None:
    ids = [f"model-{i}" for i in range(2000)]
    counts = Counter(shard_of(m, 4) for m in ids)
    assert set(counts) == {1, 2, 3, 4}
    assert all(400 <= c <= 600 for c in counts.values()), counts
    for m in ids[:50]:
        assert [Shard(i, 4).owns(m) for i in range(1, 5)].count(True) == 1


def test_adding_a_shard_moves_only_what_must_move() -> None:
    ids = [f"model-{i}" for i in range(2000)]
    moved = [m for m in ids if shard_of(m, 4) != shard_of(m, 5)]
    assert all(shard_of(m, 5) == 5 for m in moved)  # models move to the new shard only
    assert 0.15 <= len(moved) / len(ids) <= 0.25  # about 1/5 of them


@pytest.mark.parametrize(
    ("text", "host", "shard"),
    [("2/4", None, Shard(2, 4)), ("auto/3", "model-monitor-0", Shard(1, 3))],
)
def test_shard_flags(text, host, shard) -> None:
    assert parse_shard(text, hostname=host) == shard


@pytest.mark.parametrize(
    ("text", "host", "message"),
    [
        ("0/4", None, "between 1 and 4"),
        ("5/4", None, "between 1 and 4"),
        ("2-4", None, "I/N"),
        ("auto/3", "exporter", "ordinal"),
        ("auto/3", "model-monitor-3", "between 1 and 3"),
    ],
)
def test_bad_shard_flags_say_how(text, host, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_shard(text, hostname=host)


def _models() -> list[dict]:
    """Four models on one table, two on each shard of two."""
    ids = [f"reg{i}" for i in range(12)]
    first = [m for m in ids if shard_of(m, 2) == 1][:2]
    second = [m for m in ids if shard_of(m, 2) == 2][:2]
    return [REGRESSION_MODEL | {"model_id": "reg"}] + [
        REGRESSION_MODEL | {"model_id": m} for m in (*first[:1], *second)
    ]


def _samples(body: str) -> Counter:
    return Counter(
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if not s.name.startswith(OWN)
    )


def test_shards_add_up_to_one_exporter(tmp_path) -> None:
    config = make_config(f"sqlite:///{tmp_path / 's.db'}", models=_models())
    seed_regression(config, np.random.default_rng(5))
    for model in config.models[1:]:
        capture(config, model.model_id, T0 - 7200, T0 - 3600, command="test")

    def body(shard: Shard | None) -> str:
        service = MonitorService(config, clock=Clock(T0), shard=shard)
        client = create_app(config, service, warmup=False).test_client()
        service.start_warmup().join()
        return client.get("/metrics").text

    whole = _samples(body(None))
    parts = [_samples(body(Shard(i, 2))) for i in (1, 2)]
    assert parts[0] and parts[1] and not parts[0].keys() & parts[1].keys()
    assert parts[0] + parts[1] == whole


def test_two_replicas_serve_every_model_once(tmp_path) -> None:
    """Real `serve --shard` processes: each lists its own models, both together all of them."""
    (tmp_path / "mm.yml").write_text(
        yaml.safe_dump({"store": {"url": f"sqlite:///{tmp_path / 's.db'}"}, "models": _models()})
    )
    model_monitor("init-store", "--config", str(tmp_path / "mm.yml")).wait(timeout=60)
    servers, urls = [], []
    for shard in ("1/2", "2/2"):
        port = free_port()
        servers.append(
            model_monitor(
                "serve",
                "--config",
                str(tmp_path / "mm.yml"),
                f"--web.listen-address=127.0.0.1:{port}",
                f"--shard={shard}",
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url in urls:
            wait_for(lambda url=url: requests.get(f"{url}/-/ready", timeout=2).ok, 60, url)
        listed = [
            {m["model_id"] for m in requests.get(f"{u}/api/v1/models", timeout=5).json()["models"]}
            for u in urls
        ]
        assert listed[0] and listed[1] and not listed[0] & listed[1]
        assert listed[0] | listed[1] == {m["model_id"] for m in _models()}
        for index, (url, models) in enumerate(zip(urls, listed, strict=True), start=1):
            assert all(shard_of(m, 2) == index for m in models)
            body = requests.get(f"{url}/metrics", timeout=10).text
            assert f'model_monitor_shard_info{{shard="{index}",shards="2"}} 1.0' in body
    finally:
        for server in servers:
            stop(server)


def test_reads_of_a_shared_table_range_over_one_model(store_url: str) -> None:
    """Models sharing a table (`model_column`) read through an index the model leads: the read
    after a cursor ranges over that model's rows only, in index order, with no sort step."""
    shared = {**REGRESSION_MODEL["source"], "model_column": "model_id"}
    models = [REGRESSION_MODEL | {"model_id": m, "source": shared} for m in ("reg", "other")]
    config = make_config(store_url, models=models)
    seed_regression(config, np.random.default_rng(4))
    model = config.model("reg")
    source = ModelSource(create_engine(store_url), model)
    plan = keyset_read_plan(source, "reg_predictions")
    if source.engine.dialect.name == "sqlite":
        assert "USING INDEX ix_reg_predictions_ts_id (model_id=?" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert "ix_reg_predictions_ts_id" in plan and "model_id" in plan, plan
        assert "Sort" not in plan, plan
    source.engine.dispose()
