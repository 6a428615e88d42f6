"""Tasks for people: listed by owner, completed once."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tierwise.errors import NotFoundError, TierwiseError
from tierwise.store.control import utcnow
from tierwise.store.tables import tasks
from tierwise.workspace import Workspace


def _row(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    data.pop("idempotency_key", None)
    return data


def listing(ws: Workspace, *, owner: str | None = None, status: str | None = "open",
            customer_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Tasks, soonest due first (those without a due time last)."""
    query = sa.select(tasks)
    if owner is not None:
        query = query.where(tasks.c.owner == owner)
    if status is not None:
        query = query.where(tasks.c.status == status)
    if customer_id is not None:
        query = query.where(tasks.c.customer_id == customer_id)
    query = query.order_by(tasks.c.due_at.is_(None), tasks.c.due_at, tasks.c.task_id)
    with ws.control.read() as conn:
        return [_row(r) for r in conn.execute(query.limit(limit))]


def complete(ws: Workspace, task_id: int, by: str) -> dict[str, Any]:
    with ws.control.write() as conn:
        row = conn.execute(sa.select(tasks).where(tasks.c.task_id == task_id)).first()
        if row is None:
            raise NotFoundError(f"no task {task_id}")
        if row.status != "open":
            raise TierwiseError(f"task {task_id} is {row.status} already")
        conn.execute(tasks.update().where(tasks.c.task_id == task_id).values(
            status="done", completed_at=utcnow(), completed_by=by))
        return _row(conn.execute(sa.select(tasks).where(tasks.c.task_id == task_id)).one())


__all__ = ["complete", "listing"]
