"""Tasks for people: listed by owner, completed once."""

from __future__ import annotations

from typing import Any

from tierwise.errors import NotFoundError, TierwiseError
from tierwise.store import tasks as task_store
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace


def listing(ws: Workspace, *, owner: str | None = None, status: str | None = "open",
            customer_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Tasks, soonest due first (those without a due time last)."""
    with ws.control.read() as conn:
        return task_store.listing(conn, owner=owner, status=status, customer_id=customer_id,
                                  limit=limit)


def complete(ws: Workspace, task_id: int, by: str) -> dict[str, Any]:
    with ws.control.write() as conn:
        row = task_store.get(conn, task_id)
        if row is None:
            raise NotFoundError(f"no task {task_id}")
        if row["status"] != "open":
            raise TierwiseError(f"task {task_id} is {row['status']} already")
        task_store.complete(conn, task_id, by, utcnow())
        done = task_store.get(conn, task_id)
        assert done is not None
        return done


__all__ = ["complete", "listing"]
