"""Channel credentials kept in the workspace (``channel_secrets``): SMS providers' keys
and robots' addresses and signing secrets, by the name a setting gives them
(``secret_env = "TW_SMS_SECRET"``), encrypted under the workspace's PII key like
personal data. Values never leave this module except to the channel that sends."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from tierwise.store.control import as_utc
from tierwise.store.sealing import KeyRing
from tierwise.store.tables import channel_secrets

#: The "column" the values are sealed as (it names what the ciphertext is).
SEALED_AS = "channel_secret"


def _ring(conn: sa.Connection) -> KeyRing:
    ring = conn.info.get("pii")
    if ring is None:
        raise RuntimeError("channel secrets need the workspace's PII key")
    return ring  # type: ignore[no-any-return]


def put(conn: sa.Connection, name: str, value: str, actor: str, at: datetime) -> None:
    sealed = _ring(conn).encrypt(SEALED_AS, value)
    table = channel_secrets
    if conn.execute(sa.select(table.c.name).where(table.c.name == name)).first():
        conn.execute(table.update().where(table.c.name == name).values(
            value=sealed, updated_at=at, updated_by=actor))
    else:
        conn.execute(table.insert().values(name=name, value=sealed, updated_at=at,
                                           updated_by=actor))


def get(conn: sa.Connection, name: str) -> str | None:
    row = conn.execute(sa.select(channel_secrets.c.value)
                       .where(channel_secrets.c.name == name)).first()
    return None if row is None else _ring(conn).decrypt(SEALED_AS, row.value)


def delete(conn: sa.Connection, name: str) -> bool:
    return bool(conn.execute(channel_secrets.delete()
                             .where(channel_secrets.c.name == name)).rowcount)


def listing(conn: sa.Connection) -> list[dict[str, object]]:
    """Names, when each was set and by whom; never the values."""
    return [{"name": r.name, "updated_at": as_utc(r.updated_at), "updated_by": r.updated_by}
            for r in conn.execute(sa.select(channel_secrets.c.name,
                                            channel_secrets.c.updated_at,
                                            channel_secrets.c.updated_by)
                                  .order_by(channel_secrets.c.name))]


def reseal(conn: sa.Connection, ring: KeyRing) -> int:
    """Encrypt every value again under ``ring``'s current key (key rotation)."""
    rows = conn.execute(sa.select(channel_secrets.c.name, channel_secrets.c.value)).all()
    for r in rows:
        conn.execute(channel_secrets.update().where(channel_secrets.c.name == r.name).values(
            value=ring.encrypt(SEALED_AS, ring.decrypt(SEALED_AS, r.value))))
    return len(rows)
