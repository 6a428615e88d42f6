"""How each kind of action is carried out: webhook, e-mail, task, tag, team chat (notify),
text message (sms).

Every channel gets the outbox row (its idempotency key and payload) and either returns
(delivered), raises ``Retry`` (try again later) or ``Refused`` (never deliver: no consent,
no address). Tasks and tags change the control store and are idempotent by themselves;
webhooks and e-mails carry the idempotency key so that the receiver can drop a repeat
(delivery is at least once).

Webhook requests are signed: ``X-Tierwise-Signature: t=<unix seconds>,v1=<hex>`` where
``<hex>`` is HMAC-SHA256 over ``"<t>.<body>"`` with the workspace's webhook secret
(``$TIERWISE_WEBHOOK_SECRET`` or the key file ``keys/webhook.key``, created on first use).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import os
import smtplib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from importlib.metadata import version as package_version
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import httpx
from jinja2 import Template
from jinja2.sandbox import SandboxedEnvironment

from tierwise.actions import robots, sms
from tierwise.config import ROBOT_RATES, WorkspaceConfig, quiet_window
from tierwise.errors import TierwiseError
from tierwise.ingest.cleaning import phone_cleaner
from tierwise.security import consent, key_files, targets, unsubscribe
from tierwise.store import channel_secrets
from tierwise.store import customers as customer_store
from tierwise.store import outbox as outbox_store
from tierwise.store import tasks as task_store
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace

ENV_SECRET = "TIERWISE_WEBHOOK_SECRET"
ENV_SMTP_PASSWORD = "TIERWISE_SMTP_PASSWORD"
SIGNATURE_HEADER = "X-Tierwise-Signature"
USER_AGENT = f"tierwise/{package_version('tierwise')}"


class Retry(Exception):
    """The attempt failed and may succeed later. ``reply`` is the start of what the receiver
    answered: kept for admins only (it can be anything an internal service says)."""

    def __init__(self, message: str, reply: str | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class Refused(Exception):
    """The action must not be delivered (recorded as ``suppressed``)."""


class Later(Exception):
    """Not now: the channel's rate limit is reached. The delivery waits ``seconds``
    without counting an attempt."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


def channel_key(action: dict[str, Any]) -> str | None:
    """The channel an action's messages go through, as ``rate_limits`` and
    ``message_costs`` name it: ``webhook``, ``email``, ``robot:<name>``, ``sms:<name>``;
    None for tasks and tags."""
    kind = action.get("type")
    if kind in ("webhook", "email"):
        return str(kind)
    if kind == "notify":
        return f"robot:{action['robot']}"
    if kind == "sms":
        return f"sms:{action['sender']}"
    return None


#: Seconds a credential read from the workspace is used before it is read again (a
#: changed secret takes effect within this time).
CREDENTIALS_KEPT_SECONDS = 30.0
#: Actions that reach the customer: the frequency cap counts and holds these.
TO_CUSTOMERS = ("email", "sms")
#: A message this process delivered is in the outbox (delivered) within this time.
SETTLED_WITHIN = timedelta(minutes=10)


def quiet_until(window: str, now: datetime, zone: ZoneInfo) -> datetime | None:
    """When the quiet hours ``window`` ("21:00-08:00", local) that hold ``now`` end; None
    outside them (or without a window)."""
    hours = quiet_window(window) if window else None
    if hours is None:
        return None
    start, end = hours
    local = now.astimezone(zone)
    at = local.time()
    inside = start <= at < end if start < end else (at >= start or at < end)
    if not inside:
        return None
    day = local.date() if at < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, zone)


