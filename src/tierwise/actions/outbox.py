"""Turning changes into outbox rows, inside the transaction that records the change.

``on_membership`` is called by ``segments.membership.apply_diff`` and ``on_value_change``
by the snapshot writer (tier and lifecycle changes), each with the open write connection:
the membership or snapshot row and its outbox rows commit together or not at all, so a
crash can neither lose an action nor record a change twice. The dispatcher
(``actions.dispatch``) delivers the rows.

Semantics, per trigger: ``fire`` ``every_entry`` (default) or ``once`` per customer;
``cooldown`` skips a customer the trigger fired for within that time; ``fire_on`` lists
the reasons that fire (rule edits and backfills do not, by default); ``holdout`` keeps a
stable random share of customers as a control group: their rows are recorded with status
``held_out`` and never delivered, which is what ``insights.effectiveness`` compares.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from tierwise.actions import catalog as automations
from tierwise.definitions.automations import Playbook, Trigger
from tierwise.store import outbox as outbox_store
from tierwise.store.control import Connection

#: Names of events in payloads.
EVENT_NAMES = {"enter": "segment.entered", "exit": "segment.exited",
               "tier_change": "tier.changed", "lifecycle_change": "lifecycle.changed",
               "lead_qualified": "lead.qualified", "sla_breach": "ticket.sla_breached",
               "playbook_step": "playbook.step", "stage_change": "opportunity.stage_changed"}


def idempotency_key(*parts: object) -> str:
    """A stable key for one action about one change (sent with every delivery attempt)."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:40]


def in_holdout(source: str, customer_id: str, share: float) -> bool:
    """A stable pseudo-random draw: the same customer is always in or out for a source."""
    if share <= 0:
        return False
    digest = hashlib.sha256(f"holdout|{source}|{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def enqueue(conn: Connection, source: str, event: str, action: Any,
            events: list[dict[str, Any]], at: datetime, holdout: float = 0.0,
            extra: dict[str, Any] | None = None) -> int:
    """Write one outbox row per event (each names its ``customer_id``); returns how many.

    A row whose idempotency key exists already is skipped, so replaying a change is safe.
    """
    rows = []
    for item in events:
        customer = str(item["customer_id"])
        key = idempotency_key(source, event, at.isoformat(),
                              json.dumps(item, sort_keys=True, default=str))
        body = {"id": key, "event": EVENT_NAMES[event], "source": source,
                "at": at.isoformat(), **item}
        rows.append({"idempotency_key": key, "source": source, "event": event,
                     "customer_id": customer, "action": action.type,
                     "payload": json.dumps({"event": body, "action": action.model_dump(
                         mode="json"), **(extra or {})}, ensure_ascii=False),
                     "status": "held_out" if in_holdout(source, customer, holdout)
                     else "pending", "next_attempt_at": at, "created_at": at})
    return outbox_store.add(conn, rows)


def _eligible(conn: Connection, trigger: Trigger, customers: list[str],
              at: datetime) -> list[str]:
    """The customers the trigger may fire for now (fire-once and cooldown), recorded as
    fired."""
    if trigger.fire == "every_entry" and trigger.cooldown is None:
        return customers
    fired = outbox_store.last_fired(conn, trigger.key, customers)
    gap = automations.duration(trigger.cooldown) if trigger.cooldown else None
    chosen = [c for c in customers if c not in fired or (
        trigger.fire != "once" and (gap is None or at - fired[c] >= gap))]
    outbox_store.record_fires(conn, trigger.key, chosen, fired, at)
    return chosen


def fire(conn: Connection, trigger: Trigger, events: list[dict[str, Any]],
         at: datetime) -> int:
    """Fire ``trigger`` for these events (one per customer) as its semantics allow."""
    chosen = set(_eligible(conn, trigger, [str(e["customer_id"]) for e in events], at))
    return enqueue(conn, f"trigger:{trigger.key}", trigger.on.event, trigger.action,
                   [e for e in events if str(e["customer_id"]) in chosen], at,
                   trigger.holdout, {"max_attempts": trigger.max_attempts,
                                     "retry_seconds": trigger.retry_seconds})


def membership_hooks(conn: Connection) -> tuple[dict[str, Any], dict[str, Any]]:
    """The enabled triggers and playbooks, read once for many ``on_membership`` calls in
    one transaction (the real-time worker writes the changes of many segments at once)."""
    return (automations.all_of(conn, "trigger", enabled_only=True),
            automations.all_of(conn, "playbook", enabled_only=True))


