"""The transactional outbox (``outbox``) and what decides its rows: when each trigger last
fired for each customer (``trigger_fires``) and the playbook runs (``playbook_runs``).
``actions`` decides what to send; this module keeps it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tierwise.store.control import chunked
from tierwise.store.tables import outbox, playbook_runs, trigger_fires


def add(conn: sa.Connection, rows: list[dict[str, Any]]) -> int:
    """Write outbox rows; a row whose idempotency key exists already is skipped (replaying a
    change is safe). Returns how many were written."""
    written = 0
    for part in chunked(rows):
        known = {r[0] for r in conn.execute(sa.select(outbox.c.idempotency_key).where(
            outbox.c.idempotency_key.in_([r["idempotency_key"] for r in part])))}
        fresh = [r for r in part if r["idempotency_key"] not in known]
        if fresh:
            conn.execute(outbox.insert(), fresh)
        written += len(fresh)
    return written


def due(conn: sa.Connection, now: datetime, limit: int) -> list[Any]:
    """Pending rows due at ``now``, the longest waiting first."""
    return list(conn.execute(sa.select(outbox).where(
        outbox.c.status == "pending", outbox.c.next_attempt_at <= now)
        .order_by(outbox.c.next_attempt_at, outbox.c.outbox_id).limit(limit)).all())


def settle(conn: sa.Connection, outbox_id: int, values: dict[str, Any]) -> None:
    """Record an attempt's outcome on a row still pending."""
    conn.execute(outbox.update().where(outbox.c.outbox_id == outbox_id,
                                       outbox.c.status == "pending").values(values))


def requeue(conn: sa.Connection, now: datetime, ids: Iterable[int] | None = None,
            status: str = "dead") -> int:
    """Queue rows again with their keys: ``ids`` (any status but held_out), else every row
    in ``status``. Returns how many."""
    query = outbox.update().values(status="pending", attempts=0, next_attempt_at=now,
                                   last_error=None, last_reply=None, delivered_at=None)
    if ids is not None:
        query = query.where(outbox.c.outbox_id.in_(list(ids)), outbox.c.status != "held_out")
    else:
        query = query.where(outbox.c.status == status)
    return int(conn.execute(query).rowcount)


def rows(conn: sa.Connection, *, status: str | None = None, source: str | None = None,
         customer_id: str | None = None, action: str | None = None, event: str | None = None,
         since: datetime | None = None, until: datetime | None = None, after: int = 0,
         before: int | None = None, limit: int = 100,
         newest: bool = False) -> list[dict[str, Any]]:
    """Rows with ``after`` < id < ``before`` that pass the filters (``since`` ≤ created
    < ``until``), oldest first; ``newest``: the last ``limit`` of them. Keyset paging on
    the primary key: a page costs the same deep in the log as at its end."""
    query = sa.select(outbox).where(outbox.c.outbox_id > after)
    if before is not None:
        query = query.where(outbox.c.outbox_id < before)
    for column, value in ((outbox.c.status, status), (outbox.c.source, source),
                          (outbox.c.customer_id, customer_id), (outbox.c.action, action),
                          (outbox.c.event, event)):
        if value:
            query = query.where(column == value)
    if since is not None:
        query = query.where(outbox.c.created_at >= since)
    if until is not None:
        query = query.where(outbox.c.created_at < until)
    order = outbox.c.outbox_id.desc() if newest else outbox.c.outbox_id
    found = [dict(r._mapping) for r in conn.execute(query.order_by(order).limit(limit))]
    return found[::-1] if newest else found


def counts(conn: sa.Connection) -> dict[str, int]:
    """Rows per status."""
    return {str(s): int(n) for s, n in conn.execute(
        sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status))}


def of_source(conn: sa.Connection, source: str) -> list[tuple[str, str, datetime]]:
    """(customer, status, created_at) of every row a source queued, oldest first."""
    return [(r.customer_id, r.status, r.created_at) for r in conn.execute(
        sa.select(outbox.c.customer_id, outbox.c.status, outbox.c.created_at)
        .where(outbox.c.source == source).order_by(outbox.c.created_at))]


def contacted(conn: sa.Connection, customer_id: str, since: datetime,
              actions: Iterable[str]) -> set[int]:
    """The rows of ``actions`` delivered to a customer since ``since`` (their ids)."""
    return {r[0] for r in conn.execute(sa.select(outbox.c.outbox_id).where(
        outbox.c.customer_id == customer_id, outbox.c.status == "delivered",
        outbox.c.action.in_(list(actions)), outbox.c.delivered_at >= since))}


def cost_of_source(conn: sa.Connection, source: str) -> tuple[int, float]:
    """(messages delivered, their cost) of every row a source queued."""
    row = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(outbox.c.cost),
                                                                   0.0))
                       .where(outbox.c.source == source,
                              outbox.c.status == "delivered")).one()
    return int(row[0]), float(row[1])


def delivered_state(conn: sa.Connection) -> tuple[int, object]:
    """How many messages were delivered and the latest delivery: changes with each one."""
    count, latest = conn.execute(sa.select(sa.func.count(), sa.func.max(
        outbox.c.delivered_at)).where(outbox.c.status == "delivered")).one()
    return int(count), latest