class Pacer:
    """At most ``rate_limits`` messages a minute per channel key, over a sliding minute,
    for the deliveries of one process (the dispatcher runs in one process at a time)."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits
        self._sent: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str | None, now: float | None = None) -> None:
        limit = self.limits.get(key) if key else None
        if limit is None:
            return
        now = time.monotonic() if now is None else now
        assert key is not None
        with self._lock:
            sent = self._sent.setdefault(key, collections.deque())
            while sent and now - sent[0] >= 60.0:
                sent.popleft()
            if len(sent) >= limit:
                wait = 60.0 - (now - sent[0])
                raise Later(f"{key}: its limit of {limit} a minute is reached (rate_limits); "
                            f"waits {wait:.0f} s", wait)
            sent.append(now)


class Failed(Exception):
    """The receiver refused the message itself (a wrong key or signature, a malformed
    request): trying again cannot help. Recorded as ``dead`` at once, to be replayed once
    the cause is fixed."""

    def __init__(self, message: str, reply: str | None = None) -> None:
        super().__init__(message)
        self.reply = reply


def webhook_secret(ws: Workspace) -> bytes:
    """The secret webhook signatures are made with."""
    if os.environ.get(ENV_SECRET):
        return os.environ[ENV_SECRET].encode()
    return key_files.secret(ws, "webhook.key")


def send_mail(config: WorkspaceConfig, message: EmailMessage) -> None:
    """Send ``message`` through the workspace's ``smtp_url``; ``Retry`` when it cannot go
    now (no server set, the server unreachable or refusing)."""
    url = config.smtp_url
    if not url:
        raise Retry("no smtp_url in tierwise.toml: e-mail waits until one is set")
    parts = urlsplit(url)
    host, user = parts.hostname or "localhost", unquote(parts.username or "")
    timeout = config.webhook_timeout_seconds
    try:
        if parts.scheme == "smtps":
            server: smtplib.SMTP = smtplib.SMTP_SSL(host, parts.port or 465,
                                                    timeout=timeout)
        else:
            server = smtplib.SMTP(host, parts.port or 25, timeout=timeout)
        with server:
            if parts.scheme == "smtp+starttls":
                server.starttls()
            if user:
                server.login(user, os.environ.get(ENV_SMTP_PASSWORD, ""))
            server.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise Retry(f"SMTP: {exc}") from None


def sign(secret: bytes, body: bytes, at: int | None = None) -> str:
    """The signature header value for ``body``.

    >>> sign(b"s", b"{}", 1700000000)[:13]
    't=1700000000,'
    """
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret, f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def verify(secret: bytes, body: bytes, header: str, tolerance: float = 300.0) -> bool:
    """Check a signature header (for receivers written in Python, and the tests)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        at = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - at) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, at), header)


