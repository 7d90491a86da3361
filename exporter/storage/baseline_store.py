"""Versioned baselines in the store: every capture is kept, the newest one is used."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tqdm import tqdm

from exporter.baseline import Baseline
from exporter.config import ModelConfig
from exporter.storage import audit
from exporter.storage.engine import autocommit
from exporter.storage.prediction_store import (
    ID,
    LABEL,
    PREDICTION,
    SCORE,
    TS,
    Cursor,
    ModelSource,
    Span,
    attribute_key,
    create_project_tables,
    feature_key,
    metadata_tables,
    segment_key,
)

log = logging.getLogger(__name__)


class BaselineStore:
    """Baselines numbered per model: a model's first capture is version 1, whatever other
    models have captured. The table's `version` column is the row key across all models (an
    autoincrement, so concurrent captures never collide); a model's version is its rank among
    that model's rows. Rows are never deleted."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reads = autocommit(engine)
        self.table, _, _ = metadata_tables(sa.MetaData())

    def _rank(self, model_id: str, row_key: Any) -> sa.Select[Any]:
        t = self.table
        return sa.select(sa.func.count()).where(t.c.model_id == model_id, t.c.version <= row_key)

    def save(self, baseline: Baseline, source: str, command: str) -> int:
        """Store a new version and record the capture in the audit trail; returns the version."""
        create_project_tables(self.engine)
        with self.engine.begin() as conn:
            row_key = conn.execute(
                sa.insert(self.table).values(
                    model_id=baseline.model_id,
                    created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                    source=source,
                    command=command,
                    content=baseline.to_json(),
                )
            ).inserted_primary_key[0]
            version = int(conn.execute(self._rank(baseline.model_id, row_key)).scalar_one())
        details = {"version": version, "source": source, "command": command, "rows": baseline.rows}
        audit.record(self.engine, baseline.model_id, "baseline_captured", details)
        return version

    def captures(self) -> int:
        """Baselines stored for all models. Rows are never deleted, so this changes whenever
        any model's baseline is captured (where the largest row key would miss a capture that
        committed after a later one): one query tells a refresh pass whether any model needs
        to look for a newer baseline."""
        with self._reads.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one()
            )

    def latest_version(self, model_id: str) -> int | None:
        with self._reads.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).where(self.table.c.model_id == model_id)
            ).scalar_one()
        return int(count) or None

    def load(self, model_id: str, version: int | None = None) -> Baseline | None:
        """The given version, or the newest; None if the model has no baseline yet."""
        t = self.table
        stmt = sa.select(t).where(t.c.model_id == model_id)
        if version is None:
            stmt = stmt.order_by(t.c.version.desc()).limit(1)
        else:
            stmt = stmt.order_by(t.c.version).offset(version - 1).limit(1)
        with self._reads.connect() as conn:
            row = conn.execute(stmt).mappings().first()
            if row is None:
                return None
            number = int(conn.execute(self._rank(model_id, row["version"])).scalar_one())
        baseline = Baseline.from_json(
            row["content"],
            version=number,
            created_at=row["created_at"].replace(tzinfo=dt.UTC).isoformat(),
            source=row["source"],
        )
        if row["content"].get("multivariate") and baseline.multivariate is None:
            log.warning(
                "model %s: baseline version %d was captured with in-sample multivariate "
                "reference errors, which call wide models drifted; multivariate drift is not "
                "served for it; fix: capture a new baseline (model-monitor baseline --model %s)",
                model_id,
                number,
                model_id,
            )
        return baseline


def read_range(
    engine: Engine,
    model: ModelConfig,
    start: float,
    end: float,
    batch_rows: int = 50_000,
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.Series]:
    """Every prediction of [start, end] with its label (if any): the raw input of a baseline."""
    source = ModelSource(engine, model)
    frames: list[pd.DataFrame] = []
    cursor: Cursor | None = None
    # The bar appears once the store has answered: a failure is one line, not a bar and a line.
    bar: tqdm | None = None
    while True:
        frame = source.read_predictions(
            Span(start, end, after=cursor), batch_rows, with_labels=True
        )
        if bar is None:
            bar = tqdm(desc=f"reading {model.model_id}", unit=" rows", disable=not progress)
        if len(frame):
            frames.append(frame)
            bar.update(len(frame))
            cursor = Cursor(frame[TS].iloc[-1], frame[ID].iloc[-1])
        if len(frame) < batch_rows:
            break
    bar.close()
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        stored = source.time_format("predictions").describe()
        raise ValueError(
            f"model {model.model_id}: no predictions from {_iso(start)} to {_iso(end)} in "
            f"{model.model_id}'s table {model.source.table} ({model.source.timestamp_column} "
            f"holds {stored}); check --from and --to"
        )
    return frame, source.time_format("predictions").to_epoch(frame[TS])


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")


def read_file(path: Path, model: ModelConfig) -> tuple[pd.DataFrame, pd.Series]:
    """Training data from CSV or Parquet, with the same column names as the predictions table."""
    frame = (
        pd.read_parquet(path) if path.suffix.lower() in {".parquet", ".pq"} else pd.read_csv(path)
    )
    src = model.source
    mapping = {src.prediction_column: PREDICTION, src.timestamp_column: TS}
    if src.score_column:
        mapping[src.score_column] = SCORE
    if src.labels is not None:
        mapping[src.labels.column] = LABEL
    wanted = dict(mapping)
    wanted |= {model.feature_column(n): feature_key(n) for n in model.features}
    wanted |= {s.column: segment_key(s.column) for s in model.segments}
    wanted |= {a: attribute_key(a) for a in model.protected_attributes}
    missing = sorted(c for c, key in wanted.items() if c not in frame and key not in (TS, LABEL))
    if missing:
        raise ValueError(f"{path}: columns {missing} of model {model.model_id} are not in the file")
    out = pd.DataFrame({key: frame[c] for c, key in wanted.items() if c in frame})
    if LABEL not in out and src.labels is not None:
        out[LABEL] = np.nan
    out[ID] = np.arange(len(out))
    ts = pd.Series(np.zeros(len(out)), index=out.index)  # training data has no prediction time
    return out, ts