def on_membership(conn: Connection, segment_key: str, entered: Iterable[str],
                  exited: Iterable[str], reason: str, at: datetime,
                  hooks: tuple[dict[str, Any], dict[str, Any]] | None = None) -> int:
    """Triggers and playbooks for customers who entered or left ``segment_key``
    (``hooks``: ``membership_hooks`` read earlier in the same transaction)."""
    entered, exited = sorted(entered), sorted(exited)
    if not entered and not exited:
        return 0
    triggers, books = hooks if hooks is not None else membership_hooks(conn)
    written = 0
    for trigger in triggers.values():
        if trigger.on.segment != segment_key or reason not in trigger.fire_on:
            continue
        ids = entered if trigger.on.event == "enter" else exited
        if ids:
            written += fire(conn, trigger, [{"customer_id": c, "segment": segment_key,
                                             "reason": reason} for c in ids], at)
    for playbook in books.values():
        if playbook.applies_to.segment == segment_key:
            stop_runs(conn, playbook, exited, at)
            if reason in automations.DEFAULT_FIRE_ON:
                start_runs(conn, playbook, entered, at)
    return written


def on_value_change(conn: Connection, event: str,
                    changes: list[tuple[str, str | None, str | None]], reason: str,
                    at: datetime) -> int:
    """Triggers and tier playbooks for ``tier_change`` / ``lifecycle_change``: each change
    is (customer, before, after); ``before`` is None for a customer new to the snapshot."""
    written = 0
    for trigger in automations.all_of(conn, "trigger", enabled_only=True).values():
        if trigger.on.event != event or reason not in trigger.fire_on:
            continue
        chosen = [{"customer_id": c, "from": old, "to": new, "reason": reason}
                  for c, old, new in changes
                  if (trigger.on.from_ is None or old in trigger.on.from_)
                  and (trigger.on.to is None or new in trigger.on.to)]
        if chosen:
            written += fire(conn, trigger, chosen, at)
    if event == "tier_change":
        for playbook in automations.all_of(conn, "playbook", enabled_only=True).values():
            tier = playbook.applies_to.tier
            if tier is None:
                continue
            stop_runs(conn, playbook, [c for c, old, new in changes if old == tier], at)
            if reason in automations.DEFAULT_FIRE_ON:
                start_runs(conn, playbook, [c for c, old, new in changes if new == tier], at)
    return written


def on_stage_change(conn: Connection, items: list[dict[str, Any]], reason: str,
                    at: datetime) -> int:
    """Triggers for ``stage_change``: one item per opportunity that moved (or was created,
    ``from`` None), filtered by the trigger's ``from`` / ``to`` stages."""
    written = 0
    for trigger in automations.all_of(conn, "trigger", enabled_only=True).values():
        if trigger.on.event != "stage_change" or reason not in trigger.fire_on:
            continue
        chosen = [{**item, "reason": reason} for item in items
                  if (trigger.on.from_ is None or item["from"] in trigger.on.from_)
                  and (trigger.on.to is None or item["to"] in trigger.on.to)]
        if chosen:
            written += fire(conn, trigger, chosen, at)
    return written


def on_event(conn: Connection, event: str, items: list[dict[str, Any]],
             at: datetime) -> int:
    """Triggers for ``lead_qualified`` and ``sla_breach`` (one item per customer)."""
    return sum(fire(conn, trigger, items, at)
               for trigger in automations.all_of(conn, "trigger", enabled_only=True).values()
               if trigger.on.event == event)


# -- playbook runs -------------------------------------------------------------------------

def start_runs(conn: Connection, playbook: Playbook, customers: Iterable[str],
               at: datetime) -> int:
    customers = sorted(customers)
    if not customers or not playbook.steps:
        return 0
    outbox_store.start_runs(conn, playbook.key, customers, at,
                            at + automations.duration(playbook.steps[0].after))
    return len(customers)


def stop_runs(conn: Connection, playbook: Playbook, customers: Iterable[str],
              at: datetime) -> int:
    return outbox_store.stop_runs(conn, playbook.key, sorted(customers), at)


__all__ = ["enqueue", "fire", "idempotency_key", "in_holdout", "membership_hooks", "on_event",
           "on_membership",
           "on_stage_change", "on_value_change", "start_runs", "stop_runs"]
