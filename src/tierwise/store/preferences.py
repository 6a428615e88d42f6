"""Contact preferences (``contact_preferences``): per customer and channel, consent given
or withdrawn and the instant of an unsubscribe."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tierwise.store.control import as_utc, utcnow
from tierwise.store.tables import contact_preferences

#: Channels a preference may name ("all" stands for every channel).
CHANNELS = ("all", "email", "sms", "phone", "webhook", "wechat")


def of(conn: sa.Connection, customer_id: str, channel: str) -> list[dict[str, Any]]:
    """The customer's preferences for ``channel`` and for every channel ("all")."""
    p = contact_preferences.c
    rows = conn.execute(sa.select(contact_preferences).where(
        p.customer_id == customer_id, p.channel.in_(["all", channel]))
        .order_by(p.channel)).all()
    return [{"channel": r.channel, "consent": r.consent,
             "unsubscribed_at": as_utc(r.unsubscribed_at)} for r in rows]


def put(conn: sa.Connection, customer_id: str, channel: str, *, consent: bool | None = None,
        unsubscribed: bool | None = None) -> None:
    """Set consent and/or the unsubscribe of one channel (others are kept)."""
    now = utcnow()
    key = (contact_preferences.c.customer_id == customer_id) & (
        contact_preferences.c.channel == channel)
    values: dict[str, Any] = {"updated_at": now}
    if consent is not None:
        values["consent"] = consent
    if unsubscribed is not None:
        values["unsubscribed_at"] = now if unsubscribed else None
    if conn.execute(sa.select(contact_preferences.c.channel).where(key)).first() is None:
        conn.execute(contact_preferences.insert().values(customer_id=customer_id,
                                                         channel=channel, **values))
    else:
        conn.execute(contact_preferences.update().where(key).values(values))
