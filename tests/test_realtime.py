"""Incremental evaluation, time sweeps and what tables a rule reads."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
import sqlalchemy as sa
from tests.conftest import sizes_agree

import tierwise
from tierwise.definitions.segment_parser import parse
from tierwise.demo.generator import DemoSpec
from tierwise.demo.load import load_generated
from tierwise.ingest.readers import RecordsSource
from tierwise.models.labels import DEFAULT as WORDS
from tierwise.segments import catalog as defs
from tierwise.segments import incremental, membership
from tierwise.segments.evaluate import evaluate_rule
from tierwise.store.customers import known_ids
from tierwise.store.tables import segment_history, segment_runs

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
    reads = incremental.reads
    assert reads(parse("COUNT(orders, LAST 30d) >= 2")) == incremental.Reads(
        frozenset({"orders"}), True)
    assert reads(parse("SUM(orders.amount) > 5")).timed is False
    assert reads(parse("city = '上海' AND tier = 'A'")).tables == {"customers", "snapshot"}
    assert reads(parse("last_order_at < -90d")) == incremental.Reads(frozenset({"orders"}),
                                                                   True)
    assert reads(parse("DAYS_SINCE_LAST(events WHERE type = 'login') > 7")).timed
    assert reads(parse("COUNT(events WHERE occurred_at > -7d) > 1")).timed
    assert reads(parse("lead_score >= 50")).tables == {"leads"}
    inner = parse("COUNT(tickets, LAST 7d) >= 1")
    through = reads(parse("IN_SEGMENT('a') AND city = 'x'"),
                    lambda key: inner if key == "a" else None)
    assert through == incremental.Reads(frozenset({"tickets", "customers"}), True)
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
    results = {r.key: r for r in incremental.evaluate_changed(ws, changes, T)}
    assert "lapsed" in results and "pricing_viewers" in results
    assert all(r.error is None for r in results.values())
    for key in RULES:
        assert membership.members_at(ws, key) == _expected(ws, key, T), key
    assert set(outsiders) <= set(membership.members_at(ws, "big_spenders"))
    assert results["big_spenders"].entered == 5
    assert results["big_spenders"].members == len(known) + 5
    sizes_agree(ws)
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
    incremental.evaluate_changed(ws, {"customers": {outside}}, T)
    assert outside in membership.members_at(ws, "shanghai_recent")
    assert membership.members_at(ws, "shanghai_recent") == _expected(ws, "shanghai_recent", T)


def test_a_sweep_moves_customers_as_time_passes(ws: tierwise.Workspace) -> None:
    membership.evaluate_all(ws, T)
    assert set(incremental.clocked(ws)) == {"recent_buyers", "pricing_viewers",
                                         "shanghai_recent", "lapsed"}
    later = T + timedelta(days=20)
    results = {r.key: r for r in incremental.sweep(ws, later)}
    assert set(results) == set(incremental.clocked(ws))
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
    # not before the run's files hold ``min_rows`` together (19 stored, the refund too;
    # the worker's second tier)
    assert ws.facts.compact(ws.engine, "orders", min_files=2, small_rows=10,
                            min_rows=20) == (6, 6)
    replaced, written = ws.facts.compact(ws.engine, "orders", min_files=4, small_rows=10,
                                         min_rows=19)
    assert (replaced, written) == (6, 1)
    assert len(ws.facts.scan("orders").files) == big_files + 1  # the large files stay
    assert ws.sql("SELECT * FROM orders ORDER BY order_id").to_pylist() == expected
    refunded = ws.sql("SELECT status FROM orders WHERE order_id = 'MB0-1'").to_pylist()
    assert refunded == [{"status": "refunded"}]
    assert ws.facts.compact(ws.engine, "orders", min_files=4, small_rows=10) == (0, 0)


def test_the_worker_merges_micro_batches_in_two_tiers(ws: tierwise.Workspace,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Micro-batches go into chunks; once the chunks and micro-batches at the end hold
    SMALL_FILE_ROWS rows together, they become one file that later merges leave alone."""
    from tierwise.realtime import compaction
    from tierwise.realtime.worker import Worker

    monkeypatch.setattr(compaction, "COMPACT_AT_FILES", 3)
    monkeypatch.setattr(compaction, "CHUNK_ROWS", 5)
    monkeypatch.setattr(compaction, "SMALL_FILE_ROWS", 14)
    worker = Worker(ws)
    big = {f.path for f in ws.facts.scan("events").files}
    when = T.isoformat()
    batch = 0

    def micro_batches(n: int) -> None:
        nonlocal batch
        for _ in range(n):
            batch += 1
            ws.import_source("events", RecordsSource.from_dicts("batch", [
                {"event_id": f"TB{batch}-{i}", "customer_id": "C00001", "occurred_at": when,
                 "type": "click"} for i in range(2)]), unknown_customers="create")

    def tail() -> list[int]:
        """Rows of each file after the large ones, oldest first."""
        scan = ws.facts.scan("events")
        return [ws.sql(f"SELECT count(*) FROM read_parquet('{f.path}')").column(0)[0]
                .as_py() for f in scan.files if f.path not in big]

    expected = ws.count("events") + 2 * 8
    micro_batches(2)
    worker.compact()
    assert tail() == [2, 2]  # fewer than COMPACT_AT_FILES: left
    micro_batches(1)
    worker.compact()
    assert tail() == [6]  # a chunk
    micro_batches(3)
    worker.compact()
    assert tail() == [6, 6]  # the chunk was full (over CHUNK_ROWS): a new one
    micro_batches(2)
    worker.compact()
    assert tail() == [16]  # 14 rows and more together: one file, which stays
    assert ws.count("events") == expected
    micro_batches(3)
    worker.compact()
    assert tail() == [16, 6]


