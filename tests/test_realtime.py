"""Incremental evaluation, time sweeps and what tables a rule reads."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

import tierwise
from tierwise.definitions.segment_parser import parse
from tierwise.demo.generator import DemoSpec
from tierwise.demo.load import load_generated
from tierwise.ingest.readers import RecordsSource
from tierwise.segments import definitions as defs
from tierwise.segments import membership, realtime
from tierwise.segments.evaluate import evaluate_rule
from tierwise.store.customers import known_ids
from tierwise.store.tables import segment_history

T = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)

RULES = {
    "recent_buyers": "COUNT(orders, LAST 30d) >= 1",
    "big_spenders": "SUM(orders.amount) >= 3000",
    "pricing_viewers": "COUNT(events WHERE type = 'page_view', LAST 14d) >= 2",
    "shanghai_recent": "city = '上海' AND IN_SEGMENT('recent_buyers')",
    "lapsed": "DAYS_SINCE_LAST(orders) > 60",
    "with_tickets": "COUNT(tickets) >= 1 OR IN_SEGMENT('vip')",
}


@pytest.fixture
def ws(tmp_path: Path) -> tierwise.Workspace:
    workspace = tierwise.init(tmp_path / "ws")
    load_generated(workspace, DemoSpec(customers=500, seed=11, end=date(2026, 6, 30)))
    for key, rule in RULES.items():
        defs.save(workspace, defs.SegmentDefinition(key=key, rule=rule))
    defs.save(workspace, defs.SegmentDefinition(key="vip", kind="static"))
    return workspace


def _expected(ws: tierwise.Workspace, key: str, at: datetime) -> list[str]:
    resolve = membership.applied_resolver(ws)
    return evaluate_rule(ws, RULES[key], at, resolve, key)["customer_id"].to_pylist()


def test_what_a_rule_reads() -> None:
    reads = realtime.reads
    assert reads(parse("COUNT(orders, LAST 30d) >= 2")) == realtime.Reads(
        frozenset({"orders"}), True)
    assert reads(parse("SUM(orders.amount) > 5")).timed is False
    assert reads(parse("city = '上海' AND tier = 'A'")).tables == {"customers", "snapshot"}
    assert reads(parse("last_order_at < -90d")) == realtime.Reads(frozenset({"orders"}),
                                                                   True)
    assert reads(parse("DAYS_SINCE_LAST(events WHERE type = 'login') > 7")).timed
    assert reads(parse("COUNT(events WHERE occurred_at > -7d) > 1")).timed
    assert reads(parse("lead_score >= 50")).tables == {"leads"}
    inner = parse("COUNT(tickets, LAST 7d) >= 1")
    through = reads(parse("IN_SEGMENT('a') AND city = 'x'"),
                    lambda key: inner if key == "a" else None)
    assert through == realtime.Reads(frozenset({"tickets", "customers"}), True)
    assert reads(parse("IN_SEGMENT('static')"), lambda key: None).tables == {"members"}


def test_incremental_updates_equal_a_full_evaluation(ws: tierwise.Workspace) -> None:
    membership.evaluate_all(ws, T)
    known = sorted(membership.members_at(ws, "big_spenders"))
    with ws.control.read() as conn:
        everyone = sorted(known_ids(conn).to_pylist())
    outsiders = [c for c in everyone if c not in known][:5]
    when = (T - timedelta(hours=1)).isoformat()
    orders = [{"order_id": f"RT{i}", "customer_id": c, "ordered_at": when, "amount": 5000}
              for i, c in enumerate(outsiders)]
    events = [{"event_id": f"RE{i}-{n}", "customer_id": c, "occurred_at": when,
               "type": "page_view"} for i, c in enumerate(outsiders[:3]) for n in range(2)]
    tickets = [{"ticket_id": "RTK1", "customer_id": outsiders[4], "opened_at": when}]
    ws.import_source("orders", RecordsSource.from_dicts("test", orders))
    ws.import_source("events", RecordsSource.from_dicts("test", events))
    ws.import_source("tickets", RecordsSource.from_dicts("test", tickets))
    membership.edit_static(ws, "vip", add=[outsiders[3]], at=T)

    changes = {"orders": set(outsiders), "events": set(outsiders[:3]),
               "tickets": {outsiders[4]}, "members": {outsiders[3]}}
    results = {r.key: r for r in realtime.evaluate_changed(ws, changes, T)}
    assert "lapsed" in results and "pricing_viewers" in results
    assert all(r.error is None for r in results.values())
    for key in RULES:
        assert membership.members_at(ws, key) == _expected(ws, key, T), key
    assert set(outsiders) <= set(membership.members_at(ws, "big_spenders"))
    assert results["big_spenders"].entered == 5
    assert results["big_spenders"].members == len(known) + 5
    with ws.control.read() as conn:
        reasons = {r[0] for r in conn.execute(sa.select(segment_history.c.enter_reason).where(
            segment_history.c.customer_id.in_(outsiders)))}
    assert reasons <= {"data_change", "manual"}


def test_customer_edits_reach_rules_on_master_data(ws: tierwise.Workspace) -> None:
    membership.evaluate_all(ws, T)
    recent = membership.members_at(ws, "recent_buyers")
    outside = [c for c in recent if c not in membership.members_at(ws, "shanghai_recent")][0]
    with ws.control.write() as conn:
        from tierwise.store import customers

        customers.set_fields(conn, outside, {"city": "上海"})
    realtime.evaluate_changed(ws, {"customers": {outside}}, T)
    assert outside in membership.members_at(ws, "shanghai_recent")
    assert membership.members_at(ws, "shanghai_recent") == _expected(ws, "shanghai_recent", T)


def test_a_sweep_moves_customers_as_time_passes(ws: tierwise.Workspace) -> None:
    membership.evaluate_all(ws, T)
    assert set(realtime.clocked(ws)) == {"recent_buyers", "pricing_viewers",
                                         "shanghai_recent", "lapsed"}
    later = T + timedelta(days=20)
    results = {r.key: r for r in realtime.sweep(ws, later)}
    assert set(results) == set(realtime.clocked(ws))
    assert results["recent_buyers"].reason == "time"
    assert results["recent_buyers"].exited
    for key in results:
        assert membership.members_at(ws, key) == _expected(ws, key, later), key
    with ws.control.read() as conn:
        exits = conn.execute(sa.select(segment_history.c.exited_at, segment_history.c
                                       .exit_reason).where(
            segment_history.c.segment_key == "recent_buyers",
            segment_history.c.exited_at.is_not(None))).all()
    assert exits and {r.exit_reason for r in exits} == {"time"}
    assert {r.exited_at.replace(tzinfo=UTC) if r.exited_at.tzinfo is None
            else r.exited_at for r in exits} == {later}


def test_micro_batch_files_merge_without_changing_what_is_read(ws: tierwise.Workspace) -> None:
    big_files = len(ws.facts.scan("orders").files)
    before = ws.sql("SELECT * FROM orders ORDER BY order_id").to_pylist()
    when = T.isoformat()
    for i in range(6):  # six micro-batches, the last one refunds an order of the first
        rows = [{"order_id": f"MB{i}-{n}", "customer_id": "C00001" if n else "C00002",
                 "ordered_at": when, "amount": 10 + i} for n in range(3)]
        if i == 5:
            rows.append({"order_id": "MB0-1", "customer_id": "C00001", "ordered_at": when,
                         "amount": 10, "status": "refunded"})
        ws.import_source("orders", RecordsSource.from_dicts("batch", rows),
                         unknown_customers="create")
    expected = ws.sql("SELECT * FROM orders ORDER BY order_id").to_pylist()
    assert len(expected) == len(before) + 18
    replaced, written = ws.facts.compact(ws.engine, "orders", min_files=4, small_rows=10)
    assert (replaced, written) == (6, 1)
    assert len(ws.facts.scan("orders").files) == big_files + 1  # the large files stay
    assert ws.sql("SELECT * FROM orders ORDER BY order_id").to_pylist() == expected
    refunded = ws.sql("SELECT status FROM orders WHERE order_id = 'MB0-1'").to_pylist()
    assert refunded == [{"status": "refunded"}]
    assert ws.facts.compact(ws.engine, "orders", min_files=4, small_rows=10) == (0, 0)
