"""Where webhooks may go: public addresses, and the hosts and networks a workspace allows.

A webhook's URL is written by whoever may change triggers, and the server that sends it sits
inside the company's network: without a policy a trigger could make tierwise call an
internal service (``http://127.0.0.1:5432``, a cloud's metadata endpoint at
``169.254.169.254``, an admin console on ``10.0.0.0/8``) and show its reply. So:

- at save, a URL must be ``http(s)://host[:port]/…`` without control characters,
  whitespace or credentials, and a host that is an address or resolves now must be
  allowed;
- at every delivery the host is resolved again, every address it resolves to must be
  allowed, and the request goes to the address that was checked (the name stays in the
  ``Host`` header and TLS's server name), so a name that later resolves inside — or
  answers differently to a second lookup — is caught.

Allowed are global unicast addresses, plus the host names and networks listed in the
workspace's ``webhook_allowed_targets`` (``crm.internal``, ``10.20.0.0/16``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from tierwise.config import allowed_target
from tierwise.errors import TierwiseError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


class TargetRefused(TierwiseError):
    """A webhook URL that is malformed or points where webhooks may not go."""


def _getaddrinfo(host: str, port: int) -> list[str]:
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in found})


@dataclass(frozen=True)
class Target:
    """A checked webhook target: the URL as written and the address to connect to."""

    url: str
    host: str
    address: Address

    def pinned_url(self) -> str:
        """The URL with the checked address in place of the host name."""
        parts = urlsplit(self.url)
        shown = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        netloc = shown if parts.port is None else f"{shown}:{parts.port}"
        return parts._replace(netloc=netloc).geturl()

    def host_header(self) -> str:
        return urlsplit(self.url).netloc


def parse(url: str) -> SplitResult:
    """The parts of a webhook URL, or ``TargetRefused`` saying what is wrong with it."""
    bad = [c for c in url if ord(c) < 0x21 or ord(c) == 0x7F]
    if bad:
        raise TargetRefused(f"webhook url {url!r} contains control characters or spaces "
                            f"({', '.join(sorted({repr(c) for c in bad}))})")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"webhook url {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused(f"webhook url {url!r}: starts with http:// or https://")
    if not parts.hostname:
        raise TargetRefused(f"webhook url {url!r} names no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused(f"webhook url {url!r}: put credentials in the receiver's "
                            "configuration, not in the URL (everyone who may read triggers "
                            "would see them)")
    if port == 0:
        raise TargetRefused(f"webhook url {url!r}: port 0")
    return parts


def _literal(host: str) -> Address | None:
    """The address a host names without asking DNS: an address, or ``localhost`` and its
    subdomains (always loopback, RFC 6761)."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return ipaddress.ip_address("127.0.0.1")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _allowed(host: str, address: Address, allowed: Iterable[str]) -> bool:
    if _public(address):
        return True
    plain = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) and \
        address.ipv4_mapped is not None else address
    for entry in allowed:
        rule = allowed_target(entry)
        if isinstance(rule, str) and rule == host.lower().rstrip("."):
            return True
        if not isinstance(rule, str) and rule is not None and plain.version == rule.version \
                and plain in rule:
            return True
    return False


def _why(address: Address) -> str:
    for name in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{name}", False):
            return name.replace("_", "-")
    return "not public"


def check(url: str, allowed: Iterable[str], resolver: Resolver | None = None) -> Target:
    """Resolve ``url``'s host and check every address; the target to connect to.

    ``TargetRefused`` when the URL is malformed or an address is not allowed; ``OSError``
    when the name does not resolve (a delivery then tries again later)."""
    parts = parse(url)
    host = parts.hostname or ""
    allowed = list(allowed)
    literal = _literal(host)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = [literal] if literal is not None else [
        ipaddress.ip_address(a.split("%")[0]) for a in (resolver or _getaddrinfo)(host, port)]
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    for address in addresses:
        if not _allowed(host, address, allowed):
            shown = host if literal is not None else f"{host} ({address})"
            raise TargetRefused(
                f"webhook url {url!r}: {shown} is a {_why(address)} address; webhooks go to "
                "public addresses unless webhook_allowed_targets in tierwise.toml names the "
                "host or its network")
    return Target(url, host, addresses[0])


def check_at_save(url: str, allowed: Iterable[str], resolver: Resolver | None = None) -> None:
    """The check when a trigger is saved: a name that does not resolve now is accepted
    (it is checked again at every delivery, which refuses it if it then resolves inside)."""
    try:
        check(url, allowed, resolver)
    except OSError:
        return