def test_time_edges_of_rules() -> None:
    def edges(text: str, resolve=None):  # type: ignore[no-untyped-def]
        found = incremental.time_edges(parse(text), resolve)
        return None if found is None else {(e.table, e.column, e.amount, e.unit)
                                           for e in found}

    assert edges("COUNT(orders, LAST 30d) >= 2") == {("orders", "ordered_at", 30, "d")}
    # whole days since the last order pass 60 → 61 when it is 61 days old
    assert edges("DAYS_SINCE_LAST(orders) > 60") == {("orders", "ordered_at", 60 * 86400, "s"),
                                                     ("orders", "ordered_at", 61 * 86400, "s")}
    assert edges("signup_at > -30d AND city = 'x'") == {("customers", "signup_at", 30, "d")}
    assert edges("last_order_at < -2m") == {("orders", "ordered_at", 2, "m")}
    assert edges("COUNT(tickets WHERE closed_at > -3d) >= 1") == {
        ("tickets", "closed_at", 3, "d")}
    assert edges("SUM(orders.amount) > 5 AND tier = 'A'") == set()
    inner = parse("COUNT(events, LAST 7d) >= 1")
    assert edges("IN_SEGMENT('a') OR city = 'x'", lambda key: inner) == {
        ("events", "occurred_at", 7, "d")}
    assert edges("IN_SEGMENT('a')", lambda key: None) == set()
    # the clock enters in ways without an edge: such segments are swept for everyone
    assert edges("MAX(orders.ordered_at) > -30d") is None
    assert edges("DAYS_SINCE_LAST(orders) > DAYS_SINCE_FIRST(events)") is None
    assert edges("attributes.renewal < -3d") is None


EDGE_RULES = {
    "e_recent": "COUNT(orders, LAST 30d) >= 1",
    "e_viewers": "COUNT(events WHERE type = 'page_view', LAST 14d) >= 2",
    "e_lapsed": "DAYS_SINCE_LAST(orders) > 60",
    "e_second_year": "DAYS_SINCE_FIRST(orders) BETWEEN 300 AND 400",
    "e_new": "signup_at > -45d",
    "e_quiet_sh": "last_order_at < -20d AND city = '上海'",
    "e_months": "SUM(orders.amount, LAST 2m) > 500",
    "e_where": "COUNT(orders WHERE ordered_at > -10d) >= 1",
    "e_nested": "IN_SEGMENT('e_recent') AND COUNT(events, LAST 7d) = 0",
    "e_not": "NOT COUNT(orders, LAST 90d) >= 2",
    "e_today": "signup_at < today AND COUNT(orders, LAST 1d) = 0",
    "e_age": "birth_date > -30y",
    "e_signup_day": "signup_at < -1d",
}


