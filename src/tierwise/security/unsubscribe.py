"""Unsubscribe links: a customer who follows the link in a marketing e-mail (or a mail
client's one-click unsubscribe, RFC 8058) is unsubscribed from that channel — the same
preference ``consent.decide`` reads at every send — without signing in.

The link names the customer and the channel and carries an HMAC-SHA256 of both, keyed
with the workspace's unsubscribe key (``keys/unsubscribe.key``, created on first use):
nobody can unsubscribe another customer by changing the link, and the link works for as
long as the key is kept. Following the link (GET) only shows a button; the unsubscribe
itself is a POST, so that mail scanners that open every link unsubscribe nobody.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlencode

from tierwise.errors import TierwiseError
from tierwise.security import key_files
from tierwise.security.consent import set_preference
from tierwise.store import audit
from tierwise.store import customers as customer_store
from tierwise.workspace import Workspace

KEY_FILE = "unsubscribe.key"


def _key(ws: Workspace) -> bytes:
    return key_files.secret(ws, KEY_FILE)


def _encode(customer_id: str) -> str:
    return base64.urlsafe_b64encode(customer_id.encode()).decode().rstrip("=")


def _decode(text: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def token(ws: Workspace, customer_id: str, channel: str) -> str:
    return hmac.new(_key(ws), f"{customer_id}\n{channel}".encode(),
                    hashlib.sha256).hexdigest()[:32]


def query(ws: Workspace, customer_id: str, channel: str) -> dict[str, str]:
    """The link's query: ``c`` (the customer, encoded), ``ch``, ``t`` (the signature)."""
    return {"c": _encode(customer_id), "ch": channel, "t": token(ws, customer_id, channel)}


def link(ws: Workspace, customer_id: str, channel: str) -> str | None:
    """The unsubscribe link under the workspace's ``dashboard_url`` (None without one:
    there is no address the customer could reach)."""
    base = ws.config.dashboard_url.rstrip("/")
    if not base:
        return None
    return f"{base}/unsubscribe?{urlencode(query(ws, customer_id, channel))}"


def invalid_link() -> TierwiseError:
    return TierwiseError("this unsubscribe link is not valid (changed or cut short)",
                         zh="退订链接无效（被修改或不完整）")


def customer_of(ws: Workspace, encoded: str, channel: str, signature: str) -> str:
    """The customer a link names, when its signature is right; else an error."""
    customer_id = _decode(encoded)
    if customer_id is None or not hmac.compare_digest(
            token(ws, customer_id, channel).encode(), signature.encode()):
        raise invalid_link()
    return customer_id


def unsubscribe(ws: Workspace, encoded: str, channel: str, signature: str,
                client: str | None) -> str:
    """Unsubscribe the customer a valid link names from its channel (audited); returns the
    customer id. Following it again changes nothing more."""
    customer_id = customer_of(ws, encoded, channel, signature)
    with ws.control.read() as conn:  # merged into another since the mail: that customer
        customer_id = customer_store.survivors_of(conn, [customer_id]).get(customer_id,
                                                                           customer_id)
    set_preference(ws, customer_id, channel, unsubscribed=True)
    with ws.control.write() as conn:
        audit.append(conn, "customer:unsubscribe-link", "unsubscribe",
                     f"customer:{customer_id}", {"channel": channel}, client)
    return customer_id


__all__ = ["customer_of", "link", "query", "token", "unsubscribe"]
