"""Named leases (``leases``): one holder at a time, for as long as it keeps renewing."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from tierwise.store.tables import leases


def take(conn: sa.Connection, name: str, holder: str, now: datetime,
         seconds: float) -> bool:
    """Take or renew the lease ``name`` for ``seconds``; True when ``holder`` has it (it
    had it already, or the last holder's time ran out)."""
    until = now + timedelta(seconds=seconds)
    row = conn.execute(sa.select(leases).where(leases.c.name == name)).first()
    if row is None:
        conn.execute(leases.insert().values(name=name, holder=holder, expires_at=until))
        return True
    if row.holder != holder and row.expires_at > now:
        return False
    conn.execute(leases.update().where(leases.c.name == name).values(
        holder=holder, expires_at=until))
    return True


def release(conn: sa.Connection, name: str, holder: str) -> None:
    """Give the lease up, if ``holder`` has it."""
    conn.execute(leases.delete().where(leases.c.name == name, leases.c.holder == holder))

