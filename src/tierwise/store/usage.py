"""How much the control store holds: its size on disk and the rows of its growing tables."""

from __future__ import annotations

import sqlalchemy as sa

from tierwise.store.tables import (
    audit_log,
    cleaning_log,
    customers,
    intake,
    jobs,
    outbox,
    segment_history,
    segment_members,
)

#: Tables that grow with use, biggest concern first.
GROWING = (customers, segment_members, segment_history, outbox, intake, audit_log,
           cleaning_log, jobs)


def control_store_size(conn: sa.Connection) -> int:
    """Bytes the control store takes (SQLite: its pages; PostgreSQL: the database)."""
    if conn.dialect.name == "sqlite":
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar() or 0
        size = conn.exec_driver_sql("PRAGMA page_size").scalar() or 0
        return int(pages) * int(size)
    return int(conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar()
               or 0)


def table_rows(conn: sa.Connection) -> list[tuple[str, int]]:
    return [(t.name, int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                         or 0)) for t in GROWING]
