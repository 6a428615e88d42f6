"""Text messages (短信) through the cloud providers' documented HTTP APIs: how a request is
addressed, signed and judged. One class per provider; another provider is a subclass with
its ``request`` and ``outcome``.

- **阿里云短信 (Alibaba Cloud SMS)**, ``SendSms`` of API version 2017-05-25, RPC style: the
  parameters (``PhoneNumbers``, ``SignName``, ``TemplateCode``, ``TemplateParam`` as JSON,
  ``OutId``, and the common ``AccessKeyId``, ``Action``, ``Format``, ``RegionId``,
  ``SignatureMethod`` HMAC-SHA1, ``SignatureNonce``, ``SignatureVersion`` 1.0,
  ``Timestamp`` in UTC, ``Version``) are sorted by name, each name and value
  percent-encoded (RFC 3986: only letters, digits, ``-_.~`` stay), joined with ``&`` and
  ``=``; the string to sign is ``POST&%2F&`` followed by that text percent-encoded again;
  ``Signature`` is Base64 of HMAC-SHA1 keyed with the AccessKey secret followed by ``&``.
  The form is posted to ``https://dysmsapi.aliyuncs.com/``. The answer's ``Code`` is
  ``OK`` when the message was accepted.
- **腾讯云短信 (Tencent Cloud SMS)**, ``SendSms`` of API version 2021-01-11, signature
  TC3-HMAC-SHA256: the canonical request is ``POST``, ``/``, an empty query, the signed
  headers ``content-type`` and ``host`` (and ``x-tc-action``) in lower case with their
  values, and the SHA-256 of the JSON body; the string to sign is the algorithm, the
  timestamp, the credential scope ``<UTC date>/sms/tc3_request`` and the SHA-256 of the
  canonical request; the key is derived by HMAC-SHA256 from ``"TC3" + secret key`` over
  the date, then ``sms``, then ``tc3_request``. The ``Authorization`` header names the
  SecretId, the scope, the signed headers and the signature. The body names the
  ``SmsSdkAppId``, ``SignName``, ``TemplateId``, the numbers in E.164 form and
  ``TemplateParamSet`` (values in order); the answer's ``Response.Error`` says what was
  wrong with the request, and each number's ``Code`` is ``Ok`` when accepted.

An answer that means "too many now", "the provider failed" or "the account needs funds" is
tried again later with the outbox's backoff; a refused signature, key, template, sign name
or number is not (the delivery is dead until it is replayed once fixed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from tierwise.actions.robots import json_answer

#: The providers' endpoints (a sender's ``url_env`` may name another: a region's
#: endpoint, a proxy, a test server).
ENDPOINTS = {"aliyun": "https://dysmsapi.aliyuncs.com/",
             "tencent": "https://sms.tencentcloudapi.com/"}


@dataclass(frozen=True)
class Message:
    """One text message to one number, as a provider's template takes it."""

    #: E.164 (+8613800138000).
    phone: str
    sign_name: str
    template: str
    #: The template's parameters by name, in the template's order.
    params: dict[str, str]
    #: The outbox's idempotency key: sent along where the provider keeps one
    #: (Alibaba's ``OutId``, Tencent's ``SessionContext``).
    reference: str


@dataclass(frozen=True)
class Credentials:
    key_id: str
    secret: str
    region: str = ""
    #: Tencent's SmsSdkAppId.
    app_id: str = ""


@dataclass(frozen=True)
class Request:
    url: str
    headers: dict[str, str]
    body: bytes


class Provider:
    name = ""

    def request(self, url: str, message: Message, credentials: Credentials,
                now: datetime, nonce: str | None = None) -> Request:
        raise NotImplementedError

    def outcome(self, status: int, text: str) -> tuple[str, str]:
        """``ok``, ``retry`` or ``failed``, and why, from the HTTP status and the body."""
        raise NotImplementedError


def percent(text: str) -> str:
    """RFC 3986 percent-encoding as Alibaba Cloud's signature asks for it.

    >>> percent("a b*c~d/é")
    'a%20b%2Ac~d%2F%C3%A9'
    """
    return quote(text, safe="-_.~")


