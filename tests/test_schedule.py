"""The scheduler with a clock the test controls: nightly compute and evaluation once per
night, a missed night once at start-up, one runner among several servers, the review."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from tests.api_helpers import build
from tests.receivers import smtp_receiver
from tests.test_cli import tw

import tierwise
from tierwise.config import WorkspaceConfig
from tierwise.errors import WorkspaceError
from tierwise.server import schedule
from tierwise.store.tables import segment_runs, snapshots

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _local(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)  # type: ignore[misc]


def _count(ws: tierwise.Workspace, table: sa.Table) -> int:
    with ws.control.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)


def test_due_instants_follow_the_local_calendar() -> None:
    config = WorkspaceConfig()
    nightly = schedule.Plan("compute", "daily", (2, 0))
    assert nightly.due(_local(2026, 3, 10, 1, 59), config) == _local(2026, 3, 9, 2, 0)
    assert nightly.due(_local(2026, 3, 10, 2, 0), config) == _local(2026, 3, 10, 2, 0)
    assert nightly.after(_local(2026, 3, 10, 2, 0), config) == _local(2026, 3, 11, 2, 0)
    monthly = schedule.Plan("review", "monthly", (6, 0))
    assert monthly.due(_local(2026, 1, 1, 5, 0), config) == _local(2025, 12, 1, 6, 0)
    assert monthly.after(_local(2026, 12, 15), config) == _local(2027, 1, 1, 6, 0)
    quarterly = schedule.Plan("review", "quarterly", (6, 0))
    assert quarterly.due(_local(2026, 6, 30, 23), config) == _local(2026, 4, 1, 6, 0)
    assert schedule.review_period("quarterly", _local(2026, 4, 1, 6), config) == "2026Q1"
    assert schedule.review_period("monthly", _local(2026, 1, 1, 6), config) == "2025-12"
    # a local time across a daylight-saving change stays the wall-clock time
    berlin = WorkspaceConfig(timezone="Europe/Berlin")
    before = datetime(2026, 3, 28, 2, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert nightly.after(before, berlin).hour == 2
    with pytest.raises(WorkspaceError, match="schedule_compute"):
        WorkspaceConfig(schedule_compute="2am")


def test_nightly_compute_runs_once_and_a_missed_night_once(tmp_path: Path) -> None:
    ws = build(tmp_path, schedule_review="off").ws
    clock = Clock(_local(2026, 3, 10, 1, 0))
    scheduler = schedule.Scheduler(ws, clock=clock)
    snaps, runs = _count(ws, snapshots), _count(ws, segment_runs)
    assert scheduler.tick() == []  # the first start records where the schedule starts
    assert _count(ws, snapshots) == snaps
    clock.at = _local(2026, 3, 10, 2, 0, 30)
    [done] = scheduler.tick()
    assert done["status"] == "done" and done["due"] == _local(2026, 3, 10, 2, 0)
    assert done["result"]["segments"] >= 2
    assert _count(ws, snapshots) == snaps + 1 and _count(ws, segment_runs) > runs
    clock.at = _local(2026, 3, 10, 2, 45)
    assert scheduler.tick() == []  # once a night
    assert _count(ws, snapshots) == snaps + 1
    # the server was down for three nights: one run at start-up, not three
    clock.at = _local(2026, 3, 13, 9, 0)
    restarted = schedule.Scheduler(ws, clock=clock, holder="another start")
    assert [r["due"] for r in restarted.tick()] == [_local(2026, 3, 13, 2, 0)]
    assert restarted.tick() == []
    assert _count(ws, snapshots) == snaps + 2
    listed = {j["job"]: j for j in schedule.overview(ws, clock.at)}
    assert listed["compute"]["next"] == _local(2026, 3, 14, 2, 0)
    assert [r["status"] for r in listed["compute"]["runs"]][:2] == ["done", "done"]
    assert listed["review"]["schedule"] == "off"
    ws.close()


def test_two_servers_never_both_run_a_job(tmp_path: Path) -> None:
    ws = build(tmp_path).ws
    calls: list[str] = []

    def slow(ws: tierwise.Workspace, due: datetime) -> dict[str, Any]:
        calls.append(threading.current_thread().name)
        time.sleep(0.5)
        return {"slow": True}

    clock = Clock(_local(2026, 3, 10, 1, 0))
    schedule.Scheduler(ws, clock=clock).tick()  # the schedule's start
    clock.at = _local(2026, 3, 10, 2, 1)
    servers = [schedule.Scheduler(tierwise.open(ws.root), clock=clock, holder=f"server {i}",
                                  runners={"compute": slow, "review": slow})
               for i in range(2)]
    threads = [threading.Thread(target=s.tick, name=f"server {i}")
               for i, s in enumerate(servers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    for s in servers:
        assert s.tick() == []
        s.ws.close()
    ws.close()


def test_the_review_is_written_and_mailed_on_the_first_of_the_month(tmp_path: Path) -> None:
    with smtp_receiver() as box:
        ws = build(tmp_path, schedule_compute="off",
                   smtp_url=f"smtp://127.0.0.1:{box.port}",
                   review_subscribers=["ops@example.com", "boss@example.com"]).ws
        clock = Clock(_local(2026, 3, 20))
        scheduler = schedule.Scheduler(ws, clock=clock)
        scheduler.tick()
        clock.at = _local(2026, 4, 1, 6, 5)
        [done] = scheduler.tick()
        assert done["status"] == "done", done
        assert done["result"]["period"] == "2026-03" and done["result"]["mailed_to"] == 2
        html = ws.root / "reports" / "reviews" / "review-2026-03.html"
        assert "2026-03" in html.read_text("utf-8")
        assert (ws.root / "reports" / "reviews" / "review-2026-03.pdf").read_bytes()[:4] \
            == b"%PDF"
        [mail] = box.messages
        assert "ops@example.com" in mail["To"] and "2026-03" in mail["Subject"]
        assert sorted(p.get_filename() for p in mail.iter_attachments()) == [
            "review-2026-03.html", "review-2026-03.pdf"]
    # the mail server is gone: the job fails and says where the report is
    ws.config = replace(ws.config, smtp_url="smtp://127.0.0.1:9")  # type: ignore[misc]
    failed = scheduler.run("review")
    assert failed is not None and failed["status"] == "failed"
    assert "review-" in failed["error"] and "not e-mailed" in failed["error"]
    ws.close()


def test_schedule_from_the_command_line(tmp_path: Path) -> None:
    ws = build(tmp_path, schedule_review="quarterly").ws
    root = str(ws.root)
    listed = tw("schedule", "-w", root)
    assert "daily at 02:00" in listed and "quarterly at 06:00" in listed
    out = tw("schedule", "run", "compute", "-w", root)
    assert "compute done: customers" in out
    assert "done" in tw("schedule", "-w", root)
    assert "no job" in tw("schedule", "run", "backup", "-w", root, code=1)
    ws.close()


def test_metrics_and_health(tmp_path: Path) -> None:
    import json
    import logging

    from prometheus_client.parser import text_string_to_metric_families

    from tierwise.server.metrics import JsonFormatter

    served = build(tmp_path)
    assert served.client().get("/metrics").status_code == 401
    assert served.client().get("/health/live").json() == {"status": "ok"}
    stopped = served.client().get("/health/ready")  # no lifespan: the worker never started
    assert stopped.status_code == 503
    assert stopped.json()["checks"] == {"control_store": "ok", "worker": "not running"}
    with served.client("viewer") as client:  # the lifespan starts the worker
        deadline = time.monotonic() + 30
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline, client.get("/health/ready").json()
            time.sleep(0.1)
        answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert samples[("tierwise_import_rows", (("table", "orders"),))] == 6
    assert samples[("tierwise_segment_members", (("segment", "buyers"),))] >= 3
    assert ("tierwise_intake_rows_received_total", ()) in samples
    assert {"tierwise_deliveries", "tierwise_outbox_backlog", "tierwise_worker_round_seconds",
            "tierwise_job_runs", "tierwise_membership_changes",
            "tierwise_worker_rows_handed"} <= set(families)
    assert "C001" not in answer.text and "@" not in answer.text
    record = logging.LogRecord("tierwise.api", logging.INFO, __file__, 1, "hello %s", ("世界",),
                               None)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello 世界" and line["level"] == "info"
    served.ws.close()


def test_prune_keeps_month_ends_pending_deliveries_and_recent_reports(tmp_path: Path) -> None:
    import os
    from datetime import UTC, timedelta

    from tierwise.security.housekeeping import prune
    from tierwise.store.control import utcnow
    from tierwise.store.tables import outbox

    ws = build(tmp_path).ws
    for day in ((2025, 1, 10), (2025, 1, 20), (2025, 2, 5)):
        ws.compute(as_of=datetime(*day, 12, tzinfo=UTC))
    with ws.control.read() as conn:
        before = [r.as_of.day for r in conn.execute(sa.select(snapshots)
                                                    .order_by(snapshots.c.snapshot_id))]
    assert before[-3:] == [10, 20, 5]
    old = utcnow() - timedelta(days=400)
    with ws.control.write() as conn:
        for i, status in enumerate(("delivered", "dead", "pending", "held", "suppressed")):
            conn.execute(outbox.insert().values(
                idempotency_key=f"k{i}", source="trigger:t", event="enter", customer_id="C001",
                action="tag", payload="{}", status=status, next_attempt_at=old, created_at=old))
    reports = ws.root / "reports" / "imports"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "old.csv").write_text("x")
    (reports / "new.csv").write_text("x")
    os.utime(reports / "old.csv", (old.timestamp(), old.timestamp()))
    done = prune(ws, now=utcnow() + timedelta(days=120))
    assert done["deliveries"] == 3 and done["import_reports"] == 1
    with ws.control.read() as conn:
        left = sorted(r.status for r in conn.execute(sa.select(outbox.c.status)))
        kept = [r.as_of.day for r in conn.execute(sa.select(snapshots)
                                                  .order_by(snapshots.c.snapshot_id))]
    assert left == ["held", "pending"]
    assert 10 not in kept and kept[-2:] == [20, 5]  # January's last and the latest
    assert done["snapshots"] == len(before) - len(kept)
    assert not (reports / "old.csv").exists() and (reports / "new.csv").exists()
    out = tw("status", "-w", str(ws.root))
    assert "Space" in out and "audit_log" in out and "snapshots" in out
    ws.close()
