"""Text messages through Alibaba Cloud SMS and Tencent Cloud SMS: ``sms`` actions through the
outbox to local fakes that check each request the way the provider documents it — the
signature (recomputed here from the documentation, not with the product's code), the
parameters, the headers — and answer as the provider does: accepted, busy, refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from tests.api_helpers import Served, build
from tests.receivers import serving
from tests.test_actions import _define, _deliver, _rows

from tierwise.actions import dispatch
from tierwise.errors import TierwiseError, WorkspaceError
from tierwise.security.consent import set_preference
from tierwise.segments import membership
from tierwise.store.outbox import cost_of_source

KEY_ID = "LTAI5tExampleKeyId"
SECRET = "exampleSecret0123456789abcdef"
APP_ID = "1400000001"
SIGN = "某某商城"


def _rfc3986(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


@dataclass
class Fake:
    provider: str
    url: str = ""
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    #: (HTTP status, JSON body) to answer first.
    queued: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def aliyun(self, headers: Any, raw: bytes) -> tuple[int, dict[str, Any], dict[str, Any]]:
        """Alibaba Cloud's RPC signature, as its documentation describes it."""
        form = dict(urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True))
        given = form.pop("Signature", "")
        text = "&".join(f"{_rfc3986(k)}={_rfc3986(v)}" for k, v in sorted(form.items()))
        to_sign = "POST&%2F&" + _rfc3986(text)
        expected = base64.b64encode(hmac.new((SECRET + "&").encode(), to_sign.encode(),
                                             hashlib.sha1).digest()).decode()
        if headers["Content-Type"] != "application/x-www-form-urlencoded":
            return 400, {"Code": "MissingParameter", "Message": "form expected"}, form
        if form.get("AccessKeyId") != KEY_ID:
            return 404, {"Code": "InvalidAccessKeyId.NotFound",
                         "Message": "Specified access key is not found."}, form
        if given != expected:
            return 400, {"Code": "SignatureDoesNotMatch",
                         "Message": "Specified signature is not matched with our "
                                    "calculation."}, form
        if form.get("SignatureNonce") in self.nonces:
            return 400, {"Code": "SignatureNonceUsed",
                         "Message": "The request signature nonce has been used."}, form
        self.nonces.add(form["SignatureNonce"])
        fixed = {"Action": "SendSms", "Version": "2017-05-25", "Format": "JSON",
                 "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0"}
        if any(form.get(k) != v for k, v in fixed.items()) or not form.get("Timestamp", "") \
                .endswith("Z"):
            return 400, {"Code": "InvalidParameter", "Message": "bad common parameter"}, form
        if form.get("SignName") != SIGN:
            return 200, {"Code": "isv.SMS_SIGNATURE_ILLEGAL",
                         "Message": "该账号下找不到对应签名"}, form
        if not form.get("PhoneNumbers", "").isdigit():
            return 200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"}, form
        return 200, {"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0",
                     "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990"}, form

    def tencent(self, headers: Any, raw: bytes) -> tuple[int, dict[str, Any], dict[str, Any]]:
        """Tencent Cloud's TC3-HMAC-SHA256, as its documentation describes it."""
        body = json.loads(raw)
        auth = headers.get("Authorization", "")
        timestamp = headers.get("X-TC-Timestamp", "0")
        date = datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d")
        canonical = (f"POST\n/\n\ncontent-type:{headers['Content-Type']}\n"
                     f"host:{headers['Host']}\nx-tc-action:{headers['X-TC-Action'].lower()}\n"
                     f"\ncontent-type;host;x-tc-action\n{hashlib.sha256(raw).hexdigest()}")
        scope = f"{date}/sms/tc3_request"
        to_sign = (f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n"
                   f"{hashlib.sha256(canonical.encode()).hexdigest()}")
        k = hmac.new(("TC3" + SECRET).encode(), date.encode(), hashlib.sha256).digest()
        k = hmac.new(k, b"sms", hashlib.sha256).digest()
        k = hmac.new(k, b"tc3_request", hashlib.sha256).digest()
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        expected = (f"TC3-HMAC-SHA256 Credential={KEY_ID}/{scope}, "
                    f"SignedHeaders=content-type;host;x-tc-action, Signature={signature}")

        def error(code: str, message: str) -> dict[str, Any]:
            return {"Response": {"Error": {"Code": code, "Message": message},
                                 "RequestId": "a0aabda6-cf91-4f3e-a73b-abc123"}}

        if headers.get("X-TC-Action") != "SendSms" or headers.get(
                "X-TC-Version") != "2021-01-11" or not headers.get("X-TC-Region"):
            return 200, error("InvalidParameter", "bad common header"), body
        if auth != expected:
            return 200, error("AuthFailure.SignatureFailure",
                              "The provided credentials could not be validated."), body
        if body.get("SmsSdkAppId") != APP_ID:
            return 200, error("UnauthorizedOperation.SmsSdkAppIdVerifyFail",
                              "SmsSdkAppId verify failed."), body
        if body.get("SignName") != SIGN:
            return 200, error("FailedOperation.SignatureIncorrectOrUnapproved",
                              "signature format is incorrect or signature is not approved"), body
        [phone] = body["PhoneNumberSet"]
        if not phone.startswith("+") or not phone[1:].isdigit():
            status = [{"Code": "InvalidParameterValue.IncorrectPhoneNumber",
                       "Message": "invalid mobile number", "PhoneNumber": phone}]
        else:
            status = [{"SerialNo": "5000:1045710669157053657849499619", "PhoneNumber": phone,
                       "Fee": 1, "SessionContext": body.get("SessionContext", ""),
                       "Code": "Ok", "Message": "send success", "IsoCode": "CN"}]
        return 200, {"Response": {"SendStatusSet": status,
                                  "RequestId": "a0aabda6-cf91-4f3e-a73b-abc123"}}, body


