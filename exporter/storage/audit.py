"""The audit trail: who did what to which model, when (baselines, retraining, decisions)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from exporter.storage.engine import autocommit
from exporter.storage.prediction_store import metadata_tables

_, AUDIT, _ = metadata_tables(sa.MetaData())


def _naive_utc(epoch: float | None = None) -> dt.datetime:
    moment = dt.datetime.now(dt.UTC) if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC)
    return moment.replace(tzinfo=None)


def record(
    engine: Engine,
    model_id: str | None,
    action: str,
    details: dict[str, Any],
    at: float | None = None,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(AUDIT).values(
                at=_naive_utc(at), model_id=model_id, action=action, details=details
            )
        )


def last_action(engine: Engine, model_id: str, action: str) -> float | None:
    """Epoch seconds of the model's latest `action`, or None."""
    with autocommit(engine).connect() as conn:
        at = conn.execute(
            sa.select(sa.func.max(AUDIT.c.at)).where(
                AUDIT.c.model_id == model_id, AUDIT.c.action == action
            )
        ).scalar()
    return None if at is None else at.replace(tzinfo=dt.UTC).timestamp()


def entries(engine: Engine, model_id: str, action: str | None = None) -> list[dict[str, Any]]:
    stmt = sa.select(AUDIT).where(AUDIT.c.model_id == model_id).order_by(AUDIT.c.id)
    if action is not None:
        stmt = stmt.where(AUDIT.c.action == action)
    with autocommit(engine).connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]
