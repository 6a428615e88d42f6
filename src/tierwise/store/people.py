"""Everything the control store holds about one person, for subject-access exports and
erasure: their records (a person is a surviving id and the ids merged into it), memberships
and history, contact preferences, cleaning log, the actions' rows, merges and review pairs,
and rows received through the API that name them."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from tierwise.store import cleaning_log, sizes
from tierwise.store.tables import cleaning_log as cleaning_log_table
from tierwise.store.tables import (
    contact_preferences,
    customer_redirects,
    customers,
    duplicate_pairs,
    intake,
    lead_scores,
    merges,
    outbox,
    playbook_runs,
    segment_history,
    segment_members,
    tasks,
    ticket_sla,
    trigger_fires,
)

#: Tables of the actions with a ``customer_id`` column, exported and erased with the rest.
ACTION_TABLES = (outbox, trigger_fires, tasks, playbook_runs, lead_scores, ticket_sla)


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in result]


def ids_of(conn: sa.Connection, customer_id: str) -> tuple[str, list[str]]:
    """The surviving id of a person and every id merged into it (a merged id resolves to
    its survivor: erasing or exporting a person covers all their records)."""
    survivor = conn.execute(sa.select(customer_redirects.c.survivor_id).where(
        customer_redirects.c.customer_id == customer_id)).scalar() or customer_id
    merged = [r[0] for r in conn.execute(sa.select(customer_redirects.c.customer_id).where(
        customer_redirects.c.survivor_id == survivor))]
    return survivor, [survivor, *sorted(merged)]


def held_about(conn: sa.Connection, survivor: str, ids: list[str]) -> dict[str, Any]:
    """The control-store rows about a person (their customer record aside)."""
    return {
        "segment_history": _rows(conn.execute(sa.select(segment_history).where(
            segment_history.c.customer_id == survivor)
            .order_by(segment_history.c.history_id))),
        "segment_memberships": _rows(conn.execute(sa.select(segment_members).where(
            segment_members.c.customer_id == survivor))),
        "contact_preferences": _rows(conn.execute(sa.select(contact_preferences).where(
            contact_preferences.c.customer_id == survivor))),
        "cleaning_log": cleaning_log.entries(conn, customer_ids=ids),
        "actions": {table.name: _rows(conn.execute(sa.select(table).where(
            table.c.customer_id.in_(ids)))) for table in ACTION_TABLES},
    }


def merge_undo_records(conn: sa.Connection, ids: list[str]) -> list[str]:
    """The sealed undo records of the merges a person survived (they hold the merged
    records' values)."""
    return [r.undo for r in conn.execute(sa.select(merges.c.undo).where(
        merges.c.survivor_id.in_(ids)))]


def erase(conn: sa.Connection, ids: list[str]) -> int:
    """Delete every control-store row about a person (``ids``); returns how many."""
    sizes.change(conn, sizes.leaving(conn, ids))
    deleted = 0
    for table in (segment_members, segment_history, cleaning_log_table, contact_preferences,
                  customers, customer_redirects, *ACTION_TABLES):
        deleted += max(conn.execute(table.delete().where(table.c.customer_id.in_(ids)))
                       .rowcount, 0)
    for cid in ids:  # rows received through the API name the customer in their JSON
        marker = json.dumps({"customer_id": cid}, ensure_ascii=False)[1:-1]
        deleted += max(conn.execute(intake.delete().where(intake.c.payload.contains(
            marker, autoescape=True))).rowcount, 0)
    for statement in (
            merges.delete().where(merges.c.survivor_id.in_(ids)),
            duplicate_pairs.delete().where(sa.or_(duplicate_pairs.c.left_id.in_(ids),
                                                  duplicate_pairs.c.right_id.in_(ids)))):
        deleted += max(conn.execute(statement).rowcount, 0)
    return deleted
