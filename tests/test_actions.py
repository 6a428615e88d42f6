"""Triggers, the outbox and the dispatcher, playbooks, SLA escalation and lead scoring."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.api_helpers import Served, build
from tests.receivers import smtp_receiver, webhook_receiver
from tests.test_cli import tw

import tierwise
from tierwise.actions import catalog as automations
from tierwise.actions import dispatch, playbooks, sla
from tierwise.actions.channels import SIGNATURE_HEADER, Channels, verify, webhook_secret
from tierwise.actions.outbox import in_holdout
from tierwise.actions.tasks import listing as tasks_listing
from tierwise.errors import TierwiseError
from tierwise.ingest.readers import RecordsSource
from tierwise.models import leads
from tierwise.security.consent import set_preference
from tierwise.segments import catalog as defs
from tierwise.segments import membership
from tierwise.segments.vocabulary import vocabulary
from tierwise.store import leads as lead_store
from tierwise.store.tables import outbox, tasks


@pytest.fixture
def served(tmp_path: Path, control_url: str) -> Served:
    # the test receivers listen on loopback, which webhooks may reach only when allowed
    found = build(tmp_path, control_url, webhook_allowed_targets=["127.0.0.1"])
    yield found  # type: ignore[misc]
    found.ws.close()


@pytest.fixture
def now(served: Served) -> datetime:
    """An instant after the workspace's first evaluation (earlier ones are backfills)."""
    return datetime.now(UTC)


def _define(ws: tierwise.Workspace, kind: str, data: dict[str, object]) -> None:
    model = automations.parse_definition(kind, data, "test")
    words = vocabulary(ws)
    with ws.control.write() as conn:
        automations.save(conn, kind, model,
                         allowed_targets=ws.config.webhook_allowed_targets, vocabulary=words)


def _order(ws: tierwise.Workspace, order_id: str, customer: str, amount: float,
           at: datetime | None = None) -> None:
    at = at or datetime.now(UTC) - timedelta(minutes=1)
    ws.import_source("orders", RecordsSource.from_dicts("test", [
        {"order_id": order_id, "customer_id": customer, "ordered_at": at.isoformat(),
         "amount": amount}]), unknown_customers="create")


def _rows(ws: tierwise.Workspace, **where: object) -> list[sa.Row]:
    with ws.control.read() as conn:
        query = sa.select(outbox).order_by(outbox.c.outbox_id)
        for column, value in where.items():
            query = query.where(outbox.c[column] == value)
        return list(conn.execute(query))


def _deliver(ws: tierwise.Workspace, now: datetime | None = None) -> dict[str, int]:
    channels = Channels(ws)
    try:
        return dict(dispatch.dispatch_due(ws, channels, now=now))
    finally:
        channels.close()


def test_definitions_are_validated_with_the_field_named() -> None:
    with pytest.raises(TierwiseError, match="on: .*needs on.segment"):
        automations.parse_definition("trigger", {"key": "t", "on": {"event": "enter"},
                                                 "action": {"type": "tag", "tag": "x"}}, "t")
    with pytest.raises(TierwiseError, match="action.webhook.url"):
        automations.parse_definition("trigger", {
            "key": "t", "on": {"event": "enter", "segment": "s"},
            "action": {"type": "webhook", "url": "ftp://x"}}, "t")
    with pytest.raises(TierwiseError, match="cooldown"):
        automations.parse_definition("trigger", {
            "key": "t", "on": {"event": "enter", "segment": "s"}, "cooldown": "soon",
            "action": {"type": "tag", "tag": "x"}}, "t")
    with pytest.raises(TierwiseError, match="unknown field 'industy'"):
        automations.parse_definition("lead_scoring", {
            "properties": [{"when": "industy = 'x'", "points": 1}]}, "lead.yaml")
    book = automations.parse_definition("playbook", {
        "key": "recall", "applies_to": {"segment": "lapsed"},
        "steps": [{"after": "0d", "action": {"type": "tag", "tag": "recall"}},
                  {"after": "3d", "action": {"type": "task", "title": "call"}}]}, "p")
    assert [automations.duration(s.after) for s in book.steps] == [timedelta(0),
                                                                   timedelta(days=3)]


