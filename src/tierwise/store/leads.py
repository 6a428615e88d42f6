"""Lead scores (``lead_scores``): the scores lead scoring (``models.leads``) keeps, read as
the segment field ``lead_score`` and listed highest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from tierwise.store.control import ControlStore, as_utc, chunked
from tierwise.store.tables import lead_scores


def as_table(control: ControlStore) -> pa.Table:
    """``customer_id``, ``lead_score`` for the engines (the segment field)."""
    with control.read() as conn:
        rows = conn.execute(sa.select(lead_scores.c.customer_id, lead_scores.c.score)).all()
    return pa.table({"customer_id": pa.array([r[0] for r in rows], pa.string()),
                     "lead_score": pa.array([r[1] for r in rows], pa.float64())})


def as_qualified(control: ControlStore) -> pa.Table:
    """``customer_id``, ``qualified_at`` of the leads that qualified (the funnel's step)."""
    with control.read() as conn:
        rows = conn.execute(sa.select(lead_scores.c.customer_id, lead_scores.c.qualified_at)
                            .where(lead_scores.c.qualified_at.is_not(None))).all()
    return pa.table({"customer_id": pa.array([r[0] for r in rows], pa.string()),
                     "qualified_at": pa.array([as_utc(r[1]) for r in rows],
                                              pa.timestamp("us", "UTC"))})


def state(conn: sa.Connection) -> tuple[int, datetime | None]:
    """How many leads qualified, and the latest qualification: changes when one does."""
    row = conn.execute(sa.select(sa.func.count(lead_scores.c.qualified_at),
                                 sa.func.max(lead_scores.c.qualified_at))).one()
    return int(row[0] or 0), row[1]


def leads(control: ControlStore, qualified_only: bool = False, limit: int = 200
          ) -> list[dict[str, Any]]:
    query = sa.select(lead_scores)
    if qualified_only:
        query = query.where(lead_scores.c.qualified_at.is_not(None))
    with control.read() as conn:
        rows = conn.execute(query.order_by(lead_scores.c.score.desc(),
                                           lead_scores.c.customer_id).limit(limit)).all()
    return [{"customer_id": r.customer_id, "score": r.score,
             "computed_at": r.computed_at, "qualified_at": r.qualified_at}
            for r in rows]


def scored(conn: sa.Connection) -> list[str]:
    """Every customer with a stored score."""
    return [r[0] for r in conn.execute(sa.select(lead_scores.c.customer_id))]


def of(conn: sa.Connection, ids: list[str]) -> dict[str, tuple[float, datetime | None]]:
    """(score, qualified_at) of those of ``ids`` with a stored score."""
    found: dict[str, tuple[float, datetime | None]] = {}
    for part in chunked(ids):
        for r in conn.execute(sa.select(lead_scores.c.customer_id, lead_scores.c.score,
                                        lead_scores.c.qualified_at).where(
                lead_scores.c.customer_id.in_(part))):
            found[r.customer_id] = (r.score, r.qualified_at)
    return found


def write(conn: sa.Connection, fresh: list[dict[str, Any]],
          changed: list[dict[str, Any]]) -> None:
    """Insert the scores of customers new to the table and update ``changed`` ones (rows of
    customer_id, score, computed_at, qualified_at)."""
    if fresh:
        conn.execute(lead_scores.insert(), fresh)
    for row in changed:
        conn.execute(lead_scores.update().where(
            lead_scores.c.customer_id == row["customer_id"]).values(
            score=row["score"], computed_at=row["computed_at"],
            qualified_at=row["qualified_at"]))
