"""Real-time intake: rows posted to the API are validated, stored durably in the control
store (so a 2xx means the row survives any crash), and moved to the fact store in
micro-batches by a worker.

Every posted event needs its ``event_id``, every order its ``order_id`` and every ticket its
``ticket_id``. An event posted again with an ``event_id`` already received is acknowledged
and ignored; orders and tickets change (a refund, a closed ticket), so for them a row is a
repeat only when its content is identical too, and a changed order replaces the stored one.

Moving is at-least-once (a worker killed after an import but before marking the rows moved
imports them again) and imports are idempotent by key, so the fact store holds each row
once.

A moved row keeps only its key (its payload is emptied when it is marked moved: the fact
store has the data), and ``prune`` deletes moved rows after ``intake_keep_hours``: a repeat
posted later than that is accepted again and imported as unchanged, so the fact store still
holds the row once, but the answer counts it as accepted, not as a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from tierwise.definitions.partitions import Partition, bucket
from tierwise.errors import TierwiseError
from tierwise.ingest.imports import import_source
from tierwise.ingest.pipeline import check_rows
from tierwise.ingest.readers import RecordsSource
from tierwise.ingest.report import reject_report_path
from tierwise.store import customers as customer_store
from tierwise.store import intake as intake_store
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace

#: Tables that take rows through intake, with the field that identifies a row.
KEYS: dict[str, str | None] = {"events": "event_id", "orders": "order_id",
                               "tickets": "ticket_id", "feedback": None,
                               "opportunities": "opportunity_id"}
#: Tables whose every version of a row matters (each stage an opportunity passes through is
#: history), so versions received together are imported one after another, not collapsed.
VERSIONED = {"opportunities": "opportunity_stages"}
BATCH = 20_000
log = logging.getLogger("tierwise.worker")


@dataclass
class Received:
    accepted: int
    duplicates: int


def _source(table: str, rows: list[dict[str, Any]]) -> RecordsSource:
    return RecordsSource.from_dicts(f"intake {table}", rows)


def _report_path(ws: Workspace) -> Path:
    return reject_report_path(ws.root, f"intake-{uuid.uuid4().hex[:12]}.rejected.csv")


def _row_key(table: str, row: dict[str, Any]) -> str:
    if table == "events":
        return str(row["event_id"])
    content = hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False,
                                        default=str).encode()).hexdigest()[:24]
    key = KEYS[table]
    return f"{row[key]}#{content}" if key else content


def receive(ws: Workspace, table: str, rows: list[dict[str, Any]],
            also: Callable[[Any], object] | None = None) -> Received:
    """Validate ``rows`` like an import (all or nothing) and store them durably; ``also``
    writes in the same transaction (the request's audit entry: one turn of the write lock
    a request, not two)."""
    if table not in KEYS:
        raise TierwiseError(f"intake takes {', '.join(KEYS)}, not {table!r}",
                            zh=f"实时接收只接受 {', '.join(KEYS)}，不接受 {table!r}")
    key = KEYS[table]
    missing = [i for i, r in enumerate(rows) if key and not str(r.get(key) or "").strip()]
    if missing:
        rows_at = ", ".join(str(i) for i in missing[:10])
        raise TierwiseError(f"{table}: row(s) {rows_at} have no {key}; every posted row needs "
                            "one (it makes a retry harmless)",
                            zh=f"{table}：第 {rows_at} 行没有 {key}；每一行都需要它（重试时才不会"
                            "重复）")
    check_rows(ws, table, _source(table, rows), _report_path(ws))
    now = utcnow()
    keyed = [_row_key(table, row) for row in rows]
    # Everything but the two statements is done before the write lock is taken: on
    # SQLite every writer of the workspace waits while it is held.
    owners = _owner_keys(ws, {str(row["customer_id"]) for row in rows})
    texts: dict[str, tuple[str, int]] = {}
    for row, row_key in zip(rows, keyed, strict=True):
        if row_key not in texts:  # a row sent twice in one request counts once
            customer = str(row["customer_id"])
            texts[row_key] = (intake_store.payload(row), bucket(owners.get(customer, customer)))
    with ws.control.write() as conn:
        seen = intake_store.known_keys(conn, table, keyed)
        fresh = {k: text for k, text in texts.items() if k not in seen}
        intake_store.add(conn, table, fresh, now)
        if also is not None:
            also(conn)
    return Received(len(fresh), len(rows) - len(fresh))


@dataclass
class Flushed:
    """What one ``flush`` moved: rows per table, and the customers each table has new rows
    for (merged ids already read as their survivors)."""

    moved: dict[str, int] = field(default_factory=dict)
    customers: dict[str, set[str]] = field(default_factory=dict)
    #: Ids of the tickets moved (new or changed), for SLA escalation.
    ticket_ids: set[str] = field(default_factory=set)
    #: Rows handed to another partition (``flush``).
    handed: int = 0

    def __bool__(self) -> bool:
        return bool(self.moved)


def _owner_keys(ws: Workspace, ids: set[str]) -> dict[str, str]:
    """The owner keys of ``ids`` when the real-time plane is partitioned (one worker: each
    id is its own key, and nobody reads the buckets)."""
    if ws.config.realtime_partitions == 1:
        return {}
    with ws.control.read() as conn:
        return customer_store.owner_keys(conn, sorted(ids))


def flush(ws: Workspace, batch: int = BATCH, part: Partition | None = None) -> Flushed:
    """Move pending rows to the fact store: for each table, at most ``batch`` of the oldest
    (one import each), so that a caller running this in a loop gets control back between
    micro-batches however fast rows arrive.

    A worker of a partitioned plane (``part``) moves only the rows in its buckets; a row
    whose owner is another partition's now (a merge, or a new account, since it was
    received) is handed to that partition's bucket instead (``Flushed.handed``)."""
    part = part or Partition()
    done = Flushed()
    for table in KEYS:
        with ws.control.read() as conn:
            rows = intake_store.waiting(conn, table, batch, part)
        if rows and not part.whole:
            rows = _hand_over(ws, rows, part, done)
        if not rows:
            continue
        payloads = [row for _, row in rows]
        index = ws.facts.key_index(table) if ws.engine.in_process else None
        import_ids = [import_source(ws, table, _source(table, rounds), unknown_customers="create",
                                    report_path=_report_path(ws), key_index=index).import_id
                      for rounds in _versions(table, payloads)]
        moved_at = utcnow()
        with ws.control.write() as conn:
            intake_store.mark_moved(conn, [i for i, _ in rows], import_ids[-1], moved_at)
            named = {str(p["customer_id"]) for p in payloads}
            merged = customer_store.survivors_of(conn, sorted(named))
            ids = {merged.get(i, i) for i in named}
            if not part.whole:
                # a merge between the hand-over and the import: the survivor's partition
                # learns of it as a changed customer record
                foreign = ids - part.mine(ids, customer_store.owner_keys(conn, sorted(ids)))
                if foreign:
                    customer_store.touch(conn, foreign, moved_at)
                    log.warning("rows of %d customer(s) of other partitions moved by "
                                "partition %s (merged meanwhile): handed over as changed "
                                "records", len(foreign), part)
                    ids -= foreign
        done.moved[table] = len(rows)
        done.customers[table] = ids
        if table in VERSIONED:
            done.customers[VERSIONED[table]] = ids
        if table == "tickets":
            done.ticket_ids.update(str(p["ticket_id"]) for p in payloads)
    return done


