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

from tierwise.actions import playbooks
from tierwise.actions.outbox import enqueue, on_event
from tierwise.definitions.automations import Task
from tierwise.store import tasks as task_store
from tierwise.store.control import as_utc, utcnow
from tierwise.workspace import Workspace

#: The urgent task a breach raises, in the workspace's language (title, body).
ALERT = {"zh-CN": ("SLA 已超时：请立即回复工单", "工单 {ticket} 应在 {due} 前回复"),
         "en": ("SLA breached: answer the ticket now", "ticket {ticket} was due {due}")}


def alert(lang: str, ticket: str, due: datetime) -> Task:
    """The task for one breached ticket; ``due`` is shown in the workspace's zone."""
    title, body = ALERT.get(lang, ALERT["en"])
    return Task(type="task", title=title, priority="urgent", role="operator",
                body=body.format(ticket=ticket, due=f"{due:%Y-%m-%d %H:%M %Z}"))


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
        known: dict[str, Any] = task_store.escalations(conn, ids)
    fresh = [t for t in tickets if str(t["ticket_id"]) not in known]
    books = playbooks.applying(ws, sorted({str(t["customer_id"]) for t in fresh}))
    escalated = 0
    with ws.control.write() as conn:
        for ticket in tickets:
            ticket_id = str(ticket["ticket_id"])
            closed = _instant(ticket.get("closed_at"))
            if ticket_id in known:
                if closed is not None and known[ticket_id]["closed_at"] is None:
                    task_store.close_escalation(conn, ticket_id, closed)
                    known[ticket_id]["closed_at"] = closed
                continue
            book = books.get(str(ticket["customer_id"]))
            opened = _instant(ticket.get("opened_at"))
            if book is None or book.sla_response_hours is None or opened is None:
                continue
            task_store.escalate(
                conn, ticket_id=ticket_id, customer_id=str(ticket["customer_id"]),
                playbook_key=book.key, priority=book.ticket_priority or "high",
                opened_at=opened, due_at=opened + timedelta(hours=book.sla_response_hours),
                closed_at=closed)
            # a repeat within this batch is not escalated twice; a later version closes it
            known[ticket_id] = {"closed_at": closed}
            escalated += 1
    return escalated


def check(ws: Workspace, now: datetime | None = None) -> int:
    """Raise the alert for open escalated tickets past their deadline; returns how many."""
    now = now or utcnow()
    with ws.control.read() as conn:
        if not task_store.any_late(conn, now):
            return 0
    with ws.control.write() as conn:
        late = task_store.breach_late(conn, now)
        if not late:
            return 0
        items = [{"customer_id": r["customer_id"], "ticket_id": r["ticket_id"],
                  "playbook": r["playbook_key"], "priority": r["priority"],
                  "due_at": r["due_at"].isoformat()}
                 for r in late]
        on_event(conn, "sla_breach", items, now)
        for row, item in zip(late, items, strict=True):
            due = as_utc(row["due_at"]).astimezone(ws.config.zone)
            enqueue(conn, f"sla:{item['playbook']}", "sla_breach",
                    alert(ws.config.locale, item["ticket_id"], due), [item], now)
    return len(late)


def escalated(ws: Workspace, open_only: bool = True, limit: int = 200
              ) -> list[dict[str, Any]]:
    with ws.control.read() as conn:
        return task_store.escalated(conn, open_only, limit)


__all__ = ["check", "escalated", "on_tickets"]
