"""Real-time intake: durable, idempotent, validated, moved to the fact store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.api_helpers import Served, build

from tierwise.ingest import intake


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
