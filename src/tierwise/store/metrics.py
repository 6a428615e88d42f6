"""Figures of the control store for ``/metrics``: read at each scrape, a few aggregate
queries over indexed columns, never a customer's data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tierwise.store.control import as_utc
from tierwise.store.tables import imports, intake, jobs, outbox, segment_sizes


def figures(conn: sa.Connection) -> dict[str, Any]:
    deliveries = {(str(a), str(s)): int(n) for a, s, n in conn.execute(
        sa.select(outbox.c.action, outbox.c.status, sa.func.count())
        .group_by(outbox.c.action, outbox.c.status))}
    oldest: datetime | None = conn.execute(
        sa.select(sa.func.min(outbox.c.created_at)).where(outbox.c.status == "pending")).scalar()
    received = conn.execute(sa.select(sa.func.max(intake.c.intake_id))).scalar()
    pending = {str(t): int(n) for t, n in conn.execute(
        sa.select(intake.c.table_name, sa.func.count()).where(intake.c.moved_at.is_(None))
        .group_by(intake.c.table_name))}
    rows = {str(t): (int(r or 0), int(n or 0)) for t, r, n in conn.execute(
        sa.select(imports.c.table_name, sa.func.sum(imports.c.rows_read), sa.func.count())
        .group_by(imports.c.table_name))}
    runs = {(str(k), str(s)): int(n) for k, s, n in conn.execute(
        sa.select(jobs.c.kind, jobs.c.status, sa.func.count())
        .group_by(jobs.c.kind, jobs.c.status))}
    last_ok = {str(k): as_utc(t) for k, t in conn.execute(
        sa.select(jobs.c.kind, sa.func.max(jobs.c.finished_at)).where(jobs.c.status == "done")
        .group_by(jobs.c.kind))}
    sizes = {str(k): int(n) for k, n in conn.execute(
        sa.select(segment_sizes.c.segment_key, segment_sizes.c.members))}
    return {"deliveries": deliveries, "oldest_pending": as_utc(oldest),
            "intake_received": int(received or 0), "intake_pending": pending,
            "import_rows": rows, "job_runs": runs, "job_last_success": last_ok,
            "segment_members": sizes}
