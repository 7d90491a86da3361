"""What estimation keeps in a baseline (the classifier's calibration map, the regression's loss
models, the principal components) captured through the real store, SQLite and PostgreSQL JSON
columns, and loaded back: the same estimates as a baseline captured in memory from the same
rows."""

from __future__ import annotations

import numpy as np
import pytest

from exporter.cli import capture
from exporter.config import parse_config
from exporter.logging.prediction_logger import PredictionLogger
from exporter.report import report_of
from exporter.simulator import account_health_batch, ad_score_batch
from exporter.storage.baseline_store import BaselineStore
from exporter.storage.engine import create_engine
from exporter.window import capture_baseline
from tests.conftest import T0

KINDS = {
    "binary_classification": (
        account_health_batch,
        {"spend_trend": "numeric", "days_since_login": "numeric", "support_tickets": "numeric"},
    ),
    "regression": (
        ad_score_batch,
        {
            "ctr_history": "numeric",
            "ad_length": "numeric",
            "bid": "numeric",
            "placement": "categorical",
        },
    ),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_estimation_survives_the_store(store_url, kind) -> None:
    generate, features = KINDS[kind]
    source = {"table": "preds", "labels": {"column": "outcome", "arrival_column": "outcome_at"}}
    if kind == "binary_classification":
        source["score_column"] = "score"
    config = parse_config(
        {
            "store": {"url": store_url},
            "models": [
                {
                    "model_id": "m",
                    "kind": kind,
                    "source": source,
                    "features": features,
                    "min_samples": 100,
                }
            ],
        }
    )
    model = config.models[0]
    batch = generate(np.random.default_rng(9), 2000, "stable")
    with PredictionLogger(config) as logger:
        for i, ts in enumerate(np.linspace(T0 - 3600, T0 - 60, 2000)):
            pid = logger.log_prediction(
                "m",
                {name: batch.features[name][i].item() for name in features},
                float(batch.prediction[i]),
                score=None if batch.score is None else float(batch.score[i]),
                timestamp=float(ts),
            )
            logger.log_actual("m", pid, float(batch.actual[i]), timestamp=float(ts) + 1)
    version = capture(config, "m", T0 - 3600, T0, command="test")
    stored = BaselineStore(create_engine(store_url)).load("m", version)
    kept = stored.calibration if kind == "binary_classification" else stored.loss_model
    assert kept is not None and stored.multivariate is not None
    fresh = capture_baseline(model, batch.rows(model))
    window = generate(np.random.default_rng(10), 3000, "covariate_shift").rows(model, labels=False)
    ours = report_of(model, stored, window)
    theirs = report_of(model, fresh, window)
    assert ours.estimated.values == pytest.approx(theirs.estimated.values, rel=1e-9)
    assert ours.multivariate.error == pytest.approx(theirs.multivariate.error, rel=1e-9)
