"""Playbooks at work: which playbook applies to a customer, and moving runs along their
steps.

A run starts when a customer enters the playbook's segment or tier (``actions.outbox``)
and stops when they leave. ``advance`` turns each due step into an outbox row in the same
transaction that moves the run on, so a step is neither skipped nor sent twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tierwise.actions import definitions as automations
from tierwise.actions.outbox import enqueue
from tierwise.definitions.automations import Playbook
from tierwise.store.control import chunked, utcnow
from tierwise.store.tables import playbook_runs, segment_members
from tierwise.workspace import Workspace


def advance(ws: Workspace, now: datetime | None = None, limit: int = 1000) -> int:
    """Carry out every step that is due; returns how many steps were queued."""
    now = now or utcnow()
    done = 0
    due_query = (sa.select(playbook_runs).where(playbook_runs.c.status == "active",
                                                playbook_runs.c.next_at <= now)
                 .order_by(playbook_runs.c.next_at).limit(limit))
    with ws.control.read() as conn:  # most rounds have nothing due: no write lock for them
        if conn.execute(due_query.limit(1)).first() is None:
            return 0
    with ws.control.write() as conn:
        due = conn.execute(due_query).all()
        books = automations.all_of(conn, "playbook", enabled_only=True)
        for run in due:
            book: Playbook | None = books.get(run.playbook_key)
            if book is None or run.next_step >= len(book.steps):
                conn.execute(playbook_runs.update().where(
                    playbook_runs.c.run_id == run.run_id).values(
                    status="stopped" if book is None else "done", ended_at=now,
                    next_at=None))
                continue
            step = book.steps[run.next_step]
            done += enqueue(conn, f"playbook:{book.key}", "playbook_step", step.action,
                            [{"customer_id": run.customer_id, "playbook": book.key,
                              "step": f"{run.run_id}:{run.next_step}"}], run.next_at,
                            book.holdout)
            following = run.next_step + 1
            if following < len(book.steps):
                values: dict[str, Any] = {"next_step": following, "next_at": run.started_at
                                          + automations.duration(book.steps[following].after)}
            else:
                values = {"next_step": following, "next_at": None, "status": "done",
                          "ended_at": now}
            conn.execute(playbook_runs.update().where(
                playbook_runs.c.run_id == run.run_id).values(values))
    return done


def applying(ws: Workspace, customer_ids: list[str],
             tiers: dict[str, str | None] | None = None) -> dict[str, Playbook]:
    """The playbook that applies to each customer (lowest ``priority`` first, then key):
    through a segment they are a member of, or their tier (``tiers``, from the latest
    snapshot, read here when not given)."""
    if not customer_ids:
        return {}
    with ws.control.read() as conn:
        books = sorted(automations.all_of(conn, "playbook", enabled_only=True).values(),
                       key=lambda b: (b.priority, b.key))
        segments = {b.applies_to.segment for b in books if b.applies_to.segment}
        members: dict[str, set[str]] = {}
        if segments:
            for part in chunked(customer_ids):
                for key, customer in conn.execute(sa.select(
                        segment_members.c.segment_key, segment_members.c.customer_id).where(
                        segment_members.c.segment_key.in_(sorted(segments)),
                        segment_members.c.customer_id.in_(part))):
                    members.setdefault(customer, set()).add(key)
    if tiers is None and any(b.applies_to.tier for b in books):
        tiers = latest_tiers(ws, customer_ids)
    found: dict[str, Playbook] = {}
    for customer in customer_ids:
        for book in books:
            if (book.applies_to.segment in members.get(customer, ())
                    or (book.applies_to.tier is not None and tiers is not None
                        and tiers.get(customer) == book.applies_to.tier)):
                found[customer] = book
                break
    return found


def latest_tiers(ws: Workspace, customer_ids: list[str]) -> dict[str, str | None]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from tierwise.store import snapshots

    with ws.control.read() as conn:
        row = snapshots.latest(conn)
    if row is None:
        return {}
    table = pq.read_table(ws.root / row["path"], columns=["customer_id", "tier"])
    table = table.filter(pc.is_in(table["customer_id"],
                                  value_set=pa.array(customer_ids, pa.string())))
    return dict(zip(table["customer_id"].to_pylist(), table["tier"].to_pylist(),
                    strict=True))


def runs(ws: Workspace, customer_id: str | None = None, playbook: str | None = None,
         status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    query = sa.select(playbook_runs)
    if customer_id:
        query = query.where(playbook_runs.c.customer_id == customer_id)
    if playbook:
        query = query.where(playbook_runs.c.playbook_key == playbook)
    if status:
        query = query.where(playbook_runs.c.status == status)
    with ws.control.read() as conn:
        rows = conn.execute(query.order_by(playbook_runs.c.run_id.desc()).limit(limit)).all()
    return [dict(r._mapping) for r in rows]


__all__ = ["advance", "applying", "latest_tiers", "runs"]