def costs_by_customer(conn: sa.Connection, start: datetime, end: datetime
                      ) -> list[tuple[str, str, int, float]]:
    """(customer, purpose, messages delivered, their cost) for the messages delivered in
    ``[start, end)`` that cost something; the purpose is the action's (``service`` or
    ``marketing``, the default)."""
    found: dict[tuple[str, str], tuple[int, float]] = {}
    for customer, cost, payload in conn.execute(
            sa.select(outbox.c.customer_id, outbox.c.cost, outbox.c.payload)
            .where(outbox.c.status == "delivered", outbox.c.delivered_at >= start,
                   outbox.c.delivered_at < end, outbox.c.cost > 0)):
        try:
            action = json.loads(payload).get("action") or {}
        except (ValueError, AttributeError):
            action = {}
        purpose = "service" if action.get("purpose") == "service" else "marketing"
        count, total = found.get((customer, purpose), (0, 0.0))
        found[customer, purpose] = (count + 1, total + float(cost))
    return [(c, p, n, x) for (c, p), (n, x) in sorted(found.items())]


# -- trigger fires -------------------------------------------------------------------------

def last_fired(conn: sa.Connection, trigger_key: str, customers: list[str]
               ) -> dict[str, datetime]:
    """When the trigger last fired for each of ``customers`` that it fired for."""
    found: dict[str, datetime] = {}
    for part in chunked(customers):
        found.update({r.customer_id: r.last_at for r in conn.execute(
            sa.select(trigger_fires.c.customer_id, trigger_fires.c.last_at).where(
                trigger_fires.c.trigger_key == trigger_key,
                trigger_fires.c.customer_id.in_(part)))})
    return found


def record_fires(conn: sa.Connection, trigger_key: str, customers: list[str],
                 fired_before: Iterable[str], at: datetime) -> None:
    before = set(fired_before)
    for customer in customers:
        if customer in before:
            conn.execute(trigger_fires.update().where(
                trigger_fires.c.trigger_key == trigger_key,
                trigger_fires.c.customer_id == customer).values(
                last_at=at, count=trigger_fires.c.count + 1))
        else:
            conn.execute(trigger_fires.insert().values(
                trigger_key=trigger_key, customer_id=customer, first_at=at, last_at=at,
                count=1))


# -- playbook runs -------------------------------------------------------------------------

def start_runs(conn: sa.Connection, playbook_key: str, customers: list[str], at: datetime,
               first_step_at: datetime) -> None:
    conn.execute(playbook_runs.insert(), [
        {"playbook_key": playbook_key, "customer_id": c, "started_at": at, "next_step": 0,
         "next_at": first_step_at, "status": "active"} for c in customers])


def stop_runs(conn: sa.Connection, playbook_key: str, customers: list[str],
              at: datetime) -> int:
    stopped = 0
    for part in chunked(customers):
        stopped += conn.execute(playbook_runs.update().where(
            playbook_runs.c.playbook_key == playbook_key, playbook_runs.c.status == "active",
            playbook_runs.c.customer_id.in_(part)).values(
            status="stopped", ended_at=at, next_at=None)).rowcount
    return stopped


def due_runs(conn: sa.Connection, now: datetime, limit: int) -> list[Any]:
    """Active runs whose next step is due, the earliest first."""
    return list(conn.execute(sa.select(playbook_runs).where(
        playbook_runs.c.status == "active", playbook_runs.c.next_at <= now)
        .order_by(playbook_runs.c.next_at).limit(limit)).all())


def any_run_due(conn: sa.Connection, now: datetime) -> bool:
    return conn.execute(sa.select(playbook_runs.c.run_id).where(
        playbook_runs.c.status == "active", playbook_runs.c.next_at <= now)
        .limit(1)).first() is not None


def update_run(conn: sa.Connection, run_id: int, values: dict[str, Any]) -> None:
    conn.execute(playbook_runs.update().where(playbook_runs.c.run_id == run_id)
                 .values(values))


def runs(conn: sa.Connection, *, customer_id: str | None = None, playbook: str | None = None,
         status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Playbook runs, newest first."""
    query = sa.select(playbook_runs)
    if customer_id:
        query = query.where(playbook_runs.c.customer_id == customer_id)
    if playbook:
        query = query.where(playbook_runs.c.playbook_key == playbook)
    if status:
        query = query.where(playbook_runs.c.status == status)
    return [dict(r._mapping) for r in conn.execute(
        query.order_by(playbook_runs.c.run_id.desc()).limit(limit))]


def first_runs(conn: sa.Connection, playbook_key: str) -> dict[str, str]:
    """Each customer's first run of a playbook: its status (``converted`` when the
    customer reached the playbook's goal)."""
    found: dict[str, str] = {}
    for r in conn.execute(sa.select(playbook_runs.c.customer_id, playbook_runs.c.status)
                          .where(playbook_runs.c.playbook_key == playbook_key)
                          .order_by(playbook_runs.c.run_id)):
        found.setdefault(r.customer_id, r.status)
    return found


#: Statuses of deliveries that are over: nothing will send them again by itself.
FINISHED = ("delivered", "dead", "suppressed", "held_out")


def prune(conn: sa.Connection, before: datetime) -> int:
    """Delete finished deliveries queued before ``before``; pending and held ones stay."""
    return int(conn.execute(outbox.delete().where(
        outbox.c.status.in_(FINISHED), outbox.c.created_at < before)).rowcount)
