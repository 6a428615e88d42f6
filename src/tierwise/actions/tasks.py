"""Tasks for people: a worklist by owner and status (open, in progress, done), worked on
one step at a time (start, assign, snooze, complete), each step checked and returned."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tierwise.errors import NotFoundError, TierwiseError
from tierwise.ingest.report import safe_csv_bytes
from tierwise.models import compute
from tierwise.store import tasks as task_store
from tierwise.store.control import as_utc, utcnow
from tierwise.workspace import Workspace

STATUSES = task_store.STATUSES
ACTIVE = task_store.ACTIVE


def listing(ws: Workspace, *, owner: str | None = None, team: str | None = None,
            status: str | tuple[str, ...] | None = "open", customer_id: str | None = None,
            overdue: bool = False, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
    """Tasks, soonest due first (those without a due time last); ``status="active"`` means
    open or in progress; ``team``: the role a task was given to (sales, service, …);
    ``overdue``: active tasks past their due time; ``offset``: skip that many (a page).

    One answer, for the API, the CLI and the dashboard, to two questions about each task:
    ``overdue`` — is it late — and ``strategic`` — is its customer in the best tier of the
    tier setting in force (A, VIP, …; from the latest snapshot; false before the first
    compute)."""
    if status == "active" or overdue and status is None:
        status = ACTIVE
    now = utcnow()
    with ws.control.read() as conn:
        found = task_store.listing(conn, owner=owner, role=team, status=status,
                                   customer_id=customer_id,
                                   due_before=now if overdue else None, limit=limit,
                                   offset=offset)
    values = compute.latest_values(ws, (t["customer_id"] for t in found), ["tier"])
    best = compute.best_tier(ws) if values else None
    for task in found:
        due = as_utc(task["due_at"]) if task["due_at"] is not None else None
        task["overdue"] = task["status"] in ACTIVE and due is not None and due < now
        task["team"] = task.get("role")
        tier = values.get(task["customer_id"], {}).get("tier")
        task["strategic"] = best is not None and tier == best
    return found


#: The worklist's columns in an export, in order.
EXPORT_COLUMNS = ("task_id", "customer_id", "strategic", "owner", "team", "title", "priority",
                  "status", "overdue", "due_at", "created_at", "source", "body")


def export(found: list[dict[str, Any]], zone: ZoneInfo) -> bytes:
    """Listed tasks as a spreadsheet-safe CSV (times in the workspace's zone)."""
    def cell(task: dict[str, Any], name: str) -> object:
        value = task.get(name)
        if isinstance(value, datetime):
            return f"{as_utc(value).astimezone(zone):%Y-%m-%d %H:%M}"
        return "" if value is None else value

    return safe_csv_bytes(EXPORT_COLUMNS, ([cell(t, c) for c in EXPORT_COLUMNS]
                                           for t in found))


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
