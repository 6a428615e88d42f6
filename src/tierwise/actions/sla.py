"""Service SLA escalation.

A ticket that arrives (through intake) from a customer whose playbook sets
``sla_response_hours`` is escalated: it gets the playbook's ``ticket_priority`` (``high``
unless set) and a deadline ``opened_at + sla_response_hours``. When a later version of the
ticket closes it, the clock stops. ``check`` finds open tickets past their deadline,
marks them breached and raises the alert: ``sla_breach`` triggers fire and an urgent task
goes to the customer's owner — both in the transaction that marks the breach.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from tierwise.actions import playbooks
from tierwise.actions.outbox import enqueue, on_event
from tierwise.definitions.automations import Task
from tierwise.store.control import as_utc, utcnow
from tierwise.store.tables import ticket_sla
from tierwise.workspace import Workspace

ALERT = Task(type="task", title="SLA breached: answer the ticket now",
             priority="urgent", role="operator")


def _instant(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    parsed = datetime.fromisoformat(str(value).replace(" ", "T"))
    return as_utc(parsed) if parsed.tzinfo is None else parsed


def on_tickets(ws: Workspace, tickets: list[dict[str, Any]]) -> int:
    """Escalate newly received tickets under an SLA; record closings. Returns how many
    tickets were escalated. ``opened_at`` / ``closed_at`` as stored by the import (UTC)."""
    if not tickets:
        return 0
    ids = sorted({str(t["ticket_id"]) for t in tickets})
    with ws.control.read() as conn:
        known: dict[str, Any] = {r.ticket_id: r for r in conn.execute(
            sa.select(ticket_sla).where(ticket_sla.c.ticket_id.in_(ids)))}
    fresh = [t for t in tickets if str(t["ticket_id"]) not in known]
    books = playbooks.applying(ws, sorted({str(t["customer_id"]) for t in fresh}))
    escalated = 0
    with ws.control.write() as conn:
        for ticket in tickets:
            ticket_id = str(ticket["ticket_id"])
            closed = _instant(ticket.get("closed_at"))
            if ticket_id in known:
                if closed is not None and known[ticket_id].closed_at is None:
                    conn.execute(ticket_sla.update().where(
                        ticket_sla.c.ticket_id == ticket_id).values(closed_at=closed))
                continue
            book = books.get(str(ticket["customer_id"]))
            opened = _instant(ticket.get("opened_at"))
            if book is None or book.sla_response_hours is None or opened is None:
                continue
            conn.execute(ticket_sla.insert().values(
                ticket_id=ticket_id, customer_id=str(ticket["customer_id"]),
                playbook_key=book.key, priority=book.ticket_priority or "high",
                opened_at=opened, due_at=opened + timedelta(hours=book.sla_response_hours),
                closed_at=closed))
            known[ticket_id] = None  # a repeat within this batch is not escalated twice
            escalated += 1
    return escalated


def check(ws: Workspace, now: datetime | None = None) -> int:
    """Raise the alert for open escalated tickets past their deadline; returns how many."""
    now = now or utcnow()
    late_query = sa.select(ticket_sla).where(
        ticket_sla.c.closed_at.is_(None), ticket_sla.c.breached_at.is_(None),
        ticket_sla.c.due_at < now)
    with ws.control.read() as conn:
        if conn.execute(late_query.limit(1)).first() is None:
            return 0
    with ws.control.write() as conn:
        late = conn.execute(late_query).all()
        if not late:
            return 0
        conn.execute(ticket_sla.update().where(
            ticket_sla.c.ticket_id.in_([r.ticket_id for r in late])).values(breached_at=now))
        items = [{"customer_id": r.customer_id, "ticket_id": r.ticket_id,
                  "playbook": r.playbook_key, "priority": r.priority,
                  "due_at": r.due_at.isoformat()}
                 for r in late]
        on_event(conn, "sla_breach", items, now)
        for item in items:
            enqueue(conn, f"sla:{item['playbook']}", "sla_breach", ALERT.model_copy(
                update={"body": f"ticket {item['ticket_id']} was due {item['due_at']}"}),
                [item], now)
    return len(late)


def escalated(ws: Workspace, open_only: bool = True, limit: int = 200
              ) -> list[dict[str, Any]]:
    query = sa.select(ticket_sla)
    if open_only:
        query = query.where(ticket_sla.c.closed_at.is_(None))
    with ws.control.read() as conn:
        rows = conn.execute(query.order_by(ticket_sla.c.due_at).limit(limit)).all()
    return [dict(r._mapping) for r in rows]


__all__ = ["check", "escalated", "on_tickets"]