def test_edge_sweeps_equal_a_full_evaluation(ws: tierwise.Workspace) -> None:
    """Sweeping only the customers on the edges, step after step of the clock, leaves
    exactly the members a full evaluation at each instant gives (referrals count for the
    referrer, so their edge is searched by ``referrer_id``)."""
    import random

    rules = {**EDGE_RULES, "e_referrer": "COUNT(referrals, LAST 60d) >= 1",
             "e_referred_lately": "DAYS_SINCE_LAST(referrals) <= 90"}
    for key, rule in rules.items():
        defs.save(ws, defs.SegmentDefinition(key=key, rule=rule))
    membership.evaluate_all(ws, T)
    read_by = incremental.segment_reads(ws)
    keys = [k for k in rules if read_by[k].timed]
    assert keys == list(rules) and all(read_by[k].edges is not None for k in keys)
    resolve = membership.applied_resolver(ws)
    rng = random.Random(5)
    since, moved, looked = T, 0, 0
    while since < T + timedelta(days=150):
        now = since + timedelta(minutes=rng.randint(30, 4 * 24 * 60))
        results = incremental.sweep_since(ws, keys, since, now, read_by)
        assert all(r.error is None and r.reason in ("time", None) for r in results)
        moved += sum((r.entered or 0) + (r.exited or 0) for r in results)
        for key in keys:
            expected = evaluate_rule(ws, rules[key], now, resolve, key)
            assert membership.members_at(ws, key) == expected["customer_id"].to_pylist(), (
                key, now)
        looked += len(incremental.crossing(ws, set().union(*(read_by[k].edges or ()
                                                         for k in keys)), since, now))
        since = now
    assert moved > 100  # the clock did move people, in and out
    with ws.control.read() as conn:
        everyone = len(known_ids(conn))
    steps = 150 * 24 * 60 // ((30 + 4 * 24 * 60) // 2)
    assert looked < everyone * steps / 3  # and the sweeps looked at far fewer than all


def test_the_edge_search_in_memory_finds_what_a_scan_finds(ws: tierwise.Workspace) -> None:
    """The worker searches the edges in the facts kept in memory: the same customers as a
    scan of the files, through new files and merges, and no fact table is scanned."""
    for key, rule in EDGE_RULES.items():
        defs.save(ws, defs.SegmentDefinition(key=key, rule=rule))
    membership.evaluate_all(ws, T)
    edges = incremental.edges_of(list(EDGE_RULES), incremental.segment_reads(ws))
    spans = [(T, T + timedelta(hours=1)), (T + timedelta(days=3), T + timedelta(days=5)),
             (T + timedelta(days=20), T + timedelta(days=50))]
    sessions: list[set[str]] = []
    session = ws.engine.session

    def counted(facts=None, arrow=None):  # type: ignore[no-untyped-def]
        sessions.append(set(facts or ()))
        return session(facts, arrow)

    ws.engine.session = counted  # type: ignore[method-assign]

    def same() -> None:
        ws.facts.keep_rows = True
        for since, now in spans:
            sessions.clear()
            found = incremental.crossing(ws, edges, since, now, in_memory=True)
            assert not set().union(*sessions) - {"customers"}  # no fact table scanned
            assert found == incremental.crossing(ws, edges, since, now), (since, now)
            assert found
        ws.facts.keep_rows = False

    same()
    with ws.control.read() as conn:
        everyone = known_ids(conn).to_pylist()
    for i in range(3):  # rows on the edges of the spans, in files the copy has not seen
        ws.import_source("orders", RecordsSource.from_dicts("batch", [
            {"order_id": f"EDGE{i}-{n}", "customer_id": everyone[10 * i + n],
             "ordered_at": (since - timedelta(days=30, minutes=-30)).isoformat(),
             "amount": 5} for n, (since, _) in enumerate(spans)]))
        ws.import_source("events", RecordsSource.from_dicts("batch", [
            {"event_id": f"EDGE{i}-{n}", "customer_id": everyone[10 * i + n + 5],
             "occurred_at": (since - timedelta(days=14, minutes=-30)).isoformat(),
             "type": "page_view"} for n, (since, _) in enumerate(spans)]))
    same()
    assert {everyone[0], everyone[5]} <= incremental.crossing(ws, edges, *spans[0])
    for table in ("orders", "events"):
        assert ws.facts.compact(ws.engine, table, min_files=2, small_rows=10)[1] == 1
    same()


def test_the_worker_reevaluates_after_imports_and_computes_elsewhere(
        ws: tierwise.Workspace) -> None:
    """An import through the CLI or a compute run does not pass the worker's intake: the
    worker notices and evaluates every segment for everyone."""
    from tierwise.realtime.worker import Worker

    worker = Worker(ws)
    worker.catch_up()
    worker.run_batch()
    with ws.control.read() as conn:
        everyone = known_ids(conn).to_pylist()
    members = set(membership.members_at(ws, "big_spenders"))
    outsider = next(c for c in everyone if c not in members)
    ws.import_source("orders", RecordsSource.from_dicts("a file", [
        {"order_id": "BIG1", "customer_id": outsider, "ordered_at": T.isoformat(),
         "amount": 99_000}]))
    worker.run_batch()
    assert outsider in membership.members_at(ws, "big_spenders")
    with ws.control.read() as conn:
        reasons = {r[0] for r in conn.execute(sa.select(segment_history.c.enter_reason).where(
            segment_history.c.customer_id == outsider,
            segment_history.c.segment_key == "big_spenders"))}
    assert reasons == {"data_change"}


