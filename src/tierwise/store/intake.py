"""Rows received through the API before they reach the fact store (``intake``): stored
durably as they arrive, marked moved (and their payload emptied) once imported, pruned
after a while. ``realtime.intake`` decides what is a repeat and when to move them."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tierwise.definitions.partitions import Partition
from tierwise.store.tables import intake


def known_keys(conn: sa.Connection, table: str, keys: list[str]) -> set[str]:
    """Those of ``keys`` received for ``table`` before (moved or not, until pruned)."""
    return {r[0] for r in conn.execute(sa.select(intake.c.row_key).where(
        intake.c.table_name == table, intake.c.row_key.in_(keys)))}


def payload(row: dict[str, Any]) -> str:
    """A received row as stored (``add``)."""
    return json.dumps(row, ensure_ascii=False, default=str)


def add(conn: sa.Connection, table: str, rows: dict[str, tuple[str, int]],
        at: datetime) -> None:
    """Store received rows by key: their ``payload`` text and the bucket of their owner
    (``definitions.partitions``)."""
    if rows:
        conn.execute(intake.insert(), [
            {"table_name": table, "row_key": k, "received_at": at, "payload": text,
             "bucket": bucket} for k, (text, bucket) in rows.items()])


def waiting(conn: sa.Connection, table: str, limit: int,
            part: Partition | None = None) -> list[tuple[int, dict[str, Any]]]:
    """The oldest rows of ``table`` not moved yet (those in the buckets of ``part``):
    (intake id, row)."""
    query = sa.select(intake.c.intake_id, intake.c.payload).where(
        intake.c.table_name == table, intake.c.moved_at.is_(None))
    if part is not None and not part.whole:
        query = query.where(intake.c.bucket % part.count == part.index)
    return [(int(r.intake_id), json.loads(r.payload)) for r in conn.execute(
        query.order_by(intake.c.intake_id).limit(limit))]


def rebucket(conn: sa.Connection, buckets: dict[int, int]) -> None:
    """Give received rows (by intake id) to the buckets of their owners now (a merge or a
    new account since they were received)."""
    if buckets:
        conn.execute(intake.update().where(intake.c.intake_id == sa.bindparam("id_"))
                     .values(bucket=sa.bindparam("bucket_")),
                     [{"id_": i, "bucket_": b} for i, b in buckets.items()])


def mark_moved(conn: sa.Connection, ids: list[int], import_id: int | None,
               at: datetime) -> None:
    # one statement run for each row: an IN list of thousands of ids costs more to render
    # than the updates
    conn.execute(intake.update().where(intake.c.intake_id == sa.bindparam("id_"))
                 .values(moved_at=at, import_id=import_id, payload=""),
                 [{"id_": i} for i in ids])


def prune(conn: sa.Connection, tables: list[str], before: datetime) -> int:
    """Delete rows moved before ``before``; returns how many."""
    deleted = 0
    for table in tables:  # the (table_name, moved_at) index finds them
        deleted += max(conn.execute(intake.delete().where(
            intake.c.table_name == table, intake.c.moved_at < before)).rowcount, 0)
    return deleted


def pending(conn: sa.Connection) -> dict[str, int]:
    """Rows not moved yet, per table."""
    return {t: int(n) for t, n in conn.execute(
        sa.select(intake.c.table_name, sa.func.count()).where(intake.c.moved_at.is_(None))
        .group_by(intake.c.table_name))}
