"""Playbooks at work: which playbook applies to a customer, and moving runs along their
steps.

A run starts when a customer enters the playbook's segment or tier (``actions.outbox``)
and stops when they leave. ``advance`` turns each due step into an outbox row in the same
transaction that moves the run on, so a step is neither skipped nor sent twice.

A playbook is a journey: steps wait (``after``), branch (a step's ``only_if`` rule is
checked when it falls due: false skips it), and end when the customer reaches the goal
(``exit_when``: the run is ``converted``). The rules are evaluated for the due customers
before the write lock is taken; a run that fell due since waits for the next round.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tierwise.actions import catalog as automations
from tierwise.actions.outbox import enqueue
from tierwise.definitions.automations import Playbook
from tierwise.models import compute
from tierwise.segments.evaluate import holding
from tierwise.store import memberships
from tierwise.store import outbox as outbox_store
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace


def _verdicts(ws: Workspace, due: list[Any], books: dict[str, Playbook], now: datetime
              ) -> dict[tuple[int, int], str]:
    """For each due run whose playbook asks something of the customer: ``exit`` (the goal
    is reached), ``skip`` (the step's condition does not hold) or ``go``."""
    asked: dict[str, set[str]] = {}
    runs = []
    for run in due:
        book = books.get(run.playbook_key)
        if book is None or run.next_step >= len(book.steps):
            continue
        rules = [r for r in (book.exit_when, book.steps[run.next_step].only_if) if r]
        for rule in rules:
            asked.setdefault(rule, set()).add(run.customer_id)
        if rules:
            runs.append((run, book))
    if not runs:
        return {}
    customers = set().union(*asked.values())
    holds = holding(ws, asked, customers, now)
    verdicts = {}
    for run, book in runs:
        condition = book.steps[run.next_step].only_if
        verdicts[(run.run_id, run.next_step)] = (
            "exit" if book.exit_when and run.customer_id in holds[book.exit_when] else
            "skip" if condition and run.customer_id not in holds[condition] else "go")
    return verdicts


def advance(ws: Workspace, now: datetime | None = None, limit: int = 1000) -> int:
    """Carry out every step that is due; returns how many steps were queued."""
    now = now or utcnow()
    done = 0
    with ws.control.read() as conn:  # most rounds have nothing due: no write lock for them
        if not outbox_store.any_run_due(conn, now):
            return 0
        books = automations.all_of(conn, "playbook", enabled_only=True)
        verdicts = _verdicts(ws, outbox_store.due_runs(conn, now, limit), books, now)
    with ws.control.write() as conn:
        due = outbox_store.due_runs(conn, now, limit)
        books = automations.all_of(conn, "playbook", enabled_only=True)
        for run in due:
            book: Playbook | None = books.get(run.playbook_key)
            if book is None or run.next_step >= len(book.steps):
                outbox_store.update_run(conn, run.run_id, {
                    "status": "stopped" if book is None else "done", "ended_at": now,
                    "next_at": None})
                continue
            step = book.steps[run.next_step]
            verdict = verdicts.get((run.run_id, run.next_step))
            if verdict is None and (book.exit_when or step.only_if):
                continue  # fell due after the rules were evaluated: the next round
            if verdict == "exit":
                outbox_store.update_run(conn, run.run_id, {
                    "status": "converted", "ended_at": now, "next_at": None})
                continue
            if verdict != "skip":
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
            outbox_store.update_run(conn, run.run_id, values)
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
        by_segment = memberships.among(conn, segments, customer_ids) if segments else {}
    members: dict[str, set[str]] = {}
    for key, customers in by_segment.items():
        for customer in customers:
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
    """Each customer's tier in the latest snapshot (``compute.latest_values``)."""
    return {c: row["tier"] for c, row in compute.latest_values(ws, customer_ids,
                                                                ["tier"]).items()}


def runs(ws: Workspace, customer_id: str | None = None, playbook: str | None = None,
         status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    with ws.control.read() as conn:
        return outbox_store.runs(conn, customer_id=customer_id, playbook=playbook,
                                 status=status, limit=limit)


__all__ = ["advance", "applying", "latest_tiers", "runs"]
