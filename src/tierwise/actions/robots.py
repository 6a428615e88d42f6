"""Team chat robots: how a ``notify`` action's message is addressed, signed and judged on
each platform, as each documents its custom group robot.

- **企业微信 (WeCom)**: ``POST`` the robot's address (its ``key`` in the query) with
  ``{"msgtype": "markdown", "markdown": {"content": …}}``; the answer's ``errcode`` is 0 when
  sent. No signature: the key is the secret.
- **钉钉 (DingTalk)**: with a signing secret, ``timestamp`` (milliseconds) and ``sign`` are
  added to the address's query — ``sign`` is Base64 of HMAC-SHA256 keyed with the secret
  over ``"{timestamp}\\n{secret}"``, URL-encoded; the body is ``{"msgtype": "markdown",
  "markdown": {"title": …, "text": …}}`` and ``errcode`` is 0 when sent.
- **飞书 (Feishu / Lark)**: with a signing secret, the body carries ``timestamp`` (seconds)
  and ``sign`` — Base64 of HMAC-SHA256 keyed with ``"{timestamp}\\n{secret}"`` over an empty
  message — beside ``{"msg_type": "text", "content": {"text": …}}``; ``code`` (or, from
  older robots, ``StatusCode``) is 0 when sent.

An answer that says "too many messages" or a server error is tried again later; a refused
key, signature or request is not (the delivery is dead until replayed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlsplit


def json_answer(text: str) -> dict[str, Any]:
    """A provider's JSON answer as a dict ({} when it is not one)."""
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


@dataclass(frozen=True)
class Platform:
    name: str
    #: Error codes that mean "too many messages now": tried again later.
    busy: frozenset[int]
    #: The answer's field holding the error code (0: sent).
    code_fields: tuple[str, ...] = ("errcode",)

    def request(self, url: str, text: str, secret: str, now: float
                ) -> tuple[str, dict[str, Any]]:
        """The address to post to and the JSON body, signed when there is a secret."""
        raise NotImplementedError

    def outcome(self, status: int, text: str) -> tuple[str, str]:
        """``ok``, ``retry`` or ``failed``, and why, from the HTTP status and the body."""
        if status >= 500 or status == 429:
            return "retry", f"HTTP {status}"
        if status >= 400:
            return "failed", f"HTTP {status}: the robot refused the request"
        answer = json_answer(text)
        code = next((answer[f] for f in self.code_fields if f in answer), None)
        if code == 0:
            return "ok", ""
        message = str(answer.get("errmsg") or answer.get("msg") or answer.get(
            "StatusMessage") or text[:120])
        if not isinstance(code, int):
            return "retry", f"{self.name}: an answer without an error code: {text[:120]}"
        if code in self.busy:
            return "retry", f"{self.name} {code}: {message}"
        return "failed", f"{self.name} {code}: {message}"


class WeCom(Platform):
    def request(self, url: str, text: str, secret: str, now: float
                ) -> tuple[str, dict[str, Any]]:
        return url, {"msgtype": "markdown", "markdown": {"content": text}}


def dingtalk_sign(secret: str, timestamp: int) -> str:
    """DingTalk's ``sign`` for ``timestamp`` (milliseconds), URL-encoded."""
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


class DingTalk(Platform):
    def request(self, url: str, text: str, secret: str, now: float
                ) -> tuple[str, dict[str, Any]]:
        if secret:
            timestamp = int(now * 1000)
            joiner = "&" if urlsplit(url).query else "?"
            url = f"{url}{joiner}timestamp={timestamp}&sign={dingtalk_sign(secret, timestamp)}"
        title = text.splitlines()[0][:60] if text else "tierwise"
        return url, {"msgtype": "markdown", "markdown": {"title": title, "text": text}}


def feishu_sign(secret: str, timestamp: int) -> str:
    """Feishu's ``sign`` for ``timestamp`` (seconds)."""
    digest = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class Feishu(Platform):
    def request(self, url: str, text: str, secret: str, now: float
                ) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": text}}
        if secret:
            timestamp = int(now)
            body = {"timestamp": str(timestamp), "sign": feishu_sign(secret, timestamp),
                    **body}
        return url, body


PLATFORMS: dict[str, Platform] = {
    # 45009: the robot's rate limit (20 messages a minute)
    "wecom": WeCom("wecom", frozenset({45009, -1})),
    # 130101: sending too fast; -1: the system is busy
    "dingtalk": DingTalk("dingtalk", frozenset({130101, -1})),
    # 11232: frequency limited; 9499 is a malformed request (not retried)
    "feishu": Feishu("feishu", frozenset({11232}), ("code", "StatusCode")),
}

_REASONS = {  # by the event names of outbox payloads (``actions.outbox.EVENT_NAMES``)
    "segment.entered": ("进入分群 {segment}", "entered segment {segment}"),
    "segment.exited": ("离开分群 {segment}", "left segment {segment}"),
    "tier.changed": ("等级 {from} → {to}", "tier {from} → {to}"),
    "lifecycle.changed": ("生命周期 {from} → {to}", "lifecycle {from} → {to}"),
    "lead.qualified": ("线索合格（评分 {score}）", "qualified lead (score {score})"),
    "ticket.sla_breached": ("工单 {ticket_id} 超出 SLA", "ticket {ticket_id} breached its SLA"),
    "playbook.step": ("行动手册 {playbook} 的一步", "a step of playbook {playbook}"),
}


def reason(event: dict[str, Any], lang: str) -> str:
    """Why the message is sent, in ``lang``, from the event's own fields."""
    zh, en = _REASONS.get(str(event.get("event")), ("{event}", "{event}"))
    template = zh if lang == "zh-CN" else en

    class Missing(dict[str, Any]):
        def __missing__(self, key: str) -> str:
            return "—"

    return template.format_map(Missing({k: v for k, v in event.items() if v is not None}))


def default_text(customer: dict[str, Any], why: str, link: str, lang: str) -> str:
    """The built-in message: the customer (masked), why, and the link to their page."""
    who = customer.get("customer_id", "")
    name = customer.get("name")
    if lang == "zh-CN":
        head = f"客户 {who}" + (f"（{name}）" if name else "") + f"：{why}"
        return head + (f"\n[查看客户]({link})" if link else "")
    head = f"Customer {who}" + (f" ({name})" if name else "") + f": {why}"
    return head + (f"\n[Open the customer]({link})" if link else "")


__all__ = ["PLATFORMS", "Platform", "default_text", "dingtalk_sign", "feishu_sign", "reason"]
