"""Snapshots of customer values (``snapshots``): one row per computation, its Parquet file
named by ``path``.

"The latest snapshot" has one meaning everywhere: the one computed as of the latest
instant (ties: the one registered last). A snapshot computed later for an earlier instant (a
backfill) does not replace the customers' current values.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tierwise.store.control import as_utc
from tierwise.store.tables import snapshots

_NEWEST = (snapshots.c.as_of.desc(), snapshots.c.snapshot_id.desc())


def _row(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    out = dict(row._mapping)
    for key in ("as_of", "computed_at"):
        if key in out:
            out[key] = as_utc(out[key])
    return out


def latest(conn: sa.Connection, excluding: int | None = None) -> dict[str, Any] | None:
    """The latest snapshot (optionally other than ``excluding``); None: none yet."""
    query = sa.select(snapshots)
    if excluding is not None:
        query = query.where(snapshots.c.snapshot_id != excluding)
    return _row(conn.execute(query.order_by(*_NEWEST).limit(1)).first())


def get(conn: sa.Connection, snapshot_id: int) -> dict[str, Any] | None:
    return _row(conn.execute(sa.select(snapshots).where(
        snapshots.c.snapshot_id == snapshot_id)).first())


def as_of(conn: sa.Connection, at: datetime) -> dict[str, Any] | None:
    """The latest snapshot computed as of ``at`` or earlier, else the earliest one."""
    found = conn.execute(sa.select(snapshots).where(snapshots.c.as_of <= at)
                         .order_by(*_NEWEST).limit(1)).first()
    if found is None:
        found = conn.execute(sa.select(snapshots).order_by(
            snapshots.c.as_of, snapshots.c.snapshot_id).limit(1)).first()
    return _row(found)


def listing(conn: sa.Connection) -> list[dict[str, Any]]:
    """Every snapshot in the order they were registered."""
    return [r for r in (_row(x) for x in conn.execute(
        sa.select(snapshots).order_by(snapshots.c.snapshot_id))) if r is not None]


def register(conn: sa.Connection, **values: Any) -> int:
    """Register a snapshot file (as_of, computed_at, path, rows, seconds, settings)."""
    result = conn.execute(snapshots.insert().values(**values))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def set_rows(conn: sa.Connection, snapshot_id: int, rows: int) -> None:
    conn.execute(snapshots.update().where(snapshots.c.snapshot_id == snapshot_id)
                 .values(rows=rows))


def state(conn: sa.Connection) -> tuple[int, int]:
    """How many snapshots there are and the highest id: changes with every new one."""
    found = conn.execute(sa.select(sa.func.count(), sa.func.max(snapshots.c.snapshot_id))
                         ).one()
    return int(found[0] or 0), int(found[1] or 0)


def remove(conn: sa.Connection, snapshot_ids: list[int]) -> None:
    conn.execute(snapshots.delete().where(snapshots.c.snapshot_id.in_(snapshot_ids)))