def test_entering_fires_a_signed_webhook_with_retries_and_replay(served: Served,
                                                                 now: datetime) -> None:
    ws = served.ws
    with webhook_receiver() as hook:
        _define(ws, "trigger", {"key": "big_hook", "on": {"event": "enter", "segment": "big"},
                                "action": {"type": "webhook", "url": hook.url},
                                "max_attempts": 2, "retry_seconds": 1})
        _order(ws, "N1", "C004", 5000)
        results = {r.key: r for r in membership.evaluate_all(ws, now)}
        assert results["big"].entered == 1
        [row] = _rows(ws, source="trigger:big_hook")
        assert (row.customer_id, row.status, row.event) == ("C004", "pending", "enter")
        hook.answers[:] = [500]
        assert _deliver(ws) == {"retry": 1}
        [row] = _rows(ws, source="trigger:big_hook")
        assert row.attempts == 1 and "HTTP 500" in row.last_error
        assert _deliver(ws) == {}  # not due yet: backoff
        assert _deliver(ws, now=datetime.now(UTC) + timedelta(seconds=5)) == {"delivered": 1}
        first, second = hook.received
        assert first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"] \
            == row.idempotency_key
        assert verify(webhook_secret(ws), second["raw"], second["headers"][SIGNATURE_HEADER])
        assert not verify(b"other", second["raw"], second["headers"][SIGNATURE_HEADER])
        assert second["body"]["event"] == "segment.entered"
        assert second["body"]["customer_id"] == "C004" and second["body"]["segment"] == "big"

        # a dead letter after max_attempts, then a manual replay with the same key
        membership.edit_static(ws, "vip_list", remove=["C004"])
        _define(ws, "trigger", {"key": "vip_exit", "on": {"event": "exit",
                                                          "segment": "vip_list"},
                                "action": {"type": "webhook", "url": hook.url},
                                "max_attempts": 2, "retry_seconds": 0.01})
        membership.edit_static(ws, "vip_list", remove=["C001"])
        hook.answers[:] = [503, 503]
        _deliver(ws)
        assert _deliver(ws, now=datetime.now(UTC) + timedelta(seconds=1)) == {"dead": 1}
        [dead] = _rows(ws, source="trigger:vip_exit")
        assert dead.status == "dead" and dead.attempts == 2
        assert dispatch.replay(ws) == 1
        assert _deliver(ws) == {"delivered": 1}
        assert hook.received[-1]["headers"]["Idempotency-Key"] == dead.idempotency_key


def test_rule_edits_do_not_fire_and_fire_once_holds(served: Served, now: datetime) -> None:
    ws = served.ws
    _define(ws, "trigger", {"key": "tag_buyers", "on": {"event": "enter",
                                                         "segment": "buyers"},
                            "action": {"type": "tag", "tag": "buyer"}, "fire": "once"})
    defs.save(ws, defs.SegmentDefinition(key="buyers", rule="COUNT(orders) >= 3"))
    membership.evaluate_all(ws, now)  # everyone leaves (a rule change)
    defs.save(ws, defs.SegmentDefinition(key="buyers", rule="COUNT(orders) >= 1"))
    results = {r.key: r for r in membership.evaluate_all(ws, now)}
    assert results["buyers"].reason == "rule_change" and results["buyers"].entered == 4
    assert _rows(ws, source="trigger:tag_buyers") == []  # rule edits do not fire
    _order(ws, "N2", "C004", 10)
    # an order for a customer who is a member already changes nothing; a new customer enters
    _order(ws, "N3", "NEW1", 10)
    membership.evaluate_all(ws, now + timedelta(seconds=1))
    fired = _rows(ws, source="trigger:tag_buyers")
    assert [r.customer_id for r in fired] == ["NEW1"]
    assert _deliver(ws, now + timedelta(seconds=5)) == {"delivered": 1}
    with ws.control.read() as conn:
        from tierwise.store import customers

        assert json.loads(customers.get(conn, "NEW1")["tags"]) == ["buyer"]
    # leave (the order is refunded) and come back: fire once means no second action
    ws.import_source("orders", RecordsSource.from_dicts("test", [
        {"order_id": "N3", "customer_id": "NEW1", "ordered_at": now.isoformat(),
         "amount": 10, "status": "refunded"}]))
    membership.evaluate_all(ws, now + timedelta(seconds=2))
    _order(ws, "N4", "NEW1", 10)
    membership.evaluate_all(ws, now + timedelta(seconds=3))
    assert len(_rows(ws, source="trigger:tag_buyers")) == 1


def test_holdout_is_stable_and_recorded(served: Served, now: datetime) -> None:
    draws = [in_holdout("trigger:x", f"C{i}", 0.2) for i in range(5000)]
    assert 0.17 < sum(draws) / len(draws) < 0.23
    assert draws == [in_holdout("trigger:x", f"C{i}", 0.2) for i in range(5000)]
    ws = served.ws
    _define(ws, "trigger", {"key": "half", "on": {"event": "enter", "segment": "vip_list"},
                            "action": {"type": "tag", "tag": "h"}, "holdout": 0.5})
    ids = [f"C00{i}" for i in (2, 3)]
    membership.edit_static(ws, "vip_list", add=ids, at=now)
    statuses = {r.customer_id: r.status for r in _rows(ws, source="trigger:half")}
    assert statuses == {c: "held_out" if in_holdout("trigger:half", c, 0.5) else "pending"
                        for c in ids}
    _deliver(ws)
    assert {r.status for r in _rows(ws, source="trigger:half")} <= {"held_out", "delivered"}


