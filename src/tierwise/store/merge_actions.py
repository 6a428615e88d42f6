"""What a merge does to actions: the merged ids' pending work goes to the survivor, once.

- A pending delivery (``outbox``) moves to the survivor — unless the survivor already has
  one from the same source for the same event (pending or delivered): then it is
  suppressed, so a customer known twice is not welcomed twice.
- When each trigger fired (``trigger_fires``) is folded into the survivor's (first time,
  last time, count), so a fire-once trigger does not fire again for the survivor, and a
  cooldown counts from the latest fire of any of the records.
- Open tasks move; an active playbook run moves, or stops when the survivor runs the same
  playbook already.

``move`` returns what it changed so ``put_back`` can undo it exactly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tierwise.store.control import saved_instant
from tierwise.store.tables import outbox, playbook_runs, tasks, trigger_fires

_SENT_OR_DUE = ("pending", "delivered")


def _rows(conn: sa.Connection, query: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(query)]


def move(conn: sa.Connection, survivor_id: str, merged_ids: list[str],
         now: datetime) -> dict[str, Any]:
    """Move the merged ids' pending actions to the survivor; returns the undo record."""
    o, f, t, r = outbox.c, trigger_fires.c, tasks.c, playbook_runs.c
    done: dict[str, Any] = {"outbox": [], "fires": [], "tasks": [], "runs": []}
    had = {(row.source, row.event) for row in conn.execute(
        sa.select(o.source, o.event).where(o.customer_id == survivor_id,
                                           o.status.in_(_SENT_OR_DUE)))}
    for row in _rows(conn, sa.select(o.outbox_id, o.customer_id, o.source, o.event,
                                     o.last_error).where(o.customer_id.in_(merged_ids),
                                                         o.status == "pending")
                     .order_by(o.outbox_id)):
        done["outbox"].append(row)
        if (row["source"], row["event"]) in had:
            conn.execute(outbox.update().where(o.outbox_id == row["outbox_id"]).values(
                status="suppressed",
                last_error=f"merged into {survivor_id}, who has this action already"))
        else:
            had.add((row["source"], row["event"]))
            conn.execute(outbox.update().where(o.outbox_id == row["outbox_id"]).values(
                customer_id=survivor_id))
    fires = _rows(conn, sa.select(trigger_fires).where(
        f.customer_id.in_([survivor_id, *merged_ids])))
    done["fires"] = fires
    folded: dict[str, dict[str, Any]] = {}
    for row in fires:
        key = row["trigger_key"]
        if key not in folded:
            folded[key] = {**row, "customer_id": survivor_id}
        else:
            kept = folded[key]
            kept["first_at"] = min(kept["first_at"], row["first_at"])
            kept["last_at"] = max(kept["last_at"], row["last_at"])
            kept["count"] += row["count"]
    if fires:
        conn.execute(trigger_fires.delete().where(
            f.customer_id.in_([survivor_id, *merged_ids])))
        conn.execute(trigger_fires.insert(), list(folded.values()))
    for row in _rows(conn, sa.select(t.task_id, t.customer_id).where(
            t.customer_id.in_(merged_ids), t.status == "open")):
        done["tasks"].append(row)
        conn.execute(tasks.update().where(t.task_id == row["task_id"]).values(
            customer_id=survivor_id))
    running = {row.playbook_key for row in conn.execute(
        sa.select(r.playbook_key).where(r.customer_id == survivor_id, r.status == "active"))}
    for row in _rows(conn, sa.select(r.run_id, r.customer_id, r.playbook_key).where(
            r.customer_id.in_(merged_ids), r.status == "active").order_by(r.run_id)):
        done["runs"].append(row)
        if row["playbook_key"] in running:
            conn.execute(playbook_runs.update().where(r.run_id == row["run_id"]).values(
                status="stopped", ended_at=now))
        else:
            running.add(row["playbook_key"])
            conn.execute(playbook_runs.update().where(r.run_id == row["run_id"]).values(
                customer_id=survivor_id))
    return done


def put_back(conn: sa.Connection, survivor_id: str, done: dict[str, Any]) -> None:
    """Undo ``move``: deliveries, tasks and runs as they were (a delivery sent since
    stays sent), and the trigger fires of all the records as they were at the merge."""
    o, f, t, r = outbox.c, trigger_fires.c, tasks.c, playbook_runs.c
    for row in done.get("outbox", []):
        conn.execute(outbox.update().where(
            o.outbox_id == row["outbox_id"], o.status.in_(("pending", "suppressed"))).values(
            customer_id=row["customer_id"], status="pending", last_error=row["last_error"]))
    fires = done.get("fires", [])
    if fires:
        ids = sorted({row["customer_id"] for row in fires} | {survivor_id})
        conn.execute(trigger_fires.delete().where(f.customer_id.in_(ids)))
        conn.execute(trigger_fires.insert(), [
            {**row, "first_at": saved_instant(row["first_at"]),
             "last_at": saved_instant(row["last_at"])} for row in fires])
    for row in done.get("tasks", []):
        conn.execute(tasks.update().where(t.task_id == row["task_id"]).values(
            customer_id=row["customer_id"]))
    for row in done.get("runs", []):
        conn.execute(playbook_runs.update().where(r.run_id == row["run_id"]).values(
            customer_id=row["customer_id"], status="active", ended_at=None))