def aliyun_signature(params: dict[str, str], secret: str, method: str = "POST") -> str:
    """Alibaba Cloud's RPC signature of ``params`` (without ``Signature``)."""
    canonical = "&".join(f"{percent(k)}={percent(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{percent('/')}&{percent(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _domestic(phone: str) -> str:
    """Alibaba's form of a number: mainland numbers without the country code, others
    with it (no ``+``)."""
    digits = phone.lstrip("+")
    return digits[2:] if phone.startswith("+86") else digits


class Aliyun(Provider):
    name = "aliyun"
    #: Codes worth trying again: flow control, the provider's own failures, no funds yet.
    RETRY_PREFIXES = ("isp.", "Throttling", "ServiceUnavailable", "InternalError")
    RETRY = frozenset({"isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL",
                       "isv.AMOUNT_NOT_ENOUGH", "isv.OUT_OF_SERVICE"})

    def request(self, url: str, message: Message, credentials: Credentials,
                now: datetime, nonce: str | None = None) -> Request:
        params = {
            "AccessKeyId": credentials.key_id, "Action": "SendSms", "Format": "JSON",
            "OutId": message.reference[:64], "PhoneNumbers": _domestic(message.phone),
            "RegionId": credentials.region or "cn-hangzhou", "SignName": message.sign_name,
            "SignatureMethod": "HMAC-SHA1", "SignatureNonce": nonce or uuid.uuid4().hex,
            "SignatureVersion": "1.0", "TemplateCode": message.template,
            "Timestamp": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
        }
        if message.params:
            params["TemplateParam"] = json.dumps(message.params, ensure_ascii=False,
                                                 separators=(",", ":"))
        params["Signature"] = aliyun_signature(params, credentials.secret)
        body = "&".join(f"{percent(k)}={percent(v)}" for k, v in params.items())
        return Request(url, {"Content-Type": "application/x-www-form-urlencoded"},
                       body.encode())

    def outcome(self, status: int, text: str) -> tuple[str, str]:
        answer = json_answer(text)
        code = str(answer.get("Code") or "")
        message = str(answer.get("Message") or text[:120])
        if status < 300 and code == "OK":
            return "ok", ""
        if status >= 500 or status == 429 or not code:
            return "retry", f"aliyun HTTP {status}: {code or text[:120]}"
        if code in self.RETRY or code.startswith(self.RETRY_PREFIXES):
            return "retry", f"aliyun {code}: {message}"
        return "failed", f"aliyun {code}: {message}"


def tc3_signature(secret: str, date: str, service: str, to_sign: str) -> str:
    """Tencent Cloud's TC3-HMAC-SHA256 signature of ``to_sign``."""
    def keyed(key: bytes, text: str) -> bytes:
        return hmac.new(key, text.encode(), hashlib.sha256).digest()

    signing = keyed(keyed(keyed(f"TC3{secret}".encode(), date), service), "tc3_request")
    return hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()


class Tencent(Provider):
    name = "tencent"
    SERVICE = "sms"
    CONTENT_TYPE = "application/json; charset=utf-8"
    RETRY_PREFIXES = ("InternalError", "RequestLimitExceeded", "LimitExceeded.",
                      "FailedOperation.InsufficientBalanceInSmsPackage", "ResourceUnavailable")

    def request(self, url: str, message: Message, credentials: Credentials,
                now: datetime, nonce: str | None = None) -> Request:
        body = json.dumps({
            "PhoneNumberSet": [message.phone], "SmsSdkAppId": credentials.app_id,
            "SignName": message.sign_name, "TemplateId": message.template,
            "TemplateParamSet": list(message.params.values()),
            "SessionContext": message.reference,
        }, ensure_ascii=False, separators=(",", ":")).encode()
        host = urlsplit(url).netloc
        timestamp = int(now.timestamp())
        date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
        canonical = "\n".join([
            "POST", "/", "",
            f"content-type:{self.CONTENT_TYPE}\nhost:{host}\nx-tc-action:sendsms\n",
            "content-type;host;x-tc-action", hashlib.sha256(body).hexdigest()])
        scope = f"{date}/{self.SERVICE}/tc3_request"
        to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        signature = tc3_signature(credentials.secret, date, self.SERVICE, to_sign)
        headers = {
            "Authorization": f"TC3-HMAC-SHA256 Credential={credentials.key_id}/{scope}, "
                             f"SignedHeaders=content-type;host;x-tc-action, "
                             f"Signature={signature}",
            "Content-Type": self.CONTENT_TYPE, "Host": host, "X-TC-Action": "SendSms",
            "X-TC-Timestamp": str(timestamp), "X-TC-Version": "2021-01-11",
            "X-TC-Region": credentials.region or "ap-guangzhou"}
        return Request(url, headers, body)

    def outcome(self, status: int, text: str) -> tuple[str, str]:
        if status >= 500 or status == 429:
            return "retry", f"tencent HTTP {status}"
        response = json_answer(text).get("Response")
        if not isinstance(response, dict):
            return "retry", f"tencent HTTP {status}: an answer without Response: {text[:120]}"
        error = response.get("Error")
        if isinstance(error, dict):
            code, why = str(error.get("Code") or ""), str(error.get("Message") or "")
        else:
            sent = response.get("SendStatusSet") or [{}]
            code, why = str(sent[0].get("Code") or ""), str(sent[0].get("Message") or "")
            if code == "Ok":
                return "ok", ""
        if code.startswith(self.RETRY_PREFIXES):
            return "retry", f"tencent {code}: {why}"
        return "failed", f"tencent {code or 'no code'}: {why}"


PROVIDERS: dict[str, Provider] = {"aliyun": Aliyun(), "tencent": Tencent()}
