"""Tasks for people: a worklist by owner and status (open, in progress, done), worked on
one step at a time (start, assign, snooze, complete), each step checked and returned."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tierwise.errors import NotFoundError, TierwiseError
from tierwise.store import tasks as task_store
from tierwise.store.control import as_utc, utcnow
from tierwise.workspace import Workspace

STATUSES = task_store.STATUSES
ACTIVE = task_store.ACTIVE


def listing(ws: Workspace, *, owner: str | None = None,
            status: str | tuple[str, ...] | None = "open", customer_id: str | None = None,
            overdue: bool = False, limit: int = 200) -> list[dict[str, Any]]:
    """Tasks, soonest due first (those without a due time last); ``status="active"`` means
    open or in progress; ``overdue``: active tasks past their due time."""
    if status == "active" or overdue and status is None:
        status = ACTIVE
    now = utcnow()
    with ws.control.read() as conn:
        found = task_store.listing(conn, owner=owner, status=status, customer_id=customer_id,
                                   due_before=now if overdue else None, limit=limit)
    for task in found:  # one answer to "is it late", for the API, the CLI and the dashboard
        due = as_utc(task["due_at"]) if task["due_at"] is not None else None
        task["overdue"] = task["status"] in ACTIVE and due is not None and due < now
    return found


def _active(conn: Any, task_id: int) -> dict[str, Any]:
    row = task_store.get(conn, task_id)
    if row is None:
        raise NotFoundError(f"no task {task_id}", zh=f"没有任务 {task_id}")
    if row["status"] not in ACTIVE:
        raise TierwiseError(f"task {task_id} is {row['status']} already",
                            zh=f"任务 {task_id} 已经是 {row['status']} 状态")
    return row


def _step(ws: Workspace, task_id: int, **values: Any) -> dict[str, Any]:
    with ws.control.write() as conn:
        _active(conn, task_id)
        task_store.change(conn, task_id, **values)
        found = task_store.get(conn, task_id)
        assert found is not None
        return found


def complete(ws: Workspace, task_id: int, by: str) -> dict[str, Any]:
    return _step(ws, task_id, status="done", completed_at=utcnow(), completed_by=by)


def start(ws: Workspace, task_id: int) -> dict[str, Any]:
    """Someone is working on it (in progress)."""
    return _step(ws, task_id, status="in_progress")


def assign(ws: Workspace, task_id: int, owner: str) -> dict[str, Any]:
    """Give the task to ``owner`` (a person's name as customers' owners are written)."""
    name = owner.strip()
    if not name or len(name) > 200:
        raise TierwiseError("an owner is a name of 1 to 200 characters",
                            zh="负责人应为 1 到 200 个字符的名字")
    return _step(ws, task_id, owner=name)


def snooze(ws: Workspace, task_id: int, until: datetime) -> dict[str, Any]:
    """Put the task off until ``until`` (its new due time; in the future)."""
    when = as_utc(until) if until.tzinfo is not None else until.replace(
        tzinfo=ws.config.zone)
    if when <= utcnow():
        raise TierwiseError(f"snooze until {when.isoformat()}: that is not in the future",
                            zh=f"推迟到 {when.isoformat()}：这不是将来的时间")
    return _step(ws, task_id, due_at=when)


__all__ = ["ACTIVE", "STATUSES", "assign", "complete", "listing", "snooze", "start"]
