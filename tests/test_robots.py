"""Team chat robots (企业微信, 钉钉, 飞书): ``notify`` actions through the outbox to local
fakes that check each request the way the platform documents it — the address, the
signature, the body — and answer as the platform does, busy and refusing included."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from tests.api_helpers import Served, build
from tests.receivers import serving
from tests.test_actions import _define, _deliver, _rows

import tierwise
from tierwise.actions import dispatch, robots
from tierwise.config import WorkspaceConfig
from tierwise.errors import TierwiseError, WorkspaceError
from tierwise.segments import membership

SECRET = "SEC0123456789abcdef"
KEY = "robot-key-1"


@dataclass
class Fake:
    """A platform's robot endpoint: checks key and signature, records what it accepted."""

    platform: str
    url: str = ""
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    #: Answers to give first (JSON bodies), e.g. "busy" replies.
    queued: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def judge(self, query: dict[str, list[str]], body: dict[str, Any]) -> dict[str, Any]:
        if self.platform == "wecom":
            if query.get("key") != [KEY]:
                return {"errcode": 93000, "errmsg": "invalid webhook url"}
            ok = body.get("msgtype") == "markdown" and body["markdown"].get("content")
            return {"errcode": 0, "errmsg": "ok"} if ok else {"errcode": 40008,
                                                              "errmsg": "invalid message type"}
        if self.platform == "dingtalk":
            timestamp, sign = query.get("timestamp", [""])[0], query.get("sign", [""])[0]
            expected = base64.b64encode(hmac.new(
                SECRET.encode(), f"{timestamp}\n{SECRET}".encode(), hashlib.sha256).digest())
            if query.get("access_token") != [KEY] or sign.encode() != expected:
                return {"errcode": 310000, "errmsg": "sign not match"}
            ok = body.get("msgtype") == "markdown" and body["markdown"].get("title")
            return {"errcode": 0, "errmsg": "ok"} if ok else {"errcode": 40035,
                                                              "errmsg": "missing param"}
        timestamp, sign = str(body.get("timestamp", "")), str(body.get("sign", ""))
        expected = base64.b64encode(hmac.new(f"{timestamp}\n{SECRET}".encode(), b"",
                                             hashlib.sha256).digest()).decode()
        if sign != expected:
            return {"code": 19021, "msg": "sign match fail or timestamp is not within one "
                                         "hour from current time"}
        ok = body.get("msg_type") == "text" and body["content"].get("text")
        return {"code": 0, "msg": "success"} if ok else {"code": 9499, "msg": "Bad Request"}


@contextmanager
def fake(platform: str) -> Iterator[Fake]:
    found = Fake(platform)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            query = parse_qs(urlsplit(self.path).query)
            with found.lock:
                answer = found.queued.pop(0) if found.queued else found.judge(query, body)
                ok = answer.get("errcode", answer.get("code")) == 0
                (found.accepted if ok else found.refused).append(
                    {"query": query, "body": body, "answer": answer})
            raw = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as port:
        found.url = {"wecom": f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key={KEY}",
                     "dingtalk": f"http://127.0.0.1:{port}/robot/send?access_token={KEY}",
                     "feishu": f"http://127.0.0.1:{port}/open-apis/bot/v2/hook/{KEY}"}[platform]
        yield found


ROBOTS = {name: {"platform": name, "url_env": f"TW_{name.upper()}_URL",
                 **({"secret_env": f"TW_{name.upper()}_SECRET"} if name != "wecom" else {})}
          for name in ("wecom", "dingtalk", "feishu")}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    found = build(tmp_path, webhook_allowed_targets=["127.0.0.1"], robots=ROBOTS,
                  dashboard_url="https://tw.example.com", locale="zh-CN")
    yield found
    found.ws.close()


def _trigger(ws: tierwise.Workspace, robot: str) -> None:
    _define(ws, "trigger", {"key": f"tell_{robot}",
                            "on": {"event": "enter", "segment": "vip_list"},
                            "action": {"type": "notify", "robot": robot}})


