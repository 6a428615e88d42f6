"""Partitions of the real-time plane: two workers, each owning half of the customers, give
what one worker gives."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import pytest
import sqlalchemy as sa

import tierwise
from tierwise.definitions.partitions import BUCKETS, Partition, bucket
from tierwise.demo.generator import DemoSpec
from tierwise.demo.load import load_generated
from tierwise.errors import WorkspaceError
from tierwise.identity.merge import merge
from tierwise.ingest.readers import RecordsSource
from tierwise.realtime import intake
from tierwise.segments import catalog as defs
from tierwise.segments import membership
from tierwise.segments.evaluate import evaluate_rule
from tierwise.store import customers as customer_store
from tierwise.store import leases
from tierwise.store.control import utcnow
from tierwise.store.tables import intake as intake_table
from tierwise.store.tables import segment_history, segment_members

RULES = {
    "recent_buyers": "COUNT(orders, LAST 30d) >= 1",
    "big_spenders": "SUM(orders.amount) >= 3000",
    "browsers": "COUNT(events WHERE type = 'page_view', LAST 14d) >= 2",
    "shanghai_recent": "city = '上海' AND IN_SEGMENT('recent_buyers')",
    "lapsed": "DAYS_SINCE_LAST(orders) > 60",
    "busy_accounts": "COUNT(account_events, LAST 30d) >= 3",
    "committees": "COUNT(contacts) >= 2",
    "with_tickets": "COUNT(tickets) >= 1",
}


def test_every_customer_has_exactly_one_partition() -> None:
    ids = [f"C{i:06d}" for i in range(5000)]
    for count in (1, 2, 3, 7):
        owners = Counter(next(p for p in range(count) if Partition(p, count).owns(c))
                         for c in ids)
        assert sum(owners.values()) == len(ids)
        assert all(sum(Partition(p, count).owns(c) for p in range(count)) == 1 for c in ids)
        # the hash spreads them: no partition has more than 1.15 of its share
        assert max(owners.values()) <= 1.15 * len(ids) / count, owners
    assert all(0 <= bucket(c) < BUCKETS for c in ids)
    with pytest.raises(ValueError, match="partition 2 of 2"):
        Partition(2, 2)
    assert Partition(0, 1).mine(["a", "b"], {}) == {"a", "b"}


def test_owner_keys_follow_accounts_and_merges(tmp_path: Path) -> None:
    ws = tierwise.init(tmp_path / "ws")
    try:
        ws.import_source("customers", _records([
            {"customer_id": "A1"}, {"customer_id": "A2"}, {"customer_id": "S"},
            {"customer_id": "M"}, {"customer_id": "P1", "account_id": "A1", "role": "user"},
            {"customer_id": "P2", "account_id": "A2", "role": "user"}]))
        merge(ws, "S", ["M"], actor="test")
        merge(ws, "A1", ["A2"], actor="test")  # P2 now works for A1, through the merge
        with ws.control.read() as conn:
            some = customer_store.owner_keys(conn, ["P1", "P2", "M", "S", "A2", "nobody"])
            every = customer_store.owner_keys(conn)
        assert some == {"P1": "A1", "P2": "A1", "M": "S", "S": "S", "A2": "A1",
                        "nobody": "nobody"}
        assert every == {"A1": "A1", "S": "S", "P1": "A1", "P2": "A1"}
    finally:
        ws.close()


def test_partitions_need_postgresql_and_a_sane_count(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="PostgreSQL control store"):
        tierwise.init(tmp_path / "a", realtime_partitions=2)
    with pytest.raises(WorkspaceError, match="realtime_partitions = 0: expected 1 to 1024"):
        tierwise.init(tmp_path / "b", realtime_partitions=0)


def test_a_lease_has_one_holder_when_two_take_it_at_once(pg_url: str,
                                                          tmp_path: Path) -> None:
    """Two processes find the lease expired at the same moment: the second's update waits
    for the first's commit, then finds the lease held (it used to take it as well)."""
    ws = tierwise.init(tmp_path / "ws", control_store=pg_url)
    try:
        now = utcnow()
        with ws.control.write() as conn:
            assert leases.take(conn, "l", "one", now, 15)
        with ws.control.write() as conn:
            assert not leases.take(conn, "l", "two", now, 15)
        later = now + timedelta(seconds=20)  # expired for both
        with ws.control.engine.connect() as first:
            first.begin()
            assert leases.take(first, "l", "one", later, 15)
            second = ThreadPoolExecutor(1).submit(_take, ws, "two", later)
            time.sleep(0.5)  # the second waits for the first's row
            assert not second.done()
            first.commit()
        assert second.result(timeout=30) is False
    finally:
        ws.close()