def test_tasks_emails_and_consent(served: Served, now: datetime) -> None:
    ws = served.ws
    _define(ws, "trigger", {"key": "welcome", "on": {"event": "enter", "segment": "vip_list"},
                            "action": {"type": "email", "templates": {
                                "zh-CN": {"subject": "{{ customer.name }}，欢迎加入",
                                          "body": "您已进入 {{ segment }}。"},
                                "en": {"subject": "Welcome, {{ customer.name }}",
                                       "body": "You joined {{ segment }}."}}}})
    _define(ws, "trigger", {"key": "call", "on": {"event": "enter", "segment": "vip_list"},
                            "action": {"type": "task", "title": "Call the new VIP",
                                       "due_hours": 24, "priority": "high"}})
    set_preference(ws, "C002", "email", consent=True)
    set_preference(ws, "C003", "email", consent=True)
    set_preference(ws, "C003", "all", unsubscribed=True)
    membership.edit_static(ws, "vip_list", add=["C002", "C003"], at=now)
    with smtp_receiver() as box:
        config = ws.config
        ws.config = replace(config, smtp_url=f"smtp://127.0.0.1:{box.port}")  # type: ignore[misc]
        try:
            assert _deliver(ws) == {"delivered": 3, "suppressed": 1}
            assert _deliver(ws) == {}
        finally:
            ws.config = config  # type: ignore[misc]
        [mail] = box.messages
    assert mail["To"] == "lisi@example.cn" and mail["Subject"] == "李四，欢迎加入"
    assert "vip_list" in mail.get_content()
    [suppressed] = _rows(ws, source="trigger:welcome", status="suppressed")
    assert suppressed.customer_id == "C003" and "unsubscribed" in suppressed.last_error
    with ws.control.read() as conn:
        made = conn.execute(sa.select(tasks).order_by(tasks.c.customer_id)).all()
    assert [(t.customer_id, t.owner, t.priority, t.status) for t in made] == [
        ("C002", "赵经理", "high", "open"), ("C003", "王经理", "high", "open")]
    # a replay of a delivered task does not create it twice
    dispatch.replay(ws, [r.outbox_id for r in _rows(ws, source="trigger:call")])
    _deliver(ws)
    with ws.control.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tasks)).scalar() == 2


