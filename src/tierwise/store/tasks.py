"""Work for people (``tasks``) and tickets under a service level (``ticket_sla``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tierwise.store.tables import customers, tasks, ticket_sla


def _task(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    data.pop("idempotency_key", None)
    return data


#: Statuses of work not finished yet.
ACTIVE = ("open", "in_progress")
STATUSES = (*ACTIVE, "done", "cancelled")


def listing(conn: sa.Connection, *, owner: str | None = None, role: str | None = None,
            status: str | tuple[str, ...] | None = "open", customer_id: str | None = None,
            due_before: datetime | None = None, limit: int = 200, offset: int = 0
            ) -> list[dict[str, Any]]:
    """Tasks, soonest due first (those without a due time last); ``status`` one or several;
    ``role``: the team a task is for; ``due_before``: only tasks due before then (overdue
    ones, given the time now); ``offset``: skip that many (a later page)."""
    query = sa.select(tasks)
    if owner is not None:
        query = query.where(tasks.c.owner == owner)
    if role is not None:
        query = query.where(tasks.c.role == role)
    if isinstance(status, tuple):
        query = query.where(tasks.c.status.in_(status))
    elif status is not None:
        query = query.where(tasks.c.status == status)
    if due_before is not None:
        query = query.where(tasks.c.due_at < due_before)
    if customer_id is not None:
        query = query.where(tasks.c.customer_id == customer_id)
    query = query.order_by(tasks.c.due_at.is_(None), tasks.c.due_at, tasks.c.task_id)
    return [_task(r) for r in conn.execute(query.limit(limit).offset(offset))]


def get(conn: sa.Connection, task_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(tasks).where(tasks.c.task_id == task_id)).first()
    return None if row is None else _task(row)


def complete(conn: sa.Connection, task_id: int, by: str, at: datetime) -> None:
    conn.execute(tasks.update().where(tasks.c.task_id == task_id).values(
        status="done", completed_at=at, completed_by=by))


def change(conn: sa.Connection, task_id: int, **values: Any) -> None:
    """Set ``values`` (status, owner, due_at) of one task."""
    conn.execute(tasks.update().where(tasks.c.task_id == task_id).values(**values))


def create_once(conn: sa.Connection, idempotency_key: str, **values: Any) -> bool:
    """A task for the customer's owner, unless one with this key exists; whether it was
    created. ``values``: customer_id, role, title, body, source, priority, due_at, at."""
    if conn.execute(sa.select(tasks.c.task_id).where(
            tasks.c.idempotency_key == idempotency_key)).first():
        return False
    owner = conn.execute(sa.select(customers.c.owner).where(
        customers.c.customer_id == values["customer_id"])).scalar()
    at = values.pop("at")
    conn.execute(tasks.insert().values(idempotency_key=idempotency_key, owner=owner,
                                       status="open", created_at=at, **values))
    return True


# -- tickets under a service level ---------------------------------------------------------

def escalations(conn: sa.Connection, ticket_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The escalations recorded for these tickets, by ticket id."""
    return {r.ticket_id: dict(r._mapping) for r in conn.execute(
        sa.select(ticket_sla).where(ticket_sla.c.ticket_id.in_(ticket_ids)))}


def close_escalation(conn: sa.Connection, ticket_id: str, at: datetime) -> None:
    conn.execute(ticket_sla.update().where(ticket_sla.c.ticket_id == ticket_id)
                 .values(closed_at=at))


def escalate(conn: sa.Connection, **values: Any) -> None:
    """Record a ticket under an SLA (ticket_id, customer_id, playbook_key, priority,
    opened_at, due_at, closed_at)."""
    conn.execute(ticket_sla.insert().values(**values))


def _late(now: datetime) -> Any:
    return sa.select(ticket_sla).where(ticket_sla.c.closed_at.is_(None),
                                       ticket_sla.c.breached_at.is_(None),
                                       ticket_sla.c.due_at < now)


def any_late(conn: sa.Connection, now: datetime) -> bool:
    return conn.execute(_late(now).limit(1)).first() is not None


def breach_late(conn: sa.Connection, now: datetime) -> list[dict[str, Any]]:
    """Mark open escalations past their deadline breached; returns them."""
    late = [dict(r._mapping) for r in conn.execute(_late(now))]
    if late:
        conn.execute(ticket_sla.update().where(
            ticket_sla.c.ticket_id.in_([r["ticket_id"] for r in late])).values(
            breached_at=now))
    return late


def escalated(conn: sa.Connection, open_only: bool = True, limit: int = 200
              ) -> list[dict[str, Any]]:
    query = sa.select(ticket_sla)
    if open_only:
        query = query.where(ticket_sla.c.closed_at.is_(None))
    return [dict(r._mapping) for r in conn.execute(
        query.order_by(ticket_sla.c.due_at).limit(limit))]
