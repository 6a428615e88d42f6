"""The member count of each segment, kept in ``segment_sizes``.

Every writer of ``segment_members`` — segment evaluations and static edits
(``segments/membership.py``), merges and their undoing (``identity/merge.py``), erasure
(``privacy.py``) — changes the count in the same transaction, so it is always what a count
of the rows would give. A real-time round records each changed segment's size with its run;
counting the rows instead took ~40 ms a round once segments held tens of thousands of
members, and it grew with them. An evaluation for everyone knows the exact size and writes
it outright (``settle``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tierwise.store.control import chunked
from tierwise.store.tables import segment_members, segment_sizes


def _upsert(conn: sa.Connection) -> tuple[Any, Any]:
    """An insert into segment_sizes that can update the row it conflicts with (SQLite and
    PostgreSQL spell it alike), and the name of the row it would have inserted."""
    dialect = {"sqlite": sqlite, "postgresql": postgresql}[conn.dialect.name]
    statement = dialect.insert(segment_sizes)
    return statement, statement.excluded


def change(conn: sa.Connection, deltas: Mapping[str, int]) -> None:
    """Add ``deltas`` (segment key → members added minus members removed)."""
    rows = [{"segment_key": k, "members": d} for k, d in sorted(deltas.items()) if d]
    if not rows:
        return
    statement, excluded = _upsert(conn)
    conn.execute(statement.on_conflict_do_update(
        index_elements=["segment_key"],
        set_={"members": segment_sizes.c.members + excluded.members}), rows)


def settle(conn: sa.Connection, sizes: Mapping[str, int]) -> None:
    """Write sizes known exactly (an evaluation for everyone, a recount)."""
    rows = [{"segment_key": k, "members": n} for k, n in sorted(sizes.items())]
    if not rows:
        return
    statement, excluded = _upsert(conn)
    conn.execute(statement.on_conflict_do_update(
        index_elements=["segment_key"],
        set_={"members": excluded.members}), rows)


def leaving(conn: sa.Connection, customer_ids: Collection[str]) -> dict[str, int]:
    """Per segment, minus the number of memberships ``customer_ids`` hold: the change of
    deleting them all."""
    m = segment_members.c
    found: dict[str, int] = {}
    for part in chunked(sorted(customer_ids)):
        for key, n in conn.execute(sa.select(m.segment_key, sa.func.count()).where(
                m.customer_id.in_(part)).group_by(m.segment_key)):
            found[key] = found.get(key, 0) - int(n)
    return found


def of(conn: sa.Connection, keys: Collection[str] | None = None) -> dict[str, int]:
    """The member count of ``keys`` (0 for a segment without members), or of every segment
    that has a count."""
    s = segment_sizes.c
    query = sa.select(s.segment_key, s.members)
    if keys is not None:
        if not keys:
            return {}
        query = query.where(s.segment_key.in_(sorted(keys)))
    counts = {k: 0 for k in keys or ()}
    counts.update({k: int(n) for k, n in conn.execute(query)})
    return counts


__all__ = ["change", "leaving", "of", "settle"]
