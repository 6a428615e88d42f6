"""The cleaning log (``cleaning_log``): what import cleaning changed or flagged, per customer
and column, with the values before and after — those of PII columns sealed like the
customers' own (``store.sealing``), opened only when read back here."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tierwise.definitions.personal_data import PII_COLUMNS
from tierwise.store.control import chunked, utcnow
from tierwise.store.sealing import KeyRing
from tierwise.store.tables import cleaning_log

CHUNK = 5_000


def _ring(conn: sa.Connection) -> KeyRing | None:
    return conn.info.get("pii")


def _seal(ring: KeyRing | None, column: str, value: str | None) -> str | None:
    return ring.encrypt(column, value) if ring is not None and column in PII_COLUMNS \
        else value


def _open(conn: sa.Connection, rows: Iterable[Any]) -> list[dict[str, Any]]:
    ring = _ring(conn)
    out = []
    for row in rows:
        entry = dict(row._mapping)
        if ring is not None:
            for side in ("before", "after"):
                entry[side] = ring.decrypt(entry["column_name"], entry[side])
        out.append(entry)
    return out


def record(conn: sa.Connection, import_id: int, changes: Iterable[Any],
           at: datetime | None = None) -> None:
    """Log an import's changes (objects with customer_id, column, before, after, rule)."""
    ring, at = _ring(conn), at or utcnow()
    rows = [{"import_id": import_id, "customer_id": c.customer_id, "column_name": c.column,
             "before": _seal(ring, c.column, c.before), "after": _seal(ring, c.column, c.after),
             "rule": c.rule, "at": at} for c in changes]
    if rows:
        conn.execute(cleaning_log.insert(), rows)


def entries(conn: sa.Connection, *, import_id: int | None = None,
            customer_ids: list[str] | None = None, pending_only: bool = False,
            limit: int | None = None) -> list[dict[str, Any]]:
    """Entries, newest first, values opened (``pending_only``: not undone)."""
    query = sa.select(cleaning_log).order_by(cleaning_log.c.log_id.desc())
    if import_id is not None:
        query = query.where(cleaning_log.c.import_id == import_id)
    if customer_ids is not None:
        query = query.where(cleaning_log.c.customer_id.in_(customer_ids))
    if pending_only:
        query = query.where(cleaning_log.c.undone_at.is_(None))
    if limit is not None:
        query = query.limit(limit)
    return _open(conn, conn.execute(query))


def mark_undone(conn: sa.Connection, import_id: int) -> None:
    conn.execute(cleaning_log.update().where(cleaning_log.c.import_id == import_id,
                                             cleaning_log.c.undone_at.is_(None))
                 .values(undone_at=utcnow()))


def rule_counts(conn: sa.Connection) -> dict[str, int]:
    """Entries not undone, per cleaning rule."""
    return {str(k): int(v) for k, v in conn.execute(
        sa.select(cleaning_log.c.rule, sa.func.count())
        .where(cleaning_log.c.undone_at.is_(None)).group_by(cleaning_log.c.rule))}


def reseal(conn: sa.Connection, ring: KeyRing) -> int:
    """Seal every PII value again under ``ring``'s current key (key rotation)."""
    rows = conn.execute(sa.select(cleaning_log.c.log_id, cleaning_log.c.column_name,
                                  cleaning_log.c.before, cleaning_log.c.after)
                        .where(cleaning_log.c.column_name.in_(PII_COLUMNS))).all()
    stmt = cleaning_log.update().where(cleaning_log.c.log_id == sa.bindparam("_id")).values(
        before=sa.bindparam("b"), after=sa.bindparam("a"))
    batch = [{"_id": r.log_id,
              "b": ring.encrypt(r.column_name, ring.decrypt(r.column_name, r.before)),
              "a": ring.encrypt(r.column_name, ring.decrypt(r.column_name, r.after))}
             for r in rows]
    for part in chunked(batch, CHUNK):
        conn.execute(stmt, list(part))
    return len(batch)
