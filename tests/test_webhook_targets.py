"""Webhooks go to public addresses and to the hosts and networks a workspace allows; checked
when a trigger is saved and again at every delivery, against the address actually used."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.api_helpers import PASSWORD, Served, build
from tests.receivers import webhook_receiver
from tests.test_actions import _define, _deliver, _order, _rows

from tierwise.errors import TierwiseError
from tierwise.security import targets
from tierwise.segments import membership

REFUSED = [
    "http://127.0.0.1:8080/hook", "http://localhost.:9/x", "http://169.254.169.254/latest/",
    "http://10.1.2.3/hook", "http://192.168.0.7/", "http://[::1]:8000/", "http://0.0.0.0/",
    "http://[::ffff:127.0.0.1]/", "http://224.0.0.1/", "http://100.64.0.1/",
    "http://[fe80::1]/", "http://[fd00::5]/",
]
MALFORMED = ["http://crm.example.com/a\r\nX-Injected: 1", "http://crm.example.com/a b",
             "http://user:secret@crm.example.com/hook", "ftp://crm.example.com/",
             "http:///nohost", "http://crm.example.com:99999/"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    found = build(tmp_path)
    yield found
    found.ws.close()


def _trigger(url: str) -> dict[str, object]:
    return {"on": {"event": "enter", "segment": "big"}, "action": {"type": "webhook",
                                                                   "url": url}}


@pytest.mark.parametrize("url", REFUSED + MALFORMED)
def test_a_trigger_to_an_internal_or_malformed_url_is_refused_at_save(served: Served,
                                                                      url: str) -> None:
    answer = served.client("admin").put("/v1/triggers/probe", json=_trigger(url))
    assert 400 <= answer.status_code < 500, (url, answer.text)
    assert "webhook" in answer.json()["detail"]
    assert served.client("admin").get("/v1/triggers/probe").status_code == 404


def test_allowed_hosts_and_networks(tmp_path: Path) -> None:
    def resolver(host: str, port: int) -> list[str]:
        return {"hooks.internal": ["10.20.1.5"], "mixed.example": ["93.184.216.34",
                                                                   "10.0.0.1"],
                "public.example": ["93.184.216.34"]}[host]

    allowed = ["hooks.internal", "192.168.10.0/24", "::1"]
    assert targets.check("https://hooks.internal/x", allowed, resolver).address.exploded == \
        "10.20.1.5"
    targets.check("http://192.168.10.77:8080/x", allowed, resolver)
    targets.check("http://[::1]/x", allowed, resolver)
    targets.check("https://public.example/x", [], resolver)
    for url in ("http://192.168.11.1/", "http://10.20.1.5/", "https://mixed.example/"):
        with pytest.raises(targets.TargetRefused):
            targets.check(url, allowed, resolver)
    with pytest.raises(TierwiseError, match="webhook_allowed_targets"):
        build(tmp_path, webhook_allowed_targets=["not a host!"])


def test_a_name_that_resolves_inside_at_delivery_is_not_called(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Saved while its name pointed outside (or did not resolve), later resolving to
    loopback: the delivery is suppressed, the receiver on loopback hears nothing."""
    served = build(tmp_path)
    ws = served.ws
    with webhook_receiver() as hook:
        port = hook.url.rsplit(":", 1)[1].split("/")[0]
        answers = {"rebind.example": ["93.184.216.34"]}
        monkeypatch.setattr(targets, "_getaddrinfo", lambda host, _port: answers[host])
        _define(ws, "trigger", {"key": "rebind", **_trigger(
            f"http://rebind.example:{port}/hook")})
        answers["rebind.example"] = ["127.0.0.1"]
        _order(ws, "R1", "C004", 5000)
        membership.evaluate_all(ws, datetime.now(UTC))
        assert _deliver(ws) == {"suppressed": 1}
        [row] = _rows(ws, source="trigger:rebind")
        assert "loopback" in row.last_error and hook.received == []
    ws.close()


def test_an_allowed_name_is_called_at_the_address_that_was_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = build(tmp_path, webhook_allowed_targets=["hooks.internal"])
    ws = served.ws
    with webhook_receiver() as hook:
        port = hook.url.rsplit(":", 1)[1].split("/")[0]
        monkeypatch.setattr(targets, "_getaddrinfo", lambda host, _port: ["127.0.0.1"])
        _define(ws, "trigger", {"key": "internal", **_trigger(
            f"http://hooks.internal:{port}/hook")})
        _order(ws, "I1", "C004", 5000)
        membership.evaluate_all(ws, datetime.now(UTC))
        assert _deliver(ws) == {"delivered": 1}
        assert hook.received[0]["headers"]["Host"] == f"hooks.internal:{port}"
    ws.close()


def test_receivers_replies_are_for_admins_only(tmp_path: Path) -> None:
    served = build(tmp_path, webhook_allowed_targets=["127.0.0.1"])
    ws = served.ws
    with webhook_receiver() as hook:
        hook.reply = b"db password is hunter2"
        hook.answers[:] = [500]
        _define(ws, "trigger", {"key": "noisy", **_trigger(hook.url)})
        _order(ws, "Q1", "C004", 5000)
        membership.evaluate_all(ws, datetime.now(UTC))
        assert _deliver(ws) == {"retry": 1}
    viewer = served.client("viewer").get("/v1/deliveries").json()
    admin = served.client("admin").get("/v1/deliveries").json()
    assert "hunter2" not in str(viewer) and "HTTP 500" in str(viewer)
    assert "hunter2" in str(admin)
    for role, shown in (("viewer", False), ("admin", True)):
        browser = served.client()
        assert browser.post("/v1/auth/login", json={"username": role, "password": PASSWORD}
                            ).status_code == 200
        page = browser.get("/actions")
        assert page.status_code == 200 and "HTTP 500" in page.text
        assert ("hunter2" in page.text) is shown
    ws.close()
