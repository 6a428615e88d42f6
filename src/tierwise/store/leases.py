"""Named leases (``leases``): one holder at a time, for as long as it keeps renewing."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from tierwise.store.tables import leases


def take(conn: sa.Connection, name: str, holder: str, now: datetime,
         seconds: float) -> bool:
    """Take or renew the lease ``name`` for ``seconds``; True when ``holder`` has it (it
    had it already, or the last holder's time ran out).

    One conditional update decides between processes that try at once: on PostgreSQL the
    second waits for the first's commit and then finds the lease held; a lease nobody
    had yet is inserted once (the loser of that race gets False)."""
    until = now + timedelta(seconds=seconds)
    renewed = conn.execute(leases.update().where(
        leases.c.name == name, sa.or_(leases.c.holder == holder, leases.c.expires_at <= now))
        .values(holder=holder, expires_at=until))
    if renewed.rowcount:
        return True
    if conn.execute(sa.select(leases.c.name).where(leases.c.name == name)).first():
        return False
    try:
        with conn.begin_nested():
            conn.execute(leases.insert().values(name=name, holder=holder, expires_at=until))
    except sa.exc.IntegrityError:
        return False
    return True


def release(conn: sa.Connection, name: str, holder: str) -> None:
    """Give the lease up, if ``holder`` has it."""
    conn.execute(leases.delete().where(leases.c.name == name, leases.c.holder == holder))