def _take(ws: tierwise.Workspace, holder: str, now: datetime) -> bool:
    with ws.control.write() as conn:
        return leases.take(conn, "l", holder, now, 15)


def _records(rows: list[dict[str, object]]) -> RecordsSource:
    return RecordsSource.from_dicts("test", rows)


# -- two workers on one PostgreSQL workspace ----------------------------------------------
def _workspace(path: Path, url: str, partitions: int) -> tierwise.Workspace:
    ws = tierwise.init(path, control_store=url, realtime_partitions=partitions)
    load_generated(ws, DemoSpec(customers=400, seed=23))  # up to yesterday
    for key, rule in RULES.items():
        defs.save(ws, defs.SegmentDefinition(key=key, rule=rule))
    return ws


def _start(ws: tierwise.Workspace) -> subprocess.Popen[bytes]:
    """A worker process; its output goes to files (a pipe nobody reads while it runs fills
    up with the log and stops it)."""
    name = uuid.uuid4().hex[:8]
    out = open(ws.root / f"worker-{name}.out", "w+b")  # noqa: SIM115 - closed by _stop
    err = open(ws.root / f"worker-{name}.err", "w+b")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "tierwise.cli.main", "worker", "-w",
                               str(ws.root), "--seconds", "240"], stdout=out, stderr=err)
    _outputs[worker.pid] = (out, err)
    return worker


_outputs: dict[int, tuple[BinaryIO, BinaryIO]] = {}


def _stop(workers: list[subprocess.Popen[bytes]]) -> list[dict[str, object]]:
    """Stop the workers as a process manager does (SIGTERM); what each says it did
    (``tierwise worker`` prints its stats)."""
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    stats = []
    for worker in workers:
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise
        texts = []
        for stream in _outputs.pop(worker.pid):
            stream.seek(0)
            texts.append(stream.read().decode())
            stream.close()
        out, err = texts
        assert "Traceback" not in err and worker.returncode == 0, err
        stats.append(json.loads(out.strip().splitlines()[-1]))
    return stats


