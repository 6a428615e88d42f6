"""Whether an action may reach a customer on a channel: the one decision the e-mail and
webhook channels make at send time, and the CLI, the API and the dashboard show.

- Unsubscribed from the channel, or from everything ("all"): no.
- Consent withdrawn on the channel or on everything: no.
- Marketing needs consent given (on the channel or on everything); service messages only
  need the absence of the above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tierwise.errors import NotFoundError, Said, TierwiseError
from tierwise.store import customers as customer_store
from tierwise.store import preferences
from tierwise.store.control import Connection
from tierwise.workspace import Workspace

Purpose = Literal["marketing", "service"]
PURPOSES: tuple[Purpose, ...] = ("marketing", "service")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: Words in both languages (``errors.Said``); their own value is the English.
    reason: str


def decide(conn: Connection, customer_id: str, channel: str,
           purpose: Purpose = "service") -> Decision:
    """The decision for one customer, channel and purpose (inside the caller's
    transaction, so that a send and its check see the same preferences)."""
    if channel not in preferences.CHANNELS or channel == "all":
        raise TierwiseError(f"unknown channel {channel!r}; expected one of "
                            f"{', '.join(c for c in preferences.CHANNELS if c != 'all')}",
                            zh=f"未知渠道 {channel!r}：应为 "
                            f"{', '.join(c for c in preferences.CHANNELS if c != 'all')} 之一")
    if purpose not in PURPOSES:
        raise TierwiseError(f"unknown purpose {purpose!r}; expected marketing or service",
                            zh=f"未知用途 {purpose!r}：应为 marketing 或 service")
    found = preferences.of(conn, customer_id, channel)
    for row in found:
        if row["unsubscribed_at"] is not None:
            at = f"{row['unsubscribed_at']:%Y-%m-%d %H:%M} UTC"
            return Decision(False, Said(f"unsubscribed ({row['channel']}) at {at}",
                                        f"已退订（{row['channel']}），时间 {at}"))
    for row in found:
        if row["consent"] is False:
            return Decision(False, Said(f"consent withdrawn ({row['channel']})",
                                        f"已撤回同意（{row['channel']}）"))
    if purpose == "marketing" and not any(row["consent"] is True for row in found):
        return Decision(False, Said(f"no consent to marketing on {channel}",
                                    f"没有同意通过 {channel} 接收营销信息"))
    if any(row["consent"] is True for row in found):
        return Decision(True, Said("consent given", "已同意"))
    return Decision(True, Said("no objection (service messages)", "无异议（服务类消息）"))


def may_contact(ws: Workspace, customer_id: str, channel: str,
                purpose: Purpose = "service") -> Decision:
    """``decide`` for a customer who must exist (``NotFoundError`` otherwise)."""
    with ws.control.read() as conn:
        if customer_store.get(conn, customer_id) is None:
            raise NotFoundError(f"no customer with id {customer_id!r}",
                                zh=f"没有编号为 {customer_id!r} 的客户")
        return decide(conn, customer_id, channel, purpose)


def set_preference(ws: Workspace, customer_id: str, channel: str = "all", *,
                   consent: bool | None = None, unsubscribed: bool | None = None) -> None:
    """Record consent or an unsubscribe for a channel (or "all")."""
    if channel not in preferences.CHANNELS:
        raise TierwiseError(f"unknown channel {channel!r}; expected one of "
                            f"{', '.join(preferences.CHANNELS)}",
                            zh=f"未知渠道 {channel!r}：应为 {', '.join(preferences.CHANNELS)} 之一")
    with ws.control.write() as conn:
        if customer_store.get(conn, customer_id) is None:
            raise NotFoundError(f"no customer with id {customer_id!r}",
                                zh=f"没有编号为 {customer_id!r} 的客户")
        preferences.put(conn, customer_id, channel, consent=consent, unsubscribed=unsubscribed)