class Channels:
    """The channels of one workspace, sharing one HTTP connection pool."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.http = httpx.Client(timeout=ws.config.webhook_timeout_seconds,
                                 follow_redirects=False)
        self._secret: bytes | None = None
        self.templates = SandboxedEnvironment(autoescape=False)
        #: Compiled templates by source text: every delivery of an action renders the same
        #: few, and compiling one costs far more than rendering it.
        self._compiled: dict[str, Template] = {}
        self._compiled_lock = threading.Lock()
        #: Per customer, the messages this process delivered (or is delivering) that the
        #: frequency cap counts: outbox id → when. The outbox learns of them only when a
        #: round settles, so a round with several messages for one customer asks here too.
        self._contacts: dict[str, dict[int, datetime]] = {}
        #: Credentials read from the workspace, by name: (when read, value).
        self._credentials: dict[str, tuple[float, str]] = {}
        self._credentials_lock = threading.Lock()
        self._contacts_lock = threading.Lock()
        config = ws.config
        self.pacer = Pacer({**{f"robot:{name}": ROBOT_RATES[robot["platform"]]
                               for name, robot in config.robots.items()},
                            **config.rate_limits})

    def credential(self, name: str) -> str:
        """A channel credential by the name a setting gives it: the environment variable
        of that name, else the value kept encrypted in the workspace (``tierwise secrets
        set``); empty when neither has it."""
        if os.environ.get(name):
            return os.environ[name]
        now = time.monotonic()
        with self._credentials_lock:
            kept = self._credentials.get(name)
        if kept is None or now - kept[0] > CREDENTIALS_KEPT_SECONDS:
            with self.ws.control.read() as conn:
                kept = (now, channel_secrets.get(conn, name) or "")
            with self._credentials_lock:
                self._credentials[name] = kept
        return kept[1]

    def _render(self, source: str, context: dict[str, Any]) -> str:
        with self._compiled_lock:
            template = self._compiled.get(source)
        if template is None:
            template = self.templates.from_string(source)
            with self._compiled_lock:
                if len(self._compiled) >= 256:
                    self._compiled.clear()
                self._compiled[source] = template
        return template.render(context)

    def close(self) -> None:
        self.http.close()

    def _may_contact(self, customer_id: str, channel: str, purpose: str) -> None:
        """``Refused`` unless ``security.consent`` allows the contact now."""
        try:
            with self.ws.control.read() as conn:
                found = consent.decide(conn, customer_id, channel,
                                       purpose)  # type: ignore[arg-type]
        except TierwiseError as exc:  # an unknown channel or purpose: never a guess
            raise Refused(f"consent cannot be checked: {exc}") from None
        if not found.allowed:
            raise Refused(found.reason)

    def deliver(self, row: Any) -> None:
        payload = json.loads(row.payload)
        action = payload["action"]
        if row.action in TO_CUSTOMERS and action.get("purpose", "marketing") == "marketing":
            self._mind_the_customer(row)
            try:
                getattr(self, f"_{row.action}")(row, payload["event"], action)
            except BaseException:
                with self._contacts_lock:  # not sent: it does not count
                    self._contacts.get(row.customer_id, {}).pop(row.outbox_id, None)
                raise
        else:
            getattr(self, f"_{row.action}")(row, payload["event"], action)

    def _mind_the_customer(self, row: Any) -> None:
        """Quiet hours (the message waits) and the frequency cap (suppressed); on passing,
        the message is counted for the customer."""
        config = self.ws.config
        now = utcnow()
        until = quiet_until(config.quiet_hours, now, config.zone)
        if until is not None:
            raise Later(f"quiet hours {config.quiet_hours}: waits until "
                        f"{until.strftime('%H:%M')}", (until - now).total_seconds())
        if not config.contact_cap:
            return
        limit, days = config.contact_cap["messages"], config.contact_cap["days"]
        since = now - timedelta(days=days)
        with self.ws.control.read() as conn:
            stored = outbox_store.contacted(conn, row.customer_id, since, TO_CUSTOMERS)
        with self._contacts_lock:
            # The outbox has a message once its round settled (seconds): older ones are
            # only kept here until then.
            settled = now - SETTLED_WITHIN
            if len(self._contacts) > 10_000:
                self._contacts = {c: kept for c, kept in self._contacts.items()
                                  if any(at >= settled for at in kept.values())}
            mine = self._contacts.setdefault(row.customer_id, {})
            for outbox_id in [i for i, at in mine.items() if at < settled]:
                del mine[outbox_id]
            if len(stored | set(mine)) >= limit:
                raise Refused(f"frequency cap: {limit} messages in {days} days reached "
                              "(contact_cap)")
            mine[row.outbox_id] = now

    def cost(self, row: Any) -> float | None:
        """What delivering ``row`` cost, by the channel's ``message_costs`` (None: no cost
        set, or a task or tag)."""
        key = channel_key(json.loads(row.payload)["action"])
        return self.ws.config.message_costs.get(key) if key else None

    # -- channels ------------------------------------------------------------------------
    def _webhook(self, row: Any, event: dict[str, Any], action: dict[str, Any]) -> None:
        if action.get("channel"):
            self._may_contact(row.customer_id, action["channel"], "service")
        if self._secret is None:
            self._secret = webhook_secret(self.ws)
        try:
            target = targets.check(action["url"], self.ws.config.webhook_allowed_targets)
        except targets.TargetRefused as exc:
            raise Refused(str(exc)) from None
        except OSError as exc:
            raise Retry(f"cannot resolve the webhook's host: {exc}") from None
        self.pacer.take(channel_key(action))
        body = json.dumps(event, ensure_ascii=False, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key":
                   row.idempotency_key, "X-Tierwise-Event": event["event"],
                   SIGNATURE_HEADER: sign(self._secret, body),
                   "User-Agent": USER_AGENT, "Host": target.host_header()}
        try:
            # To the address that was checked: a second lookup could answer differently.
            answer = self.http.post(target.pinned_url(), content=body, headers=headers,
                                    extensions={"sni_hostname": target.host})
        except httpx.HTTPError as exc:
            raise Retry(f"{type(exc).__name__}: {exc}") from None
        if not 200 <= answer.status_code < 300:
            raise Retry(f"HTTP {answer.status_code} {answer.reason_phrase}".strip(),
                        reply=answer.text[:200])

    def _email(self, row: Any, event: dict[str, Any], action: dict[str, Any]) -> None:
        self._may_contact(row.customer_id, "email", action.get("purpose", "marketing"))
        with self.ws.control.read() as conn:
            customer = customer_store.get(conn, row.customer_id)
        if customer is None or not customer.get("email"):
            raise Refused("the customer has no e-mail address")
        template = self._in_language(customer, action["templates"])
        # marketing mail carries a link that unsubscribes from e-mail (and the headers
        # mail clients show as their own unsubscribe button, RFC 2369 / 8058)
        leave = unsubscribe.link(self.ws, row.customer_id, "email") \
            if action.get("purpose", "marketing") == "marketing" else None
        context = {"customer": customer, "event": event, "segment": event.get("segment"),
                   "unsubscribe_url": leave or ""}
        message = EmailMessage()
        message["Subject"] = self._render(template["subject"], context)
        message["From"] = self.ws.config.mail_from
        message["To"] = customer["email"]
        message["Message-ID"] = f"<{row.idempotency_key}@tierwise>"
        message["X-Tierwise-Idempotency-Key"] = row.idempotency_key
        if leave:
            message["List-Unsubscribe"] = f"<{leave}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        body = self._render(template["body"], context)
        if leave and leave not in body:  # the template did not place it: at the end
            body += ("\n\n退订：" if self.ws.config.locale == "zh-CN" else
                     "\n\nUnsubscribe: ") + leave
        message.set_content(body)
        self.pacer.take(channel_key(action))
        self._send(message)

    def _in_language(self, customer: dict[str, Any], versions: dict[str, Any]) -> Any:
        """The version for the customer's ``attributes.language``, else the workspace's
        locale, else the first there is."""
        attributes = json.loads(customer.get("attributes") or "{}")
        language = attributes.get("language") or self.ws.config.locale
        return versions.get(language) or versions.get(self.ws.config.locale) or \
            next(iter(versions.values()))

    def _send(self, message: EmailMessage) -> None:
        send_mail(self.ws.config, message)

    def _task(self, row: Any, event: dict[str, Any], action: dict[str, Any]) -> None:
        now = utcnow()
        due = action.get("due_hours")
        with self.ws.control.write() as conn:
            task_store.create_once(
                conn, row.idempotency_key, customer_id=row.customer_id,
                role=action.get("role"), title=action["title"], body=action.get("body"),
                source=row.source, priority=action.get("priority", "normal"),
                due_at=now + timedelta(hours=due) if due else None, at=now)

    def _notify(self, row: Any, event: dict[str, Any], action: dict[str, Any]) -> None:
        robot = self.ws.config.robots.get(action["robot"])
        if robot is None:
            raise Failed(f"no robot {action['robot']!r} in tierwise.toml's robots: add it "
                         "and replay the delivery")
        url = self.credential(robot["url_env"])
        if not url:
            raise Retry(f"${robot['url_env']} (robot {action['robot']!r}'s address) is not "
                        "set, in the environment or `tierwise secrets`: the message waits "
                        "until it is")
        secret = self.credential(robot["secret_env"]) if robot.get("secret_env") else ""
        if robot.get("secret_env") and not secret:
            raise Retry(f"${robot['secret_env']} (robot {action['robot']!r}'s signing secret) "
                        "is not set, in the environment or `tierwise secrets`: the message "
                        "waits until it is")
        self._reachable(url, f"robot {action['robot']!r}")
        text = self._robot_text(row, event, action)
        platform = robots.PLATFORMS[robot["platform"]]
        self.pacer.take(channel_key(action))
        address, body = platform.request(url, text, secret, time.time())
        self._post_judged(platform.outcome, address,
                          content=json.dumps(body, ensure_ascii=False).encode(),
                          headers={"Content-Type": "application/json; charset=utf-8"})

    def _reachable(self, url: str, what: str) -> None:
        """A provider's address may be reached (``security.targets``: public, or allowed);
        a refused one is dead until the setting is fixed, an unresolved one retried."""
        try:
            targets.check(url, self.ws.config.webhook_allowed_targets)
        except targets.TargetRefused as exc:
            raise Failed(f"{what}: {exc}") from None
        except OSError as exc:
            raise Retry(f"{what}: cannot resolve the host: {exc}") from None

    def _post_judged(self, judge: Callable[[int, str], tuple[str, str]], url: str, *,
                     content: bytes, headers: dict[str, str]) -> None:
        """Post to a provider and act on its answer as ``judge`` reads it (``ok``,
        ``retry`` or ``failed``, and why)."""
        try:
            answer = self.http.post(url, content=content,
                                    headers={**headers, "User-Agent": USER_AGENT})
        except httpx.HTTPError as exc:
            raise Retry(f"{type(exc).__name__}: {exc}") from None
        outcome, reason = judge(answer.status_code, answer.text)
        if outcome == "retry":
            raise Retry(reason, reply=answer.text[:200])
        if outcome == "failed":
            raise Failed(reason, reply=answer.text[:200])

    def _sms(self, row: Any, event: dict[str, Any], action: dict[str, Any]) -> None:
        self._may_contact(row.customer_id, "sms", action.get("purpose", "marketing"))
        sender = self.ws.config.sms_senders.get(action["sender"])
        if sender is None:
            raise Failed(f"no SMS sender {action['sender']!r} in tierwise.toml's sms_senders: "
                         "add it and replay the delivery")
        credentials = {}
        for key in ("key_id_env", "secret_env"):
            credentials[key] = self.credential(sender[key])
            if not credentials[key]:
                raise Retry(f"${sender[key]} (SMS sender {action['sender']!r}'s "
                            f"{'key id' if key == 'key_id_env' else 'secret'}) is not set, in "
                            "the environment or `tierwise secrets`: the message waits until "
                            "it is")
        provider = sms.PROVIDERS[sender["provider"]]
        url = self.credential(sender["url_env"]) if sender.get("url_env") else ""
        url = url or sms.ENDPOINTS[provider.name]
        self._reachable(url, f"SMS sender {action['sender']!r}")
        with self.ws.control.read() as conn:
            customer = customer_store.get(conn, row.customer_id)
        if customer is None or not customer.get("phone"):
            raise Refused("the customer has no phone number")
        phone, flag = phone_cleaner(self.ws.config.phone_region)(str(customer["phone"]))
        if flag == "flag_phone_invalid":
            raise Refused("the customer's phone number is not a valid number")
        context = {"customer": customer, "event": event, "segment": event.get("segment")}
        template = action["template"]
        if isinstance(template, dict):
            template = self._in_language(customer, template)
        message = sms.Message(
            phone=phone, sign_name=sender["sign_name"], template=template,
            params={k: self._render(v, context) for k, v in action.get("params", {}).items()},
            reference=row.idempotency_key)
        request = provider.request(url, message, sms.Credentials(
            credentials["key_id_env"], credentials["secret_env"], sender.get("region", ""),
            sender.get("app_id", "")), datetime.now(UTC))
        self.pacer.take(channel_key(action))
        self._post_judged(provider.outcome, request.url, content=request.body,
                          headers=request.headers)

    def _robot_text(self, row: Any, event: dict[str, Any], action: dict[str, Any]) -> str:
        """The message: the action's template in the workspace's language, else the
        built-in one — who (masked), why, and the link to their 360 page."""
        lang = self.ws.config.locale
        with self.ws.control.read() as conn:
            customer = customer_store.get(conn, row.customer_id) or {
                "customer_id": row.customer_id}
        shown = {k: v for k, v in customer.items() if not k.endswith("_hash")}
        self.ws.personal_data.mask_customer(shown)
        base = self.ws.config.dashboard_url.rstrip("/")
        link = f"{base}/customers/{row.customer_id}" if base else ""
        reason = robots.reason(event, lang)
        context = {"customer": shown, "event": event, "segment": event.get("segment"),
                   "reason": reason, "link": link}
        template = action.get("text", {}).get(lang) or next(iter(
            action.get("text", {}).values()), None)
        if template:
            return self._render(template, context)
        return robots.default_text(shown, reason, link, lang)

    def _tag(self, row: Any, event: dict[str, Any], action: dict[str, Any]) -> None:
        with self.ws.control.write() as conn:
            current = customer_store.tags_of(conn, row.customer_id)
            if current is None:
                raise Refused("no such customer (erased or merged)")
            tags = list(current)
            wanted = action["tag"]
            if action.get("op", "add") == "add" and wanted not in tags:
                tags.append(wanted)
            elif action.get("op") == "remove" and wanted in tags:
                tags.remove(wanted)
            else:
                return
            customer_store.set_fields(conn, row.customer_id,
                                      {"tags": json.dumps(tags, ensure_ascii=False)})


__all__ = ["Channels", "Failed", "Refused", "Retry", "sign", "verify", "webhook_secret"]