def _settle(workspaces: list[tierwise.Workspace], timeout: float = 120.0) -> None:
    """Until no row waits and the memberships stay the same for two seconds."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        now = [(intake.pending(ws), _members(ws)) for ws in workspaces]
        if all(not pending for pending, _ in now) and now == last:
            return
        last = now
        time.sleep(2.0)
    raise AssertionError(f"not settled: waiting {[intake.pending(ws) for ws in workspaces]}")


def _members(ws: tierwise.Workspace) -> dict[str, list[str]]:
    m = segment_members.c
    found: dict[str, list[str]] = {key: [] for key in RULES}
    with ws.control.read() as conn:
        for key, customer in conn.execute(sa.select(m.segment_key, m.customer_id)
                                          .order_by(m.segment_key, m.customer_id)):
            found[key].append(customer)
    return found


def _history(ws: tierwise.Workspace) -> Counter[tuple[str, str, bool]]:
    """Each entry into a segment, and whether it was left."""
    h = segment_history.c
    with ws.control.read() as conn:
        return Counter((key, customer, exited is not None) for key, customer, exited in
                       conn.execute(sa.select(h.segment_key, h.customer_id, h.exited_at)))


def _post(ws: tierwise.Workspace, tag: str, customers: list[str], contacts: list[str],
          strangers: list[str]) -> None:
    when = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    intake.receive(ws, "orders", [
        {"order_id": f"{tag}-O{i}", "customer_id": c, "ordered_at": when, "amount": 4000}
        for i, c in enumerate(customers + strangers)])
    intake.receive(ws, "events", [
        {"event_id": f"{tag}-E{i}-{n}", "customer_id": c, "occurred_at": when,
         "type": "page_view" if i % 2 else "webinar"}
        for i, c in enumerate(customers[::3] + contacts) for n in range(3)])
    intake.receive(ws, "tickets", [
        {"ticket_id": f"{tag}-T{i}", "customer_id": c, "opened_at": when}
        for i, c in enumerate(customers[::5])])


def test_two_workers_each_owning_half_give_what_one_gives(
        pg_databases: object, tmp_path: Path) -> None:
    """One worker on one workspace and two workers, each with one partition, on its twin
    (same data, same PostgreSQL server) are given the same rows, a merge across the two
    halves and a restart; memberships and membership history come out the same, and the
    same as evaluating every rule for everyone."""
    make = pg_databases  # type: ignore[assignment]
    one = _workspace(tmp_path / "one", make(), 1)  # type: ignore[operator]
    two = _workspace(tmp_path / "two", make(), 2)  # type: ignore[operator]
    try:
        with two.control.read() as conn:
            everyone = sorted(customer_store.ids(conn).to_pylist())
            keys = customer_store.owner_keys(conn)
            links = dict(customer_store.contact_links(conn))
        halves = [Partition(i, 2) for i in range(2)]
        private = [c for c in everyone if c not in links and keys[c] == c
                   and c not in set(links.values())]
        contacts = sorted(links)[:24]
        assert contacts and {halves[0].owns(keys[c]) for c in contacts} == {True, False}
        customers = private[:60]
        survivor = next(c for c in private[60:] if halves[0].owns(c))
        merged = next(c for c in private[60:] if halves[1].owns(c))

        workers = [_start(one), _start(two), _start(two)]
        try:
            _wait_for_leases(two, 2)
            for ws in (one, two):
                _post(ws, "R1", customers, contacts, ["NEW-1", "NEW-2"])
            _settle([one, two])
        finally:
            stats = _stop(workers)
        # the one worker holds everything; each of the two moved its own half's rows
        assert stats[0]["partition"] == "" and stats[0]["rows_moved"] > 0
        assert sorted(s["partition"] for s in stats[1:]) == ["1/2", "2/2"]
        assert all(s["rows_moved"] > 0 and s["errors"] == 0 for s in stats)

        # while no worker runs: rows for a customer, then a merge that gives them to the
        # other half
        for ws in (one, two):
            _post(ws, "R2", [merged, *customers[30:40]], contacts[:6], ["NEW-3"])
            merge(ws, survivor, [merged], actor="test")
        with two.control.read() as conn:
            buckets = {b for (b,) in conn.execute(sa.select(intake_table.c.bucket).where(
                intake_table.c.row_key.like("R2-O0#%")))}
        assert buckets == {bucket(merged)}  # received before the merge: the old owner's

        workers = [_start(one), _start(two), _start(two)]
        try:
            _wait_for_leases(two, 2)
            _settle([one, two])
            with two.control.read() as conn:
                buckets = {b for (b,) in conn.execute(sa.select(intake_table.c.bucket).where(
                    intake_table.c.row_key.like("R2-O0#%")))}
            assert buckets == {bucket(survivor)}  # handed to the survivor's partition
        finally:
            stats = _stop(workers)
        assert sum(s["rows_handed"] for s in stats[1:]) >= 3  # the order, events, ticket
        assert stats[0]["rows_handed"] == 0

        found = _members(two)
        assert found == _members(one)
        assert _history(two) == _history(one)
        # and both are what evaluating every rule for everyone gives
        now = utcnow()
        resolve = membership.applied_resolver(two)
        for key, rule in RULES.items():
            assert found[key] == sorted(evaluate_rule(two, rule, now, resolve, key)
                                        ["customer_id"].to_pylist()), key
        assert survivor in found["big_spenders"] and merged not in found["big_spenders"]
        assert "NEW-3" in found["recent_buyers"]
        assert any(c in found["busy_accounts"] for c in links.values())
    finally:
        one.close()
        two.close()


def _wait_for_leases(ws: tierwise.Workspace, count: int, timeout: float = 60.0) -> None:
    """Until ``count`` partitions are held, by as many processes."""
    from tierwise.store.tables import leases as lease_table

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with ws.control.read() as conn:
            held = dict(conn.execute(sa.select(lease_table.c.name, lease_table.c.holder)
                                     .where(lease_table.c.expires_at > utcnow())).all())
        parts = {k: v for k, v in held.items() if k.startswith("realtime-worker:")}
        if len(parts) == count and len(set(parts.values())) == count:
            return
        time.sleep(0.5)
    raise AssertionError(f"partitions not taken: {held}")



def test_a_spare_worker_takes_over_a_stopped_partition(pg_url: str, tmp_path: Path) -> None:
    """Three processes for two partitions: the third waits. Killing the holder of one
    partition (no release: its lease runs out) hands that partition to the spare, which
    catches up and moves the rows posted meanwhile; the memberships end up as a full
    evaluation gives."""
    ws = _workspace(tmp_path / "ws", pg_url, 2)
    try:
        with ws.control.read() as conn:
            keys = customer_store.owner_keys(conn)
        second = sorted(c for c, key in keys.items() if c == key and Partition(1, 2).owns(c))
        workers = [_start(ws) for _ in range(3)]
        try:
            _wait_for_leases(ws, 2)
            held = _holders(ws)
            victim = next(w for w in workers if w.pid == held["realtime-worker:1/2"])
            spare = next(w for w in workers if w.pid not in held.values())
            _post(ws, "K1", second[:20], [], [])
            _settle([ws])
            victim.kill()
            victim.wait(timeout=30)
            for stream in _outputs.pop(victim.pid):
                stream.close()
            _post(ws, "K2", second[20:40], [], [])
            deadline = time.monotonic() + 60
            while _holders(ws).get("realtime-worker:1/2") != spare.pid:
                assert time.monotonic() < deadline, _holders(ws)
                time.sleep(0.5)
            _settle([ws])
        finally:
            survivors = [w for w in workers if w.poll() is None]
            stats = _stop(survivors)
        assert sorted(s["partition"] for s in stats) == ["1/2", "2/2"]
        assert next(s for w, s in zip(survivors, stats, strict=True) if w is spare
                    )["rows_moved"] > 0
        found, now = _members(ws), utcnow()
        resolve = membership.applied_resolver(ws)
        for key, rule in RULES.items():
            assert found[key] == sorted(evaluate_rule(ws, rule, now, resolve, key)
                                        ["customer_id"].to_pylist()), key
        assert set(second[20:40]) <= set(found["big_spenders"])
    finally:
        ws.close()


def _holders(ws: tierwise.Workspace) -> dict[str, int]:
    """The process id holding each live partition lease."""
    from tierwise.store.tables import leases as lease_table

    with ws.control.read() as conn:
        rows = conn.execute(sa.select(lease_table.c.name, lease_table.c.holder).where(
            lease_table.c.expires_at > utcnow(),
            lease_table.c.name.like("realtime-worker:%"))).all()
    return {name: int(holder.split(":")[1]) for name, holder in rows}