@pytest.mark.parametrize("in_memory", [False, True], ids=["scan", "in_memory"])
def test_the_worker_sweeps_the_edges_since_it_last_looked(ws: tierwise.Workspace,
                                                          in_memory: bool) -> None:
    from tierwise.realtime.worker import Worker
    from tierwise.store.control import utcnow

    defs.save(ws, defs.SegmentDefinition(key="half_year", rule="COUNT(orders, LAST 180d) >= 1"))
    worker = Worker(ws)
    ws.facts.keep_rows = in_memory  # as ``Worker.start`` sets it on DuckDB
    worker.catch_up()
    worker.run_batch()
    earlier = utcnow() - timedelta(days=40)
    # memberships as they were 40 days ago, as if the worker had not looked since
    membership.evaluate_all(ws, earlier, ["half_year"])
    before = set(membership.members_at(ws, "half_year"))
    worker._clock["half_year"] = earlier
    worker._last_edge_sweep = 0.0
    assert not worker.sweep_step()  # starts the search (on its thread when it scans)
    assert worker._search is not None
    assert worker._search[0].done() == in_memory
    worker._search[0].result(timeout=60)
    assert worker.run_batch()  # the next round evaluates what it found
    assert worker._clock["half_year"] > earlier + timedelta(days=39)
    with ws.control.read() as conn:
        now = conn.execute(sa.select(sa.func.max(segment_runs.c.as_of)).where(
            segment_runs.c.segment_key == "half_year")).scalar_one()
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now
    assert now >= worker._clock["half_year"]
    expected = evaluate_rule(ws, "COUNT(orders, LAST 180d) >= 1", now)["customer_id"]
    assert membership.members_at(ws, "half_year") == expected.to_pylist()
    assert before - set(expected.to_pylist())  # some left as their orders aged out
    with ws.control.read() as conn:
        reasons = {r[0] for r in conn.execute(sa.select(segment_history.c.exit_reason).where(
            segment_history.c.segment_key == "half_year",
            segment_history.c.exited_at == now))}
    assert reasons == {"time"}


def test_a_window_edge_is_evaluated_at_its_instant_not_at_the_next_sweep(
        ws: tierwise.Workspace) -> None:
    """The edge search also looks ahead to the next one: a customer whose last event
    leaves a ``LAST 1d`` window three seconds later is evaluated in the first round after
    that instant (the exit recorded within a second of it), with no sweep in between."""
    import time

    from tierwise.realtime.worker import Worker
    from tierwise.store.control import utcnow

    with ws.control.read() as conn:
        customer = sorted(known_ids(conn).to_pylist())[0]
    defs.save(ws, defs.SegmentDefinition(
        key="seen_today", rule="COUNT(events WHERE type = 'rt_expiry', LAST 1d) >= 1"))
    start = utcnow()
    leaves = start + timedelta(seconds=3)
    ws.import_source("events", RecordsSource.from_dicts("t", [
        {"event_id": "EDGE1", "customer_id": customer, "type": "rt_expiry",
         "occurred_at": (leaves - timedelta(days=1)).isoformat()}]))
    worker = Worker(ws)
    ws.facts.keep_rows = True  # as ``Worker.start`` sets it on DuckDB
    worker.catch_up()
    worker.run_batch()
    assert customer in membership.members_at(ws, "seen_today")
    worker._last_edge_sweep = 0.0
    worker.sweep_step()  # the edge search: nobody crossed yet, one crosses in 3 s
    worker.run_batch()
    assert [c for _, c in worker._timers] == [customer]
    assert abs((worker._timers[0][0] - leaves).total_seconds()) < 0.001
    time.sleep(max(0.0, (leaves - utcnow()).total_seconds()) + 0.05)
    assert worker._search is None and time.monotonic() - worker._last_edge_sweep < 10
    worker.run_batch()  # a round, not a sweep
    assert customer not in membership.members_at(ws, "seen_today")
    with ws.control.read() as conn:
        exited, reason = conn.execute(sa.select(
            segment_history.c.exited_at, segment_history.c.exit_reason).where(
            segment_history.c.segment_key == "seen_today",
            segment_history.c.customer_id == customer)).one()
    exited = exited.replace(tzinfo=UTC) if exited.tzinfo is None else exited
    assert reason == "time" and timedelta(0) <= exited - leaves < timedelta(seconds=1)
    assert not worker._timers