def test_an_unsubscribe_link_in_marketing_mail_sets_consent(served: Served,
                                                              now: datetime) -> None:
    """Marketing mail carries a signed unsubscribe link (in the body and the List-Unsubscribe
    headers); following it shows a button and changes nothing, the button (or a mail
    client's one-click POST) unsubscribes from e-mail, and the next marketing mail is
    suppressed; a changed link unsubscribes nobody."""
    from urllib.parse import parse_qs, urlsplit

    ws = served.ws
    _define(ws, "trigger", {"key": "news", "on": {"event": "enter", "segment": "vip_list"},
                            "action": {"type": "email", "templates": {
                                "zh-CN": {"subject": "新品", "body": "您好 {{ customer.name }}"}}}})
    set_preference(ws, "C002", "email", consent=True)
    membership.edit_static(ws, "vip_list", add=["C002"], at=now)
    config = ws.config
    with smtp_receiver() as box:
        ws.config = replace(config, smtp_url=f"smtp://127.0.0.1:{box.port}",  # type: ignore[misc]
                            dashboard_url="https://tw.example.com")
        try:
            assert _deliver(ws) == {"delivered": 1}
        finally:
            ws.config = config  # type: ignore[misc]
        [mail] = box.messages
    link = mail["List-Unsubscribe"].strip("<>")
    assert link.startswith("https://tw.example.com/unsubscribe?")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link in mail.get_content()  # the template did not place it: appended
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    client = served.client()
    page = client.get("/unsubscribe", params=query)
    assert page.status_code == 200 and 'method="post"' in page.text
    assert "unsubscribed" not in str(consent_decision(ws, "C002"))  # a GET changes nothing
    forged = client.post("/unsubscribe", data={**query, "c": "QzAwMw"})  # C003's id
    assert forged.status_code == 400
    assert "unsubscribed" not in str(consent_decision(ws, "C003"))
    one_click = client.post(f"/unsubscribe?{urlsplit(link).query}",
                            data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    assert "unsubscribed (email)" in str(consent_decision(ws, "C002"))
    with ws.control.read() as conn:
        [entry] = [e for e in audit_entries(conn) if e["action"] == "unsubscribe"]
    assert entry["target"] == "customer:C002"
    membership.edit_static(ws, "vip_list", remove=["C002"], at=now + timedelta(minutes=1))
    membership.edit_static(ws, "vip_list", add=["C002"], at=now + timedelta(minutes=2))
    assert _deliver(ws, now + timedelta(minutes=3)) == {"suppressed": 1}
    # a link of a customer merged into another since the mail unsubscribes the survivor
    from tierwise.identity.merge import merge
    from tierwise.security import unsubscribe

    merge(ws, "C001", ["C003"], actor="test")
    assert client.post("/unsubscribe", data=unsubscribe.query(ws, "C003", "email")
                       ).status_code == 200
    assert "unsubscribed (email)" in str(consent_decision(ws, "C001"))


def consent_decision(ws: tierwise.Workspace, customer: str) -> object:
    from tierwise.security.consent import may_contact

    return may_contact(ws, customer, "email", "marketing").reason


def audit_entries(conn: sa.Connection) -> list[dict[str, object]]:
    from tierwise.store import audit

    return audit.entries(conn, limit=50)


def test_tier_changes_fire_on_compute(served: Served, now: datetime) -> None:
    ws = served.ws
    _define(ws, "trigger", {"key": "to_a", "on": {"event": "tier_change", "to": ["A"]},
                            "action": {"type": "tag", "tag": "tier-a"}})
    for i in range(6):
        _order(ws, f"BIG{i}", "C003", 90000, now - timedelta(days=i))
    snap = ws.compute(as_of=now)
    tiers = dict(zip(snap.table["customer_id"].to_pylist(), snap.table["tier"].to_pylist(),
                     strict=True))
    fired = _rows(ws, source="trigger:to_a")
    assert tiers["C003"] == "A"
    assert [r.customer_id for r in fired] == ["C003"]
    payload = json.loads(fired[0].payload)["event"]
    assert payload["event"] == "tier.changed" and payload["to"] == "A"
    assert payload["from"] != "A"


def test_playbook_sequence_starts_on_entry_and_stops_on_exit(served: Served, now: datetime) -> None:
    ws = served.ws
    _define(ws, "playbook", {"key": "vip_care", "applies_to": {"segment": "vip_list"},
                             "service_level": "gold", "sla_response_hours": 2,
                             "steps": [{"after": "0d", "action": {"type": "tag",
                                                                  "tag": "care"}},
                                       {"after": "3d", "action": {"type": "task",
                                                                  "title": "Check in"}}]})
    membership.edit_static(ws, "vip_list", add=["C002"], at=now)
    assert playbooks.advance(ws, now) == 1
    assert playbooks.advance(ws, now + timedelta(days=1)) == 0
    assert playbooks.advance(ws, now + timedelta(days=3)) == 1
    [run] = playbooks.runs(ws, customer_id="C002")
    assert run["status"] == "done" and run["next_step"] == 2
    steps = _rows(ws, source="playbook:vip_care")
    assert [r.action for r in steps] == ["tag", "task"]
    membership.edit_static(ws, "vip_list", add=["C003"], at=now)
    playbooks.advance(ws, now)
    membership.edit_static(ws, "vip_list", remove=["C003"], at=now + timedelta(days=1))
    assert playbooks.advance(ws, now + timedelta(days=5)) == 0
    stopped = playbooks.runs(ws, customer_id="C003")[0]
    assert stopped["status"] == "stopped" and stopped["next_step"] == 1
    assert playbooks.applying(ws, ["C001", "C002", "C003"]).keys() == {"C001", "C002"}


def test_a_journey_waits_branches_and_exits_on_its_goal(served: Served, now: datetime) -> None:
    """A playbook as a journey, on a controlled clock: a tag at once; after 3 days a call
    task only for those who have not ordered since (the branch: a small order skips it);
    a last offer after 7 days, except for those who reached the goal (an order of 100 or
    more in the last 7 days: the run is converted and stops there)."""
    ws = served.ws
    _define(ws, "playbook", {
        "key": "win_back", "applies_to": {"segment": "vip_list"},
        "exit_when": "COUNT(orders WHERE amount >= 100, LAST 7d) >= 1",
        "steps": [
            {"after": "0d", "action": {"type": "tag", "tag": "win-back"}},
            {"after": "3d", "only_if": "COUNT(orders, LAST 3d) = 0",
             "action": {"type": "task", "title": "Call"}},
            {"after": "7d", "action": {"type": "tag", "tag": "last-offer"}}]})
    start = now
    membership.edit_static(ws, "vip_list", add=["C002", "C003"], at=start)
    assert playbooks.advance(ws, start) == 2  # both tagged at once
    _order(ws, "J1", "C003", 50, at=start + timedelta(days=2))  # small: not the goal
    assert playbooks.advance(ws, start + timedelta(days=3)) == 1  # C002's call only
    steps = {(r.customer_id, r.action) for r in _rows(ws, source="playbook:win_back")}
    assert steps == {("C002", "tag"), ("C003", "tag"), ("C002", "task")}
    _order(ws, "J2", "C002", 500, at=start + timedelta(days=5))  # the goal
    assert playbooks.advance(ws, start + timedelta(days=7)) == 1  # C003's last offer only
    [converted] = playbooks.runs(ws, customer_id="C002")
    assert converted["status"] == "converted" and converted["next_step"] == 2
    [done] = playbooks.runs(ws, customer_id="C003")
    assert done["status"] == "done"
    assert [r.action for r in _rows(ws, source="playbook:win_back", customer_id="C003")] \
        == ["tag", "tag"]
    assert [r.action for r in _rows(ws, source="playbook:win_back", customer_id="C002")] \
        == ["tag", "task"]
    with pytest.raises(TierwiseError, match="only_if"):
        automations.parse_definition("playbook", {
            "key": "bad", "applies_to": {"segment": "vip_list"},
            "steps": [{"action": {"type": "tag", "tag": "x"}, "only_if": "COUNT(ordres) = 0"}]},
            "test")


def test_sla_escalation_and_breach_alert(served: Served, now: datetime) -> None:
    ws = served.ws
    _define(ws, "playbook", {"key": "vip_service", "applies_to": {"segment": "vip_list"},
                             "sla_response_hours": 4, "ticket_priority": "urgent"})
    _define(ws, "trigger", {"key": "breach", "on": {"event": "sla_breach"},
                            "action": {"type": "tag", "tag": "sla-breached"}})
    opened = now
    tickets = [{"ticket_id": "T1", "customer_id": "C001", "opened_at": opened},
               {"ticket_id": "T2", "customer_id": "C002", "opened_at": opened},
               {"ticket_id": "T3", "customer_id": "C004", "opened_at": opened}]
    assert sla.on_tickets(ws, tickets) == 2  # C001 and C004 are on the VIP list
    assert sla.on_tickets(ws, tickets) == 0
    sla.on_tickets(ws, [{**tickets[2], "closed_at": opened + timedelta(hours=1)}])
    assert sla.check(ws, opened + timedelta(hours=3)) == 0
    assert sla.check(ws, opened + timedelta(hours=5)) == 1
    assert sla.check(ws, opened + timedelta(hours=6)) == 0
    [open_ticket] = sla.escalated(ws)
    assert open_ticket["ticket_id"] == "T1" and open_ticket["priority"] == "urgent"
    assert open_ticket["due_at"] == opened + timedelta(hours=4)
    assert open_ticket["breached_at"] == opened + timedelta(hours=5)
    assert {r.action for r in _rows(ws, event="sla_breach")} == {"tag", "task"}
    _deliver(ws, now + timedelta(hours=6))
    with ws.control.read() as conn:
        alert = conn.execute(sa.select(tasks)).one()
    assert (alert.customer_id, alert.priority, alert.owner) == ("C001", "urgent", "王经理")
    # in the workspace's language (zh-CN here), the deadline in its time zone
    due = (opened + timedelta(hours=4)).astimezone(ws.config.zone)
    assert (alert.title, alert.body) == ("SLA 已超时：请立即回复工单",
                                         f"工单 T1 应在 {due:%Y-%m-%d %H:%M %Z} 前回复")


def test_sla_ticket_opened_and_closed_in_one_batch(served: Served, now: datetime) -> None:
    """Two versions of a ticket in one batch (opened, then closed): escalated once, and the
    clock stops, so no breach is raised later."""
    ws = served.ws
    _define(ws, "playbook", {"key": "vip_service", "applies_to": {"segment": "vip_list"},
                             "sla_response_hours": 4})
    opened = {"ticket_id": "T7", "customer_id": "C001", "opened_at": now}
    closed = {**opened, "closed_at": now + timedelta(hours=1)}
    assert sla.on_tickets(ws, [opened, closed]) == 1
    assert sla.escalated(ws) == []
    assert sla.check(ws, now + timedelta(hours=5)) == 0
    [record] = sla.escalated(ws, open_only=False)
    assert record["closed_at"] == now + timedelta(hours=1) and record["breached_at"] is None


def test_lead_scores_decay_qualify_once_and_feed_segments(served: Served, now: datetime) -> None:
    ws = served.ws
    _define(ws, "lead_scoring", {
        "events": [{"when": "type = 'page_view' AND properties.page = '/pricing'",
                    "points": 10},
                   {"when": "type = 'download'", "points": 20}],
        "properties": [{"when": "city = '北京'", "points": 5}],
        "half_life_days": 10, "threshold": 30,
        "task": {"type": "task", "title": "Qualified lead", "role": "sales"}})
    _define(ws, "trigger", {"key": "hot", "on": {"event": "lead_qualified"},
                            "action": {"type": "tag", "tag": "hot"}})
    events = [{"event_id": f"L{i}", "customer_id": "C002", "occurred_at": (
        now - timedelta(days=10)).isoformat(), "type": "download"} for i in range(2)]
    events += [{"event_id": "L9", "customer_id": "C002", "occurred_at": now.isoformat(),
                "type": "page_view", "properties": {"page": "/pricing"}},
               {"event_id": "L10", "customer_id": "C003", "occurred_at": now.isoformat(),
                "type": "page_view", "properties": {"page": "/pricing"}}]
    ws.import_source("events", RecordsSource.from_dicts("test", events))
    first = leads.update(ws, {"C002", "C003"}, now)
    assert first.qualified == 1 and first.changed == {"C002", "C003"}
    scores = {r["customer_id"]: r for r in lead_store.leads(ws.control)}
    # two downloads, one half-life old (2 × 20 × 0.5) + pricing today (10) + Beijing (5)
    assert scores["C002"]["score"] == pytest.approx(2 * 20 * 0.5 + 10 + 5)
    assert scores["C003"]["score"] == pytest.approx(10)
    assert scores["C002"]["qualified_at"] == now and scores["C003"]["qualified_at"] is None
    again = leads.update(ws, {"C002"}, now + timedelta(hours=1))
    assert again.qualified == 0  # qualifies once
    assert again.changed == {"C002"}  # an hour of decay lowers the score
    assert {r.action for r in _rows(ws, event="lead_qualified")} == {"tag", "task"}
    from tierwise.segments.evaluate import evaluate_rule

    assert evaluate_rule(ws, "lead_score >= 20", now)["customer_id"].to_pylist() == ["C002"]


def _wait(check: Callable[[], object], seconds: float = 20.0) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not true within {seconds} s: {check}")


def test_through_the_api_events_move_members_and_fire_actions(served: Served,
                                                              now: datetime) -> None:
    admin = served.client("admin")
    with webhook_receiver() as hook, TestClient(served.app) as client:  # type: ignore[arg-type]
        client.headers["Authorization"] = f"Bearer {served.keys['analyst']}"
        assert client.put("/v1/segments/pricing_fans?dry_run=false", json={
            "rule": "COUNT(events WHERE type = 'page_view', LAST 1d) >= 2"}).status_code == 200
        saved = client.put("/v1/triggers/pricing_hook", json={
            "on": {"event": "enter", "segment": "pricing_fans"},
            "action": {"type": "webhook", "url": hook.url}})
        assert saved.status_code == 200 and saved.json()["version"] == 1
        bad = client.put("/v1/triggers/broken", json={"on": {"event": "enter"},
                                                      "action": {"type": "tag", "tag": "x"}})
        assert bad.status_code == 400 and "on.segment" in bad.json()["detail"]
        assert client.put("/v1/playbooks/fans", json={
            "applies_to": {"segment": "pricing_fans"}, "steps": [
                {"after": "0d", "action": {"type": "task", "title": "Call the fan"}}]}
        ).status_code == 200
        assert [t["key"] for t in client.get("/v1/triggers").json()] == ["pricing_hook"]
        stamp = (now - timedelta(minutes=5)).isoformat()
        events = [{"event_id": f"P{i}", "customer_id": "C003", "occurred_at": stamp,
                   "type": "page_view"} for i in range(2)]
        assert client.post("/v1/events", json=events).status_code == 202
        _wait(lambda: "pricing_fans" in {s["segment_key"] for s in client.get(
            "/v1/customers/C003/segments").json() if s["exited_at"] is None})
        _wait(lambda: hook.bodies())
        assert hook.bodies()[0]["customer_id"] == "C003"
        assert hook.bodies()[0]["event"] == "segment.entered"
        task = _wait(lambda: client.get("/v1/tasks", params={"customer_id": "C003"}).json())
        assert task[0]["title"] == "Call the fan"  # type: ignore[index]
        assert client.get("/v1/customers/C003/playbook").json()["key"] == "fans"
        deliveries = client.get("/v1/deliveries", params={"source": "trigger:pricing_hook"})
        assert deliveries.json()["items"][0]["status"] == "delivered"
        status = client.get("/v1/realtime").json()
        assert status["worker"]["holder"] is True and status["worker"]["rows_moved"] >= 2
        assert served.client("viewer").post("/v1/deliveries/replay",
                                            json={}).status_code == 403
        task_id = task[0]["task_id"]  # type: ignore[index]
        done = served.client("operator").post(f"/v1/tasks/{task_id}/complete")
        assert done.status_code == 200 and done.json()["status"] == "done"
        again = admin.post(f"/v1/tasks/{task_id}/complete")
        assert again.status_code == 400
        replayed = admin.post("/v1/deliveries/replay", json={"ids": [
            deliveries.json()["items"][0]["outbox_id"]]})
        assert replayed.json() == {"queued": 1}
        _wait(lambda: len(hook.bodies()) == 2)
        first, second = hook.received
        assert first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"]


def test_cli_applies_definitions_whole_and_shows_the_outbox(served: Served, now: datetime,
                                                            tmp_path: Path) -> None:
    ws = served.ws
    w = str(ws.root)
    folder = tmp_path / "triggers"
    folder.mkdir()
    (folder / "a.yaml").write_text("key: vip_tag\non: {event: enter, segment: vip_list}\n"
                                   "action: {type: tag, tag: vip}\n", encoding="utf-8")
    (folder / "b.yaml").write_text("key: broken\non: {event: enter}\n"
                                   "action: {type: tag, tag: x}\n", encoding="utf-8")
    failed = tw("triggers", "apply", str(folder), "-w", w, code=1)
    assert "b.yaml" in failed and "on.segment" in failed
    assert "no triggers yet" in tw("triggers", "list", "-w", w)  # nothing stored
    (folder / "b.yaml").unlink()
    assert "vip_tag: version 1" in tw("triggers", "apply", str(folder), "-w", w)
    playbook = tmp_path / "care.yaml"
    playbook.write_text("key: care\napplies_to: {segment: vip_list}\nsteps:\n"
                        "  - {after: 0d, action: {type: task, title: 欢迎回访}}\n",
                        encoding="utf-8")
    assert "care: version 1" in tw("playbooks", "apply", str(playbook), "-w", w)
    membership.edit_static(ws, "vip_list", add=["C002"], at=now)
    playbooks.advance(ws, now)
    _deliver(ws, now + timedelta(seconds=1))
    shown = tw("deliveries", "-w", w)
    assert "delivered 2" in shown and "C002" in shown
    assert "C002" in tw("tasks", "-w", w) and "欢迎回访" in tw("tasks", "-w", w)
    task_id = tasks_listing(ws)[0]["task_id"]
    assert f"task {task_id} done" in tw("tasks", "done", str(task_id), "-w", w)
    assert "queued again" in tw("deliveries", "replay", "-w", w)
    scoring = tmp_path / "lead.yaml"
    scoring.write_text("events:\n  - {when: \"type = 'page_view'\", points: 10}\n"
                       "half_life_days: 10000\nthreshold: 5\n", encoding="utf-8")
    tw("lead-scoring", str(scoring), "-w", w)
    assert "newly qualified" in tw("leads", "--rescore", "-w", w)
    assert "C001" in tw("leads", "--qualified", "-w", w)
    tw("sweep", "-w", w)


def test_one_worker_holds_the_lease_until_it_lapses(served: Served, now: datetime) -> None:
    from tierwise.realtime.worker import release, try_lease

    ws = served.ws
    assert try_lease(ws, "a", seconds=60)
    assert not try_lease(ws, "b", seconds=60)
    assert try_lease(ws, "a", seconds=60)  # renewal
    assert try_lease(ws, "a", seconds=-1)  # a holder that stops renewing …
    assert try_lease(ws, "b", seconds=60)  # … is replaced
    release(ws, "a")  # only the holder can release
    assert not try_lease(ws, "a", seconds=60)
    release(ws, "b")
    assert try_lease(ws, "a", seconds=60)


def test_service_mail_and_webhook_channels_honour_unsubscribes(served: Served,
                                                                now: datetime) -> None:
    ws = served.ws
    with webhook_receiver() as hook, smtp_receiver() as box:
        _define(ws, "trigger", {"key": "sms", "on": {"event": "enter", "segment": "vip_list"},
                                "action": {"type": "webhook", "url": hook.url,
                                           "channel": "sms"}})
        _define(ws, "trigger", {"key": "notice", "on": {"event": "enter",
                                                        "segment": "vip_list"},
                                "action": {"type": "email", "purpose": "service",
                                           "templates": {"en": {"subject": "Notice",
                                                                "body": "Hello"}}}})
        set_preference(ws, "C002", "sms", unsubscribed=True)
        membership.edit_static(ws, "vip_list", add=["C002", "C003"], at=now)
        config = ws.config
        ws.config = replace(config, smtp_url=f"smtp://127.0.0.1:{box.port}")  # type: ignore[misc]
        try:
            outcome = _deliver(ws, now + timedelta(seconds=1))
        finally:
            ws.config = config  # type: ignore[misc]
        # service mail needs no consent, only no unsubscribe: both customers get it
        assert sorted(m["To"] for m in box.messages) == ["lisi@example.cn",
                                                         "wangwu@example.cn"]
        assert [b["customer_id"] for b in hook.bodies()] == ["C003"]
    assert outcome == {"delivered": 3, "suppressed": 1}


def test_the_worklist_start_assign_snooze_complete(served: Served) -> None:
    """A task is started, handed to someone else, put off and done, through the API and
    the CLI; each step is checked (a finished task cannot be worked on) and audited."""
    from tierwise.store import tasks as task_store

    ws = served.ws
    with ws.control.write() as conn:
        for i, due in enumerate((-2, 5)):  # one overdue, one not
            task_store.create_once(conn, f"k{i}", customer_id="C001", role=None,
                                   title=f"call {i}", body=None, source="test",
                                   priority="high", due_at=datetime.now(UTC)
                                   + timedelta(hours=due), at=datetime.now(UTC))
    client = served.client("operator")
    listed = client.get("/v1/tasks", params={"status": "active"}).json()
    first, second = sorted(listed, key=lambda t: t["title"])
    late = client.get("/v1/tasks", params={"overdue": "true"}).json()
    assert [t["task_id"] for t in late] == [first["task_id"]]
    assert first["overdue"] and not second["overdue"]
    page = client.get("/actions", params={"lang": "en"}).text
    assert page.count('<li class="overdue') == 1 and "(Overdue)" in page
    assert f'/v1/tasks/{first["task_id"]}/start' in page
    assert f'data-post="/v1/tasks/{second["task_id"]}/snooze" data-body=\'{{"hours": 24}}\'' \
        in page
    assert "overdue" in tw("tasks", "--overdue", "-w", str(ws.root))
    started = client.post(f"/v1/tasks/{first['task_id']}/start").json()
    assert started["status"] == "in_progress"
    assert [t["task_id"] for t in client.get("/v1/tasks", params={"status": "in_progress"})
            .json()] == [first["task_id"]]
    given = client.post(f"/v1/tasks/{first['task_id']}/assign", json={"owner": "赵经理"})
    assert given.json()["owner"] == "赵经理"
    assert client.get("/v1/tasks", params={"owner": "赵经理", "status": "active"}
                      ).json()[0]["task_id"] == first["task_id"]
    put_off = client.post(f"/v1/tasks/{first['task_id']}/snooze", json={"hours": 24}).json()
    assert datetime.fromisoformat(put_off["due_at"]) > datetime.now(UTC) + timedelta(hours=23)
    assert client.get("/v1/tasks", params={"overdue": "true"}).json() == []
    assert client.post(f"/v1/tasks/{first['task_id']}/snooze",
                       json={"until": "2020-01-01T00:00:00Z"}).status_code == 400
    assert client.post(f"/v1/tasks/{first['task_id']}/snooze", json={}).status_code == 400
    assert client.post(f"/v1/tasks/{first['task_id']}/complete").json()["status"] == "done"
    again = client.post(f"/v1/tasks/{first['task_id']}/start")
    assert again.status_code == 400 and "done" in again.json()["detail"]
    assert client.post("/v1/tasks/999999/start").status_code == 404
    assert served.client("viewer").post(f"/v1/tasks/{second['task_id']}/start"
                                        ).status_code == 403
    w = str(ws.root)
    tid = str(second["task_id"])
    assert f"task {tid} in progress" in tw("tasks", "start", tid, "-w", w)
    assert "assigned to 钱经理" in tw("tasks", "assign", tid, "钱经理", "-w", w)
    assert f"task {tid} due" in tw("tasks", "snooze", tid, "--hours", "2", "-w", w)
    assert "call 1" in tw("tasks", "--owner", "钱经理", "-w", w)
    assert tw("tasks", "--status", "someday", "-w", w, code=1)
    with ws.control.read() as conn:
        from tierwise.store import audit

        actions = {e["action"] for e in audit.entries(conn, limit=100)}
    assert {"task_start", "task_assign", "task_snooze", "task_complete"} <= actions


def test_strategic_overdue_tasks_stand_out_and_the_worklist_exports(tmp_path: Path) -> None:
    """A task whose customer is in the best tier is `strategic` in every listing; overdue
    ones of those come first on the Actions page and stand out; the worklist filters by
    team and owner and exports as CSV (API, page link, CLI)."""
    import csv
    import io

    from fastapi.testclient import TestClient

    from tierwise.demo.generator import DemoSpec
    from tierwise.demo.load import load_generated
    from tierwise.models.compute import load_snapshot
    from tierwise.server.app import create_app
    from tierwise.store import accounts
    from tierwise.store import tasks as task_store

    ws = tierwise.init(tmp_path / "ws")
    load_generated(ws, DemoSpec(customers=300, seed=4, end=date(2026, 6, 30)))
    ws.compute()
    tiers = dict(zip(*(load_snapshot(ws).table.column(c).to_pylist()
                       for c in ("customer_id", "tier")), strict=True))
    best = next(c for c, t in tiers.items() if t == "A")
    other = next(c for c, t in tiers.items() if t == "D")
    now = datetime.now(UTC)
    with ws.control.write() as conn:
        accounts.add_user(conn, "ops", "worklist-pass-1", "operator")
        for i, (customer, role, hours) in enumerate(((other, "service", -3), (best, "sales", -1),
                                                      (best, "sales", 30))):
            task_store.create_once(conn, f"w{i}", customer_id=customer, role=role,
                                   title=f"follow up {i}", body=None, source="test",
                                   priority="high", due_at=now + timedelta(hours=hours), at=now)
    client = TestClient(create_app(ws))
    ok = client.post("/v1/auth/login", json={"username": "ops", "password": "worklist-pass-1"})
    client.headers["X-CSRF-Token"] = ok.json()["csrf_token"]
    listed = {t["title"]: t for t in client.get("/v1/tasks", params={"status": "active"}).json()}
    assert [listed[f"follow up {i}"]["strategic"] for i in range(3)] == [False, True, True]
    assert [t["title"] for t in client.get("/v1/tasks", params={"team": "sales",
                                                                "status": "active"}).json()] \
        == ["follow up 1", "follow up 2"]
    page = client.get("/actions", params={"lang": "en"}).text
    items = re.findall(r'<li(?: class="([^"]*)")?><strong>([^<]+)</strong>', page)
    assert items[0] == ("overdue strategic", "follow up 1")  # late and strategic: first
    assert ("overdue", "follow up 0") in items and ("strategic", "follow up 2") in items
    assert "1 overdue for strategic customers" in page
    assert 'data-input="#assign-' in page and 'href="/v1/tasks/export?status=active"' in page
    assert client.get("/actions", params={"overdue": "maybe"}).status_code == 400
    only = client.get("/actions", params={"team": "service", "lang": "en"}).text
    assert "follow up 0" in only and "follow up 1" not in only
    exported = client.get("/v1/tasks/export", params={"status": "active", "overdue": "true"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert sorted((r["title"], r["strategic"], r["overdue"]) for r in rows) == [
        ("follow up 0", "False", "True"), ("follow up 1", "True", "True")]
    target = tmp_path / "tasks.csv"
    tw("tasks", "--team", "sales", "--csv", str(target), "-w", str(ws.root))
    assert [r["title"] for r in csv.DictReader(io.StringIO(
        target.read_text(encoding="utf-8-sig")))] == ["follow up 1", "follow up 2"]
    assert "★" in tw("tasks", "-w", str(ws.root))
    # the worklist is paged: 250 tasks more are 3 pages of 100 on the page and in the API
    with ws.control.write() as conn:
        for i in range(250):
            task_store.create_once(conn, f"p{i}", customer_id=other, role="service",
                                   title=f"bulk {i:03d}", body=None, source="test",
                                   priority="normal", due_at=now + timedelta(days=2, minutes=i),
                                   at=now)
    shown = []
    for number in (1, 2, 3):
        html = client.get("/actions", params={"tasks_page": number, "lang": "en"}).text
        titles = re.findall(r"<li(?: class=\"[^\"]*\")?><strong>([^<]+)</strong>", html)
        assert len(titles) == (100 if number < 3 else 53), number
        assert ('rel="next"' in html.split('id="tasks"')[1]) == (number < 3)
        shown += titles
    assert len(set(shown)) == 253
    for wrong in ("0", "x", "99999999999999999999999"):
        assert client.get("/actions", params={"tasks_page": wrong}).status_code == 400
    second = client.get("/v1/tasks", params={"status": "active", "limit": 100,
                                             "offset": 100}).json()
    assert len(second) == 100 and second[0]["title"] == "bulk 097"
    ws.close()