def _hand_over(ws: Workspace, rows: list[tuple[int, dict[str, Any]]], part: Partition,
               done: Flushed) -> list[tuple[int, dict[str, Any]]]:
    """The rows ``part`` owns; the others are given to the buckets of their owners."""
    with ws.control.read() as conn:
        keys = customer_store.owner_keys(conn, sorted({str(p["customer_id"]) for _, p in rows}))
    moves = {i: bucket(keys[str(p["customer_id"])]) for i, p in rows
             if not part.owns(keys[str(p["customer_id"])])}
    if not moves:
        return rows
    with ws.control.write() as conn:
        intake_store.rebucket(conn, moves)
    done.handed += len(moves)
    return [(i, p) for i, p in rows if i not in moves]


def _versions(table: str, payloads: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The imports that move ``payloads``: one, with the last version of each keyed row (a
    refund replaces the order); for ``VERSIONED`` tables one per version in the order
    received (the first version of each row, then the second, …)."""
    key = KEYS[table]
    if not key:
        return [payloads]
    if table not in VERSIONED:
        return [list({str(p[key]): p for p in payloads}.values())]
    rounds: list[dict[str, dict[str, Any]]] = []
    for payload in payloads:
        name = str(payload[key])
        for round_ in rounds:
            if name not in round_:
                round_[name] = payload
                break
        else:
            rounds.append({name: payload})
    return [list(round_.values()) for round_ in rounds]


def prune(ws: Workspace, keep_hours: float) -> int:
    """Delete rows moved more than ``keep_hours`` ago (their keys are what makes a repeat
    a duplicate; see the module). Returns how many were deleted."""
    with ws.control.write() as conn:
        return intake_store.prune(conn, list(KEYS), utcnow() - timedelta(hours=keep_hours))


def pending(ws: Workspace) -> dict[str, int]:
    with ws.control.read() as conn:
        return intake_store.pending(conn)


__all__ = ["KEYS", "Flushed", "flush", "pending", "prune", "receive"]