def test_a_pass_with_new_rows_and_the_clock_records_each_change_under_its_reason(
        ws: tierwise.Workspace) -> None:
    """An edge search's customers join a micro-batch's pass: a customer with new rows in a
    table the segment reads changes for ``data_change``, one found on a time edge (or
    evaluated only because another table changed for them) for ``time``."""
    earlier = T - timedelta(days=40)
    membership.evaluate_all(ws, earlier, ["recent_buyers"])
    members = set(membership.members_at(ws, "recent_buyers"))
    now_expected = set(_expected(ws, "recent_buyers", T))
    aged = sorted(members - now_expected)  # their last order turned 30 days old since
    with ws.control.read() as conn:
        everyone = sorted(known_ids(conn).to_pylist())
    buyer = next(c for c in everyone if c not in members and c not in now_expected)
    viewer = next(c for c in everyone if c in members and c in now_expected)
    ws.import_source("orders", RecordsSource.from_dicts("test", [
        {"order_id": "CLK1", "customer_id": buyer,
         "ordered_at": (T - timedelta(days=1)).isoformat(), "amount": 10}]))
    results = incremental.evaluate_changed(
        ws, {"orders": {buyer}, "events": {viewer}}, T,
        clock=(["recent_buyers"], set(aged[:3])))
    run = {r.key: r for r in results}["recent_buyers"]
    assert (run.entered, run.exited, run.reason) == (1, 3, "data_change")
    h = segment_history.c
    with ws.control.read() as conn:
        entered = dict(conn.execute(sa.select(h.customer_id, h.enter_reason).where(
            h.segment_key == "recent_buyers", h.entered_at == T)).all())
        exited = dict(conn.execute(sa.select(h.customer_id, h.exit_reason).where(
            h.segment_key == "recent_buyers", h.exited_at == T)).all())
    assert entered == {buyer: "data_change"}
    assert exited == {c: "time" for c in aged[:3]}
    assert viewer in membership.members_at(ws, "recent_buyers")


FACT_RULES = [
    "COUNT(orders, LAST 30d) >= 1",
    "SUM(orders.amount WHERE status = 'paid') >= 500",
    "COUNT(events WHERE type = 'page_view' AND properties.page = '/pricing') >= 1",
    "COUNT(events, LAST 90d) >= 3 OR COUNT(tickets) >= 1",
    "DAYS_SINCE_LAST(orders) > 60",
    "AVG(feedback.csat) < 4",
]


def _members_of(ws: tierwise.Workspace, customers: list[str], keep: bool
                ) -> list[list[str]]:
    from tierwise.compile.segments import compile_rule
    from tierwise.segments.evaluate import Evaluation

    ws.facts.keep_rows = keep
    try:
        with Evaluation(ws, T, customers) as evaluation:
            return [evaluation.run(compile_rule(parse(rule), "duckdb", T, ws.config.zone,
                    vocabulary=WORDS))
                    ["customer_id"].to_pylist() for rule in FACT_RULES]
    finally:
        ws.facts.keep_rows = False