@pytest.mark.parametrize("platform", ["wecom", "dingtalk", "feishu"])
def test_a_robot_gets_a_signed_masked_message(served: Served, platform: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Entering a segment posts to the team's robot: signed as the platform documents,
    the customer masked, the reason and the link to their page in the workspace's
    language; "too many messages" is tried again, and the message arrives."""
    ws = served.ws
    with fake(platform) as robot:
        monkeypatch.setenv(f"TW_{platform.upper()}_URL", robot.url)
        monkeypatch.setenv(f"TW_{platform.upper()}_SECRET", SECRET)
        _trigger(ws, platform)
        robot.queued.append({"wecom": {"errcode": 45009, "errmsg": "api freq out of limit"},
                             "dingtalk": {"errcode": 130101, "errmsg": "send too fast"},
                             "feishu": {"code": 11232, "msg": "frequency limited"}}[platform])
        membership.edit_static(ws, "vip_list", add=["C002"], at=datetime.now(UTC))
        assert _deliver(ws) == {"retry": 1}
        [row] = _rows(ws, source=f"trigger:tell_{platform}")
        assert row.status == "pending" and "send too fast" in (row.last_error or "") \
            or "limit" in (row.last_error or "")
        assert _deliver(ws, datetime.now(UTC).replace(year=2100)) == {"delivered": 1}
        [sent] = robot.accepted
    text = json.dumps(sent["body"], ensure_ascii=False)
    assert "C002" in text and "进入分群 vip_list" in text
    assert "https://tw.example.com/customers/C002" in text
    assert "李四" not in text and "lisi@example.cn" not in text  # personal data masked


def test_refusals_are_dead_at_once_and_replayed(served: Served,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong signing secret is refused by the platform: the delivery is dead at once
    (retrying cannot help) and goes through once the secret is fixed and it is replayed;
    a robot whose address is not set waits; a robot not in the settings is refused when
    the trigger is saved."""
    ws = served.ws
    with fake("dingtalk") as robot:
        monkeypatch.setenv("TW_DINGTALK_URL", robot.url)
        monkeypatch.setenv("TW_DINGTALK_SECRET", "not-the-secret")
        _trigger(ws, "dingtalk")
        membership.edit_static(ws, "vip_list", add=["C003"], at=datetime.now(UTC))
        assert _deliver(ws) == {"dead": 1}
        [row] = _rows(ws, source="trigger:tell_dingtalk")
        assert row.status == "dead" and "310000" in row.last_error
        monkeypatch.setenv("TW_DINGTALK_SECRET", SECRET)
        dispatch.replay(ws, [row.outbox_id])
        assert _deliver(ws) == {"delivered": 1}
        assert len(robot.accepted) == 1 and len(robot.refused) == 1
    monkeypatch.delenv("TW_WECOM_URL", raising=False)
    _trigger(ws, "wecom")
    membership.edit_static(ws, "vip_list", add=["C002"], at=datetime.now(UTC))
    assert _deliver(ws) == {"retry": 2}  # the DingTalk fake is gone too: tried again later
    [waiting] = _rows(ws, source="trigger:tell_wecom")
    assert waiting.status == "pending"
    assert "TW_WECOM_URL" in waiting.last_error
    from tierwise.actions import catalog as automations
    from tierwise.segments.vocabulary import vocabulary

    model = automations.parse_definition("trigger", {
        "key": "nowhere", "on": {"event": "enter", "segment": "vip_list"},
        "action": {"type": "notify", "robot": "sales"}}, "test")
    with pytest.raises(TierwiseError, match="no 'sales' in tierwise.toml's robots"), \
            ws.control.write() as conn:
        automations.save(conn, "trigger", model, allowed_targets=[],
                         vocabulary=vocabulary(ws), robots=ws.config.robots)


def test_signatures_match_the_documented_examples() -> None:
    """The signing rules on fixed inputs (so a change in them shows), and a template the
    user wrote rendered with the masked customer."""
    assert robots.dingtalk_sign("secret", 1700000000000) == (
        "OuzzJR5%2BxZ4%2FEYwqtNt6sMYZQMTa%2FHEGvc9miJe7XzY%3D")
    assert robots.feishu_sign("secret", 1700000000) == (
        base64.b64encode(hmac.new(b"1700000000\nsecret", b"", hashlib.sha256).digest())
        .decode())
    assert robots.reason({"event": "tier.changed", "from": "B", "to": "A"}, "en") == \
        "tier B → A"
    assert robots.reason({"event": "something_new"}, "zh-CN") == "something_new"


def test_robot_settings_are_checked(tmp_path: Path) -> None:
    for robots_setting, needle in (
            ({"Sales": {"platform": "wecom", "url_env": "X"}}, "name"),
            ({"sales": {"platform": "slack", "url_env": "X"}}, "platform"),
            ({"sales": {"platform": "wecom", "url_env": "lower"}}, "url_env"),
            ({"sales": {"platform": "wecom", "url_env": "X", "token": "t"}}, "token")):
        with pytest.raises(TierwiseError, match=needle):
            tierwise.init(tmp_path / needle, robots=robots_setting)
    with pytest.raises(TierwiseError, match="dashboard_url"):
        tierwise.init(tmp_path / "url", dashboard_url="tw.example.com")


def test_the_message_template_is_the_users(served: Served,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ws = served.ws
    ws.config = replace(ws.config, locale="en")  # type: ignore[misc]
    with fake("feishu") as robot:
        monkeypatch.setenv("TW_FEISHU_URL", robot.url)
        monkeypatch.setenv("TW_FEISHU_SECRET", SECRET)
        _define(ws, "trigger", {"key": "own_words",
                                "on": {"event": "enter", "segment": "vip_list"},
                                "action": {"type": "notify", "robot": "feishu", "text": {
                                    "en": "VIP {{ customer.customer_id }} · {{ reason }} · "
                                          "{{ customer.name }} · {{ link }}",
                                    "zh-CN": "VIP {{ customer.customer_id }}"}}})
        membership.edit_static(ws, "vip_list", add=["C002"], at=datetime.now(UTC))
        assert _deliver(ws) == {"delivered": 1}
        [sent] = robot.accepted
    text = sent["body"]["content"]["text"]
    assert text.startswith("VIP C002 · entered segment vip_list · ")
    assert "李四" not in text and text.endswith("https://tw.example.com/customers/C002")


def test_a_rate_limit_makes_deliveries_wait_without_spending_attempts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over a channel's messages a minute (``rate_limits``; robots default to their
    platform's documented limit), a delivery waits for the minute to have room: pending,
    no attempt counted, sent later."""
    from tierwise.actions.channels import Channels, Later, Pacer

    served = build(tmp_path, webhook_allowed_targets=["127.0.0.1"], robots=ROBOTS,
                   rate_limits={"robot:wecom": 2}, locale="zh-CN")
    ws = served.ws
    assert Channels(ws).pacer.limits == {"robot:wecom": 2, "robot:dingtalk": 20,
                                         "robot:feishu": 100}
    with fake("wecom") as robot:
        monkeypatch.setenv("TW_WECOM_URL", robot.url)
        _trigger(ws, "wecom")
        # three customers enter (C001 and C004 were in the list already)
        membership.edit_static(ws, "vip_list", add=["C002", "C003"], remove=["C001"],
                               at=datetime.now(UTC))
        membership.edit_static(ws, "vip_list", add=["C001"], at=datetime.now(UTC))
        channels = Channels(ws)
        try:
            first = dict(dispatch.dispatch_due(ws, channels))
            assert first == {"delivered": 2, "later": 1}
            waiting = [r for r in _rows(ws, source="trigger:tell_wecom")
                       if r.status == "pending"]
            assert len(waiting) == 1 and all(r.attempts == 0 for r in waiting)
            assert all("limit of 2 a minute" in r.last_error for r in waiting)
            assert dict(dispatch.dispatch_due(ws, channels)) == {}  # not due yet
        finally:
            channels.close()
        assert len(robot.accepted) == 2
        # a minute later (a new dispatcher's count starts empty, as after a restart)
        assert _deliver(ws, datetime.now(UTC) + timedelta(minutes=2)) == {"delivered": 1}
        assert len(robot.accepted) == 3
    pacer = Pacer({"sms:shop": 1})
    pacer.take("sms:shop", now=100.0)
    with pytest.raises(Later) as later:
        pacer.take("sms:shop", now=130.0)
    assert later.value.seconds == pytest.approx(30.0)
    pacer.take("sms:shop", now=160.0)  # a minute after the first: room again
    pacer.take("webhook", now=160.0)  # no limit set
    with pytest.raises(WorkspaceError, match="rate_limits.robot:Sales"):
        WorkspaceConfig(rate_limits={"robot:Sales": 5})
    with pytest.raises(WorkspaceError, match="rate_limits.sms:shop = 0"):
        WorkspaceConfig(rate_limits={"sms:shop": 0})
    # a typo in a robot's or sender's name would limit nothing: refused, the names listed
    with pytest.raises(WorkspaceError, match="no 'shpo' in sms_senders; there are none"):
        WorkspaceConfig(rate_limits={"sms:shpo": 5})
    with pytest.raises(WorkspaceError, match="no 'wecon' in robots; there are dingtalk"):
        WorkspaceConfig(robots=ROBOTS, message_costs={"robot:wecon": 0.1})
