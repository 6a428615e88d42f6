"""Real-time intake: durable, idempotent, validated, moved to the fact store."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.api_helpers import Served, build

from tierwise.realtime import intake


@pytest.fixture
def served(tmp_path: Path, control_url: str) -> Served:
    found = build(tmp_path, control_url)
    yield found  # type: ignore[misc]
    found.ws.close()


def test_events_are_idempotent_and_moved(served: Served) -> None:
    ws = served.ws
    client = served.client("analyst")
    before = ws.count("events")
    first = client.post("/v1/events", json=[
        {"event_id": "e1", "customer_id": "C001", "occurred_at": "2026-01-01 10:00",
         "type": "page_view", "properties": {"url": "/pricing"}},
        {"event_id": "e2", "customer_id": "NEW9", "occurred_at": "2026-01-01 10:01",
         "type": "signup"}])
    assert first.status_code == 202 and first.json() == {"accepted": 2, "duplicates": 0}
    again = client.post("/v1/events", json={"event_id": "e1", "customer_id": "C001",
                                            "occurred_at": "2026-01-01 10:00",
                                            "type": "page_view"})
    assert again.json() == {"accepted": 0, "duplicates": 1}
    assert client.get("/v1/intake").json() == {"events": 2}
    assert ws.count("events") == before  # durable, not yet moved
    moved = intake.flush(ws)
    assert moved.moved == {"events": 2} and moved.customers == {"events": {"C001", "NEW9"}}
    assert not intake.flush(ws)
    assert ws.count("events") == before + 2
    assert client.get("/v1/customers/NEW9").status_code == 200  # a stub for the new id


def test_moved_rows_keep_their_key_until_pruned(served: Served) -> None:
    """A moved row's payload is emptied (the fact store has it); its key answers repeats
    until ``prune`` deletes it, after which a repeat is imported again as unchanged."""
    import sqlalchemy as sa

    from tierwise.store.tables import intake as rows

    ws = served.ws
    client = served.client("analyst")
    event = {"event_id": "keep1", "customer_id": "C001", "occurred_at": "2026-01-03 08:00",
             "type": "page_view"}
    assert client.post("/v1/events", json=event).json()["accepted"] == 1
    assert intake.flush(ws).moved == {"events": 1}
    before = ws.count("events")
    with ws.control.read() as conn:
        kept = conn.execute(sa.select(rows.c.payload, rows.c.moved_at)).one()
    assert kept.payload == "" and kept.moved_at is not None
    assert intake.prune(ws, keep_hours=1) == 0  # moved just now
    assert client.post("/v1/events", json=event).json() == {"accepted": 0, "duplicates": 1}
    with ws.control.write() as conn:
        conn.execute(rows.update().values(moved_at=kept.moved_at - timedelta(hours=2)))
    assert intake.prune(ws, keep_hours=1) == 1
    assert client.post("/v1/events", json=event).json() == {"accepted": 1, "duplicates": 0}
    moved = intake.flush(ws)
    assert moved.moved == {"events": 1}
    assert ws.count("events") == before  # imported as unchanged: still stored once


def test_bad_rows_are_refused_whole(served: Served) -> None:
    client = served.client("analyst")
    bad = client.post("/v1/orders", json=[
        {"order_id": "X1", "customer_id": "C001", "ordered_at": "2026-01-02", "amount": 5},
        {"order_id": "X2", "customer_id": "C001", "ordered_at": "someday", "amount": 5}])
    assert bad.status_code == 422 and bad.json()["rejects"][0]["column"] == "ordered_at"
    assert client.get("/v1/intake").json() == {}
    no_key = client.post("/v1/events", json={"customer_id": "C001", "type": "x",
                                             "occurred_at": "2026-01-01"})
    assert no_key.status_code == 400 and "event_id" in no_key.json()["detail"]
    assert served.client("viewer").post("/v1/events", json={}).status_code == 403


def test_each_post_is_audited_once(served: Served) -> None:
    """Accepted, repeated and refused posts each leave one entry; the chain stays whole."""
    from tierwise.store import audit

    client = served.client("analyst")
    event = {"event_id": "a1", "customer_id": "C001", "occurred_at": "2026-01-01T10:00:00Z",
             "type": "page_view"}
    assert client.post("/v1/events", json=[event]).status_code == 202
    assert client.post("/v1/events", json=event).json() == {"accepted": 0, "duplicates": 1}
    assert client.post("/v1/events", json={**event, "event_id": "a2",
                                           "occurred_at": "someday"}).status_code == 422
    with served.ws.control.read() as conn:
        entries = audit.entries(conn, action="POST /v1/events")
        assert audit.verify(conn).ok
    assert [e["detail"]["status"] for e in reversed(entries)] == [202, 202, 422]
    assert {e["detail"]["route"] for e in entries} == {"/v1/events"}
    assert {e["actor"] for e in entries} == {entries[0]["actor"]} and \
        entries[0]["actor"].startswith("key:")


def test_changed_orders_replace_and_the_worker_moves_rows(served: Served) -> None:
    ws = served.ws
    order = {"order_id": "O500", "customer_id": "C002", "ordered_at": "2026-02-01 09:00",
             "amount": 120}
    with TestClient(served.app) as client:  # the lifespan runs the intake worker
        client.headers["Authorization"] = f"Bearer {served.keys['analyst']}"
        assert client.post("/v1/orders", json=order).json()["accepted"] == 1
        refunded = client.post("/v1/orders", json={**order, "status": "refunded"})
        assert refunded.json()["accepted"] == 1
        for _ in range(100):
            if not client.get("/v1/intake").json():
                break
            time.sleep(0.05)
    rows = ws.sql("SELECT status FROM orders WHERE order_id = 'O500'").to_pylist()
    assert rows == [{"status": "refunded"}]


def test_the_key_index_skips_the_comparison_only_when_it_is_safe(tmp_path: Path) -> None:
    """Micro-batches ask an in-memory index of stored key hashes before comparing with the
    stored rows; what an import finds (new, changed, unchanged) stays the same."""
    import numpy as np
    import pyarrow as pa

    import tierwise
    from tierwise.ingest.readers import RecordsSource
    from tierwise.store.key_index import KeyIndex, key_hashes

    ws = tierwise.init(tmp_path / "ws")
    index = ws.facts.key_index("orders")
    assert ws.facts.key_index("orders") is index
    reads: list[int] = []  # files the index read, per read
    read = index._read
    index._read = lambda session, paths, key: reads.append(len(paths)) or read(  # type: ignore[method-assign]
        session, paths, key)

    def orders(ids: range, amount: float) -> RecordsSource:
        return RecordsSource.from_dicts("test", [
            {"order_id": f"O{i}", "customer_id": f"C{i % 7}", "ordered_at": "2026-05-01",
             "amount": amount} for i in ids])

    first = ws.import_source("orders", orders(range(50), 10), unknown_customers="create",
                             key_index=index)
    assert first.inserted == 50 and len(index) == 0  # nothing stored yet: nothing to read
    fresh = ws.import_source("orders", orders(range(50, 60), 10), key_index=index)
    assert (fresh.inserted, fresh.updated, fresh.unchanged) == (10, 0, 0)
    assert len(index) == 50 and reads == [1]  # read the first file's keys
    # a repeat (a worker killed before marking its rows moved) and a change (a refund):
    # the index says "maybe", the import compares, and finds what it always found
    again = ws.import_source("orders", orders(range(55, 65), 10), key_index=index)
    assert (again.inserted, again.updated, again.unchanged) == (5, 0, 5)
    assert reads == [1]  # the keys of its own files an import hands over, unread
    changed = ws.import_source("orders", orders(range(0, 3), 99), key_index=index)
    assert (changed.inserted, changed.updated, changed.unchanged) == (0, 3, 0)
    assert ws.count("orders") == 65
    assert ws.sql("SELECT count(*) AS n FROM orders WHERE amount = 99").column(0)[0].as_py() == 3
    # a merge this FactStore made from files whose keys the index holds (or was handed,
    # as the last import's) brings no key: the merged file takes their place unread (the
    # worker merges its micro-batches every 10 s)
    before = ws.facts.scan("orders")
    assert ws.facts.compact(ws.engine, "orders") == (4, 1)
    ws.facts.follow(ws.engine, "orders", ahead=True)
    assert not index._prefetched.keys() - {f.path for f in before.files}  # nothing read
    with ws.engine.session() as session:
        merged = ws.facts.scan("orders")
        assert index.refresh(session, merged) == 1
    assert reads == [1] and set(index._files) == {f.path for f in merged.files}
    assert len(index) >= 65 and not index._prefetched
    # another process's merge is read: ahead on another thread (``follow(ahead=True)``),
    # taken in by the next refresh, not by one with an older scan
    more = ws.import_source("orders", orders(range(65, 70), 10), key_index=index)
    assert more.inserted == 5
    stale = ws.facts.scan("orders")
    other = tierwise.open(ws.root)
    assert other.facts.compact(other.engine, "orders") == (2, 1)
    ws.facts.follow(ws.engine, "orders", ahead=True)
    assert reads == [1, 1]
    with ws.engine.session() as session:
        assert index.refresh(session, stale) == 1  # the import's own file, handed over
        assert len(index._prefetched) == 1  # the merged file, read ahead, kept
        assert index.refresh(session, ws.facts.scan("orders")) == 1
    assert not index._prefetched and len(index) >= 70 and reads == [1, 1]
    with ws.engine.session() as session:
        session.register_arrow("probe", pa.table({"order_id": ["O1", "X"]}))
        hashes = key_hashes(session, "probe", ("order_id",))
    assert index.any_of(hashes[:1]) and not index.any_of(hashes[1:])
    empty = KeyIndex("orders")
    assert not empty.any_of(np.array([1, 2], np.uint64))