def test_facts_kept_in_memory_read_like_the_files(ws: tierwise.Workspace) -> None:
    """The worker's in-memory copy of the facts (store.customer_rows) gives what the files
    give after appends, compaction, erasure, merges and changed rows."""
    import pyarrow.dataset as ds

    from tierwise.identity.merge import merge, undo
    from tierwise.security import privacy

    with ws.control.read() as conn:
        everyone = sorted(known_ids(conn).to_pylist())
    people = set(ws.sql("SELECT customer_id FROM customers WHERE account_id IS NOT NULL")
                 .column(0).to_pylist())
    chosen = [c for c in everyone if c not in people][::7]  # merged below: no contacts

    def same() -> list[list[str]]:
        from_memory = _members_of(ws, chosen, keep=True)
        assert from_memory == _members_of(ws, chosen, keep=False)
        return from_memory

    first = same()
    assert any(first) and ws.facts.customer_rows("orders").rows > 0
    kept = ws.facts.customer_rows("events").rows
    when = (T - timedelta(days=2)).isoformat()
    for i in range(3):  # micro-batches, each a new file
        ws.import_source("events", RecordsSource.from_dicts("batch", [
            {"event_id": f"KR{i}-{n}", "customer_id": chosen[n], "occurred_at": when,
             "type": "page_view", "properties": {"page": "/pricing"}} for n in range(4)]))
        ws.import_source("orders", RecordsSource.from_dicts("batch", [
            {"order_id": f"KR{i}", "customer_id": chosen[i], "ordered_at": when,
             "amount": 900}]))
    assert same() != first
    assert ws.facts.customer_rows("events").rows == kept + 12
    assert ws.facts.compact(ws.engine, "events", min_files=2, small_rows=10) == (3, 1)
    # the merged file was read before the merge was published, for the next refresh
    assert len(ws.facts.customer_rows("events")._prefetched) == 1
    ws.facts.follow(ws.engine, "events", ahead=True)  # nothing left to read ahead
    assert len(ws.facts.customer_rows("events")._prefetched) == 1
    same()
    assert not ws.facts.customer_rows("events")._prefetched  # taken in by the refresh
    ws.facts.drop_rows("events", ds.field("customer_id") == chosen[0])
    same()
    events = ws.facts.customer_rows("events")
    parts = dict(events._parts)
    merge(ws, chosen[1], [chosen[2]], actor="test")
    same()
    # merges are followed without reading the rows again, also a survivor merged in turn
    # (the rows of the first merged id follow it) ...
    later = merge(ws, chosen[8], [chosen[1]], actor="test")
    assert not any(chosen[1] in members for members in same())  # merged away
    assert events._moved == {chosen[1]: chosen[8], chosen[2]: chosen[8]}
    assert all(events._parts[path] is part for path, part in parts.items())
    # ... and the edge search names the survivor
    assert chosen[8] in events.customers_between("occurred_at", [(T - timedelta(days=3650), T)])
    assert not {chosen[1], chosen[2]} & events.customers_between(
        "occurred_at", [(T - timedelta(days=3650), T)])
    undo(ws, later.merge_id, actor="test")  # redirects taken away: the copy starts over
    same()
    assert events._moved == {}  # read again with the redirects as they are
    assert not any(events._parts.get(path) is part for path, part in parts.items())
    # a merged id longer than every id asked for is still found under its survivor
    long_id = "CUSTOMER-FROM-ANOTHER-SYSTEM-0001"
    ws.import_source("events", RecordsSource.from_dicts("batch", [
        {"event_id": f"KL{n}", "customer_id": long_id, "occurred_at": when,
         "type": "page_view", "properties": {"page": "/pricing"}} for n in range(3)]),
        unknown_customers="create")
    pricing = FACT_RULES.index(
        "COUNT(events WHERE type = 'page_view' AND properties.page = '/pricing') >= 1")
    survivor = next(c for c in chosen[10:] if c not in same()[pricing])
    merge(ws, survivor, [long_id], actor="test")
    members = same()
    assert events._moved.get(long_id) == survivor  # followed, not read again
    assert survivor in members[pricing]  # through the long id's rows
    privacy.erase_customer(ws, chosen[3])
    same()
    # changed rows stored again: the newest version wins across files, also when the
    # change moves the row to another customer, after merging the newest files, after a
    # third version, and once every file is merged
    ws.import_source("orders", RecordsSource.from_dicts("batch", [
        {"order_id": "KR0", "customer_id": chosen[0], "ordered_at": when, "amount": 900,
         "status": "refunded"}]))
    assert ws.facts.scan("orders").dedupe
    same()
    rows = ws.facts.customer_rows("orders")
    assert rows.refresh(ws.engine, ws.facts.scan("orders"), rows.columns)  # from memory
    big = {"order_id": "KR1", "ordered_at": when, "amount": 5000}
    ws.import_source("orders", RecordsSource.from_dicts("batch", [
        {**big, "customer_id": chosen[5]}]))
    moved = same()
    assert ws.facts.compact(ws.engine, "orders", min_files=2, small_rows=10)[0] >= 2
    assert same() == moved
    ws.import_source("orders", RecordsSource.from_dicts("batch", [
        {**big, "customer_id": chosen[6], "amount": 7000}]))
    third = same()
    assert third != moved
    # the newest version dropped (as erasure or retention would): the one before is back
    ws.facts.drop_rows("orders", (ds.field("order_id") == "KR1")
                       & (ds.field("customer_id") == chosen[6]))
    assert same() == moved
    ws.facts.compact(ws.engine, "orders", min_files=2)
    assert same() == moved


