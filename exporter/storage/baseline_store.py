"""Versioned baselines in the store: every capture is kept, the newest one is used."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tqdm import tqdm

from exporter.baseline import Baseline
from exporter.config import ModelConfig
from exporter.storage import audit
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


class BaselineStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.table, _, _ = metadata_tables(sa.MetaData())

    def save(self, baseline: Baseline, source: str, command: str) -> int:
        """Store a new version and record the capture in the audit trail; returns the version."""
        create_project_tables(self.engine)
        with self.engine.begin() as conn:
            version = int(
                conn.execute(
                    sa.insert(self.table).values(
                        model_id=baseline.model_id,
                        created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                        source=source,
                        command=command,
                        content=baseline.to_json(),
                    )
                ).inserted_primary_key[0]
            )
        details = {"version": version, "source": source, "command": command, "rows": baseline.rows}
        audit.record(self.engine, baseline.model_id, "baseline_captured", details)
        return version

    def latest_version(self, model_id: str) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.max(self.table.c.version)).where(
                    self.table.c.model_id == model_id
                )
            ).scalar()

    def load(self, model_id: str, version: int | None = None) -> Baseline | None:
        """The given version, or the newest; None if the model has no baseline yet."""
        stmt = sa.select(self.table).where(self.table.c.model_id == model_id)
        stmt = stmt.where(self.table.c.version == version) if version is not None else stmt
        with self.engine.connect() as conn:
            row = (
                conn.execute(stmt.order_by(self.table.c.version.desc()).limit(1)).mappings().first()
            )
        if row is None:
            return None
        return Baseline.from_json(
            row["content"],
            version=row["version"],
            created_at=row["created_at"].replace(tzinfo=dt.UTC).isoformat(),
            source=row["source"],
        )


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
    codec = source.prediction_time_codec()
    frames: list[pd.DataFrame] = []
    cursor: Cursor | None = None
    with tqdm(desc=f"reading {model.model_id}", unit=" rows", disable=not progress) as bar:
        while True:
            frame = source.read_predictions(
                Span(start, end, after=cursor), batch_rows, with_labels=True
            )
            if len(frame):
                frames.append(frame)
                bar.update(len(frame))
                cursor = Cursor(frame[TS].iloc[-1], frame[ID].iloc[-1])
            if len(frame) < batch_rows:
                break
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        raise ValueError(f"model {model.model_id}: no predictions between the given times")
    return frame, codec.to_epoch(frame[TS])


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