@contextmanager
def fake(provider: str) -> Iterator[Fake]:
    found = Fake(provider)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            with found.lock:
                status, answer, request = getattr(found, provider)(self.headers, raw)
                if found.queued and status == 200 and answer.get("Code", "OK") == "OK" \
                        and "Error" not in answer.get("Response", {}):
                    status, answer = found.queued.pop(0)
                else:
                    ok = answer.get("Code") == "OK" or answer.get("Response", {}).get(
                        "SendStatusSet", [{}])[0].get("Code") == "Ok"
                    (found.accepted if ok else found.refused).append(
                        {"request": request, "answer": answer})
            raw_answer = json.dumps(answer, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(raw_answer)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as port:
        found.url = f"http://127.0.0.1:{port}/"
        yield found


SENDERS = {
    "shop": {"provider": "aliyun", "sign_name": SIGN, "key_id_env": "TW_ALIYUN_ID",
             "secret_env": "TW_ALIYUN_SECRET", "url_env": "TW_ALIYUN_URL"},
    "tx": {"provider": "tencent", "sign_name": SIGN, "key_id_env": "TW_TENCENT_ID",
           "secret_env": "TW_TENCENT_SECRET", "url_env": "TW_TENCENT_URL", "app_id": APP_ID},
}
SENDER_OF = {"aliyun": "shop", "tencent": "tx"}
COSTS = {"sms:shop": 0.045, "sms:tx": 0.05}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    found = build(tmp_path, webhook_allowed_targets=["127.0.0.1"], sms_senders=SENDERS,
                  message_costs=COSTS, locale="zh-CN")
    yield found
    found.ws.close()


def _trigger(served: Served, provider: str, purpose: str = "marketing") -> None:
    _define(served.ws, "trigger", {
        "key": f"text_{provider}", "on": {"event": "enter", "segment": "vip_list"},
        "action": {"type": "sms", "sender": SENDER_OF[provider],
                   # one template per language: the workspace's (zh-CN) is picked
                   "template": {"zh-CN": "SMS_153055065", "en": "SMS_153055066"}
                   if provider == "aliyun" else "1234567",
                   "params": {"name": "{{ customer.name }}", "segment": "{{ segment }}"},
                   "purpose": purpose}})


def _credentials(monkeypatch: pytest.MonkeyPatch, provider: str, url: str,
                 secret: str = SECRET) -> None:
    name = provider.upper()
    monkeypatch.setenv(f"TW_{name}_ID", KEY_ID)
    monkeypatch.setenv(f"TW_{name}_SECRET", secret)
    monkeypatch.setenv(f"TW_{name}_URL", url)


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
def test_a_text_message_is_signed_as_the_provider_documents(
        served: Served, provider: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entering a segment sends the template with the customer's fields to their number,
    signed as documented; "too many now" is tried again and the message arrives once;
    the outbox's idempotency key goes with it."""
    ws = served.ws
    set_preference(ws, "C002", "sms", consent=True)
    with fake(provider) as server:
        _credentials(monkeypatch, provider, server.url)
        _trigger(served, provider)
        server.queued.append((200, {"Code": "isv.BUSINESS_LIMIT_CONTROL",
                                    "Message": "触发分钟级流控Permits:1"})
                             if provider == "aliyun" else
                             (200, {"Response": {"Error": {
                                 "Code": "LimitExceeded.PhoneNumberThirtySecondLimit",
                                 "Message": "30 seconds limit"}, "RequestId": "r"}}))
        membership.edit_static(ws, "vip_list", add=["C002"], at=datetime.now(UTC))
        assert _deliver(ws) == {"retry": 1}
        [row] = _rows(ws, source=f"trigger:text_{provider}")
        assert row.status == "pending" and "limit" in row.last_error.lower()
        assert _deliver(ws, datetime.now(UTC).replace(year=2100)) == {"delivered": 1}
        [sent] = server.accepted
    # what it cost is recorded with the delivery, once (the busy attempt cost nothing)
    [row] = _rows(ws, source=f"trigger:text_{provider}")
    assert row.cost == COSTS[f"sms:{SENDER_OF[provider]}"]
    with ws.control.read() as conn:
        assert cost_of_source(conn, f"trigger:text_{provider}") == (1, row.cost)
    request = sent["request"]
    if provider == "aliyun":
        assert request["PhoneNumbers"] == "13900139000"  # mainland: no country code
        assert request["TemplateCode"] == "SMS_153055065"
        assert json.loads(request["TemplateParam"]) == {"name": "李四", "segment": "vip_list"}
        assert request["OutId"] == row.idempotency_key[:64]
    else:
        assert request["PhoneNumberSet"] == ["+8613900139000"]
        assert request["TemplateId"] == "1234567"
        assert request["TemplateParamSet"] == ["李四", "vip_list"]  # in the template's order
        assert request["SessionContext"] == row.idempotency_key


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
def test_refusals_are_dead_at_once_and_replayed(served: Served, provider: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong secret is refused by the provider: dead at once, sent once fixed and
    replayed; a provider's failure is tried again."""
    ws = served.ws
    set_preference(ws, "C002", "sms", consent=True)
    with fake(provider) as server:
        _credentials(monkeypatch, provider, server.url, secret="not-the-secret")
        _trigger(served, provider)
        membership.edit_static(ws, "vip_list", add=["C002"], at=datetime.now(UTC))
        assert _deliver(ws) == {"dead": 1}
        [row] = _rows(ws, source=f"trigger:text_{provider}")
        assert row.status == "dead"
        assert ("SignatureDoesNotMatch" if provider == "aliyun"
                else "AuthFailure.SignatureFailure") in row.last_error
        _credentials(monkeypatch, provider, server.url)
        server.queued.append((500, {"Code": "isp.SYSTEM_ERROR", "Message": "isp.SYSTEM_ERROR"})
                             if provider == "aliyun" else
                             (200, {"Response": {"Error": {"Code": "InternalError.Timeout",
                                                           "Message": "timeout"},
                                                 "RequestId": "r"}}))
        dispatch.replay(ws, [row.outbox_id])
        assert _deliver(ws) == {"retry": 1}
        assert _deliver(ws, datetime.now(UTC).replace(year=2100)) == {"delivered": 1}
        assert len(server.accepted) == 1 and len(server.refused) == 1


def test_consent_numbers_and_settings_are_checked(served: Served,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """No consent for marketing texts: suppressed, nothing sent; service texts need only
    no opt-out; a customer without a number is suppressed; a missing credential waits; a
    sender not in the settings is refused when the trigger is saved, and a bad setting
    when the workspace opens."""
    ws = served.ws
    membership.edit_static(ws, "vip_list", remove=["C001", "C004"], at=datetime.now(UTC))
    with fake("aliyun") as server:
        _credentials(monkeypatch, "aliyun", server.url)
        _trigger(served, "aliyun")
        membership.edit_static(ws, "vip_list", add=["C002"], at=datetime.now(UTC))
        assert _deliver(ws) == {"suppressed": 1}
        assert server.accepted == [] and server.refused == []
        _define(ws, "trigger", {
            "key": "text_aliyun", "on": {"event": "enter", "segment": "vip_list"},
            "action": {"type": "sms", "sender": "shop", "template": "SMS_1",
                       "purpose": "service"}})
        set_preference(ws, "C001", "sms", consent=False)  # opted out
        set_preference(ws, "C003", "sms", consent=True)  # but has no number
        membership.edit_static(ws, "vip_list", add=["C001", "C003", "C004"],
                               at=datetime.now(UTC))
        assert _deliver(ws) == {"delivered": 1, "suppressed": 2}
        assert server.accepted[0]["request"]["PhoneNumbers"] == "14155550100"  # +1: kept
        assert "phone" in _rows(ws, customer_id="C003")[-1].last_error
        monkeypatch.delenv("TW_ALIYUN_SECRET")
        membership.edit_static(ws, "vip_list", remove=["C002"], at=datetime.now(UTC))
        membership.edit_static(ws, "vip_list", add=["C002"], at=datetime.now(UTC))
        assert _deliver(ws) == {"retry": 1}
        assert "TW_ALIYUN_SECRET" in _rows(ws, customer_id="C002")[-1].last_error
    from tierwise.actions import catalog as automations
    from tierwise.segments.vocabulary import vocabulary

    model = automations.parse_definition("trigger", {
        "key": "nowhere", "on": {"event": "enter", "segment": "vip_list"},
        "action": {"type": "sms", "sender": "other", "template": "SMS_1"}}, "test")
    with pytest.raises(TierwiseError, match="no 'other' in tierwise.toml's sms_senders"), \
            ws.control.write() as conn:
        automations.save(conn, "trigger", model, allowed_targets=[],
                         vocabulary=vocabulary(ws), senders=ws.config.sms_senders)
    with pytest.raises(TierwiseError, match="template"):
        automations.parse_definition("trigger", {
            "key": "bad", "on": {"event": "enter", "segment": "vip_list"},
            "action": {"type": "sms", "sender": "shop", "template": "短信模板"}}, "test")
    from tierwise.config import WorkspaceConfig

    with pytest.raises(WorkspaceError, match="app_id"):
        WorkspaceConfig(sms_senders={"tx": {**SENDERS["tx"], "app_id": ""}})
    with pytest.raises(WorkspaceError, match="provider 'twilio'"):
        WorkspaceConfig(sms_senders={"x": {**SENDERS["shop"], "provider": "twilio"}})



def test_quiet_hours_and_the_frequency_cap(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A marketing text due in the quiet hours waits for their end (no attempt counted);
    over the cap across e-mail and SMS it is suppressed — also when the messages over it
    go out in the same round; service texts are held by neither."""
    from zoneinfo import ZoneInfo

    from tierwise.actions.channels import quiet_until

    zone = ZoneInfo("Asia/Shanghai")
    local = datetime.now(zone)
    window = f"{(local.hour - 1) % 24:02d}:00-{(local.hour + 2) % 24:02d}:00"
    served = build(tmp_path / "quiet", webhook_allowed_targets=["127.0.0.1"],
                   sms_senders=SENDERS, quiet_hours=window)
    ws = served.ws
    set_preference(ws, "C002", "sms", consent=True)
    with fake("aliyun") as server:
        _credentials(monkeypatch, "aliyun", server.url)
        _trigger(served, "aliyun")
        membership.edit_static(ws, "vip_list", add=["C002"], at=datetime.now(UTC))
        assert _deliver(ws) == {"later": 1}
        [row] = _rows(ws, source="trigger:text_aliyun")
        assert row.status == "pending" and row.attempts == 0
        assert "quiet hours" in row.last_error
        assert row.next_attempt_at.astimezone(zone).hour == (local.hour + 2) % 24
        assert server.accepted == []
    ws.close()

    served = build(tmp_path / "cap", webhook_allowed_targets=["127.0.0.1"],
                   sms_senders=SENDERS, contact_cap={"messages": 2, "days": 7})
    ws = served.ws
    set_preference(ws, "C002", "sms", consent=True)
    with fake("aliyun") as server:
        _credentials(monkeypatch, "aliyun", server.url)
        for n in range(3):  # three marketing texts on one entry, in one round
            _define(ws, "trigger", {
                "key": f"offer_{n}", "on": {"event": "enter", "segment": "vip_list"},
                "action": {"type": "sms", "sender": "shop", "template": f"SMS_{n}"}})
        _define(ws, "trigger", {
            "key": "notice", "on": {"event": "enter", "segment": "vip_list"},
            "action": {"type": "sms", "sender": "shop", "template": "SMS_9",
                       "purpose": "service"}})
        membership.edit_static(ws, "vip_list", add=["C002"], at=datetime.now(UTC))
        assert _deliver(ws) == {"delivered": 3, "suppressed": 1}
        capped = [r for r in _rows(ws, customer_id="C002") if r.status == "suppressed"]
        assert len(capped) == 1 and "frequency cap" in capped[0].last_error
        assert capped[0].source != "trigger:notice"
    ws.close()

    # the window's edges, across midnight
    at = datetime(2026, 12, 4, 22, 30, tzinfo=zone)
    assert quiet_until("21:00-08:00", at, zone) == datetime(2026, 12, 5, 8, 0, tzinfo=zone)
    assert quiet_until("21:00-08:00", at.replace(hour=7), zone) == at.replace(hour=8,
                                                                              minute=0)
    assert quiet_until("21:00-08:00", at.replace(hour=8, minute=0), zone) is None
    assert quiet_until("12:00-13:00", at.replace(hour=12), zone) == at.replace(hour=13,
                                                                               minute=0)
    with pytest.raises(WorkspaceError, match="quiet_hours"):
        from tierwise.config import WorkspaceConfig

        WorkspaceConfig(quiet_hours="9pm-8am")


def test_credentials_kept_in_the_workspace_encrypted(served: Served,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A sender's secret kept with `tierwise secrets set` (from standard input) signs the
    messages when the environment does not have it; the store holds only ciphertext; the
    list shows names, never values; an environment variable of the same name wins; key
    rotation re-encrypts it."""
    import sqlalchemy as sa
    from typer.testing import CliRunner

    from tierwise.cli.main import app
    from tierwise.security.rotation import rotate
    from tierwise.store.tables import channel_secrets

    ws = served.ws
    set_preference(ws, "C002", "sms", consent=True)
    runner = CliRunner()
    kept = runner.invoke(app, ["secrets", "set", "TW_ALIYUN_SECRET", "-w", str(ws.root)],
                         input=SECRET + "\n")
    assert kept.exit_code == 0, kept.output
    assert SECRET not in kept.output
    with ws.control.read() as conn:
        [stored] = conn.execute(sa.select(channel_secrets.c.value)).scalars().all()
    assert SECRET not in stored
    listed = runner.invoke(app, ["secrets", "list", "-w", str(ws.root)])
    assert "TW_ALIYUN_SECRET" in listed.output and SECRET not in listed.output
    assert runner.invoke(app, ["secrets", "set", "bad name", "-w", str(ws.root)],
                         input="x\n").exit_code != 0
    rotate(ws)  # the kept secret survives a key rotation
    with fake("aliyun") as server:
        _credentials(monkeypatch, "aliyun", server.url)
        monkeypatch.delenv("TW_ALIYUN_SECRET")
        _trigger(served, "aliyun")
        membership.edit_static(ws, "vip_list", add=["C002"], at=datetime.now(UTC))
        assert _deliver(ws) == {"delivered": 1}  # signed with the kept secret
        monkeypatch.setenv("TW_ALIYUN_SECRET", "not-the-secret")  # the environment wins
        membership.edit_static(ws, "vip_list", remove=["C002"], at=datetime.now(UTC))
        membership.edit_static(ws, "vip_list", add=["C002"], at=datetime.now(UTC))
        assert _deliver(ws) == {"dead": 1}
    assert runner.invoke(app, ["secrets", "delete", "TW_ALIYUN_SECRET", "-w", str(ws.root)]
                         ).exit_code == 0
    with ws.control.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(channel_secrets)
                            ).scalar() == 0


def test_a_senders_rate_limit_holds_texts_back(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``rate_limits`` on a sender: the text over the minute's limit waits (pending, no
    attempt counted); the provider saw only the first."""
    served = build(tmp_path, webhook_allowed_targets=["127.0.0.1"], sms_senders=SENDERS,
                   rate_limits={"sms:shop": 1})
    ws = served.ws
    for customer in ("C002", "C003"):
        set_preference(ws, customer, "sms", consent=True)
    with ws.control.write() as conn:  # C003 gets a number
        from tierwise.store import customers as customer_store

        customer_store.set_fields(conn, "C003", {"phone": "+8613700137000"})
    with fake("aliyun") as server:
        _credentials(monkeypatch, "aliyun", server.url)
        _trigger(served, "aliyun")
        membership.edit_static(ws, "vip_list", add=["C002", "C003"], at=datetime.now(UTC))
        assert _deliver(ws) == {"delivered": 1, "later": 1}
        [waiting] = [r for r in _rows(ws, source="trigger:text_aliyun")
                     if r.status == "pending"]
        assert waiting.attempts == 0 and "sms:shop: its limit of 1 a minute" in waiting.last_error
        assert len(server.accepted) == 1
    ws.close()