def test_rules_of_a_batch_run_in_one_query(ws: tierwise.Workspace) -> None:
    from dataclasses import replace

    from tierwise.compile.compiled import flat_query
    from tierwise.compile.segments import compile_batch
    from tierwise.segments.evaluate import Evaluation

    ws.compute(T)
    membership.evaluate_all(ws, T)
    rules = {f"r{i}": parse(rule) for i, rule in enumerate(FACT_RULES)}
    rules["in_vip_or_shanghai"] = parse("IN_SEGMENT('vip') OR city = '上海'")
    # fields of the snapshot and lead scores: the tables a flat rule joins besides its
    # aggregates
    rules["tier_active"] = parse("tier IN ('A', 'B') AND COUNT(events, LAST 90d) >= 1")
    rules["scored_or_lapsed"] = parse("lead_score >= 0 OR lifecycle = 'churned'")
    batch = compile_batch(rules, "duckdb", T, ws.config.zone, membership.applied_resolver(ws),
            vocabulary=WORDS)
    with ws.control.read() as conn:
        chosen = sorted(known_ids(conn).to_pylist())[::3]
    with Evaluation(ws, T, chosen) as evaluation:
        evaluation.prepare(batch)
        # every rule has a flat form (IN_SEGMENT's subquery included): one SELECT with a
        # column per rule
        assert flat_query(list(batch.rules.values())) is not None
        spark = compile_batch(rules, "spark", T, ws.config.zone,
                              membership.applied_resolver(ws),
                              subqueries_in_columns=False, vocabulary=WORDS).rules
        assert [k for k, r in spark.items() if r.condition is None] == ["in_vip_or_shanghai"]
        def members(found: dict[str, pa.Array] | None) -> dict[str, list[str]]:
            assert found is not None
            return {k: sorted(v.to_pylist()) for k, v in found.items()}

        together = members(evaluation.run_many(batch.rules))
        one_by_one = {k: sorted(evaluation.run(c)["customer_id"].to_pylist())
                      for k, c in batch.rules.items()}
        assert together == one_by_one and any(together.values())
        # one rule without a flat form: the rules run as a UNION of their SELECTs
        mixed = {**batch.rules, "r0": replace(batch.rules["r0"], condition=None)}
        assert flat_query(list(mixed.values())) is None
        assert members(evaluation.run_many(mixed)) == one_by_one
        # the engine refuses the flat form (Spark takes no IN (SELECT …) as a column): the
        # UNION still answers
        refused = {**batch.rules, "r0": replace(batch.rules["r0"],
                                                condition="c.no_such_column")}
        assert members(evaluation.run_many(refused)) == one_by_one
        for rules in (batch.rules, mixed):
            broken = {**rules, "bad": replace(
                batch.rules["r0"], sql="SELECT customer_id FROM no_such_table",
                condition="c.customer_id IN (SELECT customer_id FROM no_such_table)")}
            assert evaluation.run_many(broken) is None


def test_compiled_rules_carry_what_they_read() -> None:
    """Parameters, tables and columns come from the rule's tree, not from its SQL text: a
    column named like a table or a parameter named like a column cannot confuse them."""
    from tierwise.compile.segments import compile_batch, compile_rule

    names = ("event_id", "customer_id", "occurred_at", "type", "properties")
    one = compile_rule(parse("COUNT(events WHERE type = 'orders') >= 2 AND city = 'x'"),
                       "duckdb", T, ZoneInfo("Asia/Shanghai"), vocabulary=WORDS)
    assert {"events", "customers"} <= one.sources and "orders" not in one.sources
    assert one.columns_in(names) == ("customer_id", "occurred_at", "type")
    assert set(one.params.values()) >= {"orders", "x", 2} and "as_of" in one.params
    batch = compile_batch({"a": parse("SUM(orders.amount, LAST 30d) > 5"),
                           "b": parse("tier = 'A'")}, "duckdb", T, ZoneInfo("Asia/Shanghai"),
                                   vocabulary=WORDS)
    # the passes only (a rule LEFT JOINs their table to the customers)
    assert batch.sources == {"orders"}
    # revenue counts paid orders only: the status is read too, the product is not
    assert batch.aggregates_columns_in(("customer_id", "amount", "status", "product_id",
                                        "ordered_at")) \
        == ("customer_id", "amount", "status", "ordered_at")
    assert "snapshot" in batch.rules["b"].sources and "orders" not in batch.rules["b"].sources
    assert "A" in batch.rules["b"].params.values()
    assert 5 not in batch.rules["b"].params.values()


def test_the_worker_sums_up_its_rounds_and_names_the_steps_of_a_slow_one(
        ws: tierwise.Workspace, caplog: pytest.LogCaptureFixture) -> None:
    from tierwise.realtime.worker import SLOW_ROUND_SECONDS, Worker

    worker = Worker(ws)
    for i in range(100):
        worker._round(0.01 * (i + 1), swept=i % 10 == 0)
    assert worker.stats.round_p50_seconds == 0.51
    assert worker.stats.round_p99_seconds == 1.0
    assert worker.stats.round_max_seconds == 1.0
    assert worker.stats.sweep_rounds == 10
    worker._steps.update({"flush": 0.2, "evaluate": SLOW_ROUND_SECONDS})
    worker._carried.update(rows=2000, customers=1900)
    with caplog.at_level("WARNING", logger="tierwise.worker"):
        worker._round(SLOW_ROUND_SECONDS + 0.2, swept=False)
    assert re.search(r"a round took 1\.200 s from \d+\.\d{3} \(flush 0\.200 s, evaluate "
                     r"1\.000 s; rows 2000, customers 1900\)", caplog.text)


def test_maintenance_runs_half_way_between_edge_searches(ws: tierwise.Workspace) -> None:
    """Merges start apart from the edge searches: the round after a search carries its
    customers, and a merge beside it would make it slower still."""
    import time

    from tierwise.realtime.worker import Worker

    worker = Worker(ws)
    every = ws.config.sweep_seconds
    now = time.monotonic()
    worker._last_sweep, worker._last_edge_sweep = now - every, now - 0.1 * every
    assert not worker._maintenance_due()  # a search just started: wait
    worker._last_edge_sweep = now - 0.6 * every
    assert worker._maintenance_due()
    worker._last_sweep = now - 0.5 * every  # and not more often than every sweep_seconds
    assert not worker._maintenance_due()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities: Linux")
def test_the_background_thread_yields_the_cores(ws: tierwise.Workspace) -> None:
    """Merges run on a thread of lower priority, with a DuckDB of one thread of its own:
    beside them the loop's rounds took ~70 % longer."""
    import os
    import threading

    from tierwise.realtime.compaction import BACKGROUND_NICENESS
    from tierwise.realtime.worker import Worker

    worker = Worker(ws)
    try:
        nice = worker._background.submit(
            lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
        assert nice >= BACKGROUND_NICENESS
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < nice
        assert worker._background_engine is not ws.engine
        assert worker._background_engine.threads == 1  # type: ignore[attr-defined]
    finally:
        worker._background.shutdown()


@contextmanager
def _caught_up(ws: tierwise.Workspace) -> Iterator[Any]:
    """A worker started on ``ws`` (its own thread), once it has caught up; stopped after."""
    import time

    from tierwise.realtime.worker import Worker

    worker = Worker(ws)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while not worker.caught_up.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.caught_up.is_set()
        yield worker
    finally:
        worker.stop()


def test_rounds_are_paced_under_steady_load_and_start_at_once_when_idle(
        ws: tierwise.Workspace) -> None:
    """With ``realtime_round_seconds``, rows posted every 50 ms gather into rounds at most
    that often instead of each post starting one; a row arriving while the worker is
    idle is moved without waiting for that pause. (Counts and margins, not speed: a
    slower machine makes fewer rounds, and the pause is 2 s.)"""
    import time
    from dataclasses import replace

    from tierwise.realtime import intake

    with ws.control.read() as conn:
        someone = known_ids(conn)[0].as_py()

    def post(n: int) -> None:
        intake.receive(ws, "events", [{"event_id": f"pace-{n}", "customer_id": someone,
                                       "type": "page_view",
                                       "occurred_at": datetime.now(UTC).isoformat()}])
        worker.notify()

    def moved(n: int, within: float) -> bool:
        deadline = time.monotonic() + within
        while worker.stats.rows_moved < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return worker.stats.rows_moved >= n

    ws.config = replace(ws.config, realtime_round_seconds=2.0)  # type: ignore[misc]
    with _caught_up(ws) as worker:
        time.sleep(2.5)  # idle for longer than the pause
        post(0)
        assert moved(1, within=1.5)  # at once, not after the 2 s pause
        rounds = worker.stats.batches
        for n in range(1, 49):  # 2.4 s of steady posts
            post(n)
            time.sleep(0.05)
        assert moved(49, within=10)
        assert intake.pending(ws) == {}
        # back to back, every post (or every few on a slow machine) would have a round
        assert worker.stats.batches - rounds <= 4


def test_the_round_setting_is_checked(tmp_path: Path) -> None:
    from tierwise.config import WorkspaceConfig
    from tierwise.errors import WorkspaceError

    assert WorkspaceConfig().realtime_round_seconds == 0.25
    for bad in (-1, 11):
        with pytest.raises(WorkspaceError, match="realtime_round_seconds .*expected 0 to 10"):
            WorkspaceConfig(realtime_round_seconds=bad)


def test_the_worker_catches_up_on_every_core_and_runs_its_rounds_on_one(
        ws: tierwise.Workspace) -> None:
    """Catching up (every rule for everyone) runs on DuckDB's default, a thread a core;
    once caught up, the worker's process runs its queries on one."""
    def threads() -> int:
        with ws.engine.session() as session:
            return int(session.query("SELECT current_setting('threads') AS n")["n"][0].as_py())

    with _caught_up(ws):
        assert threads() == 1
