"""A server whose store is busy keeps answering: nothing waits for the database on the
event loop, a request that cannot get the store in time is a 503 that changed nothing, and
an import through the API reads only the customers it writes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.api_helpers import build

from tierwise.store import audit
from tierwise.store import customers as customer_store
from tierwise.store.tables import audit_log


def test_a_request_whose_audit_entry_waits_does_not_stop_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit entry of every write waits for the store (a held write lock, a pool with
    every connection taken). It was written on the event loop's thread: while it waited,
    the server answered nobody — under load, every request stalled for a minute and more."""
    served = build(tmp_path)
    release, waiting = threading.Event(), threading.Event()
    real = audit.append

    def slow_append(conn: sa.Connection, actor: str, action: str, *args: object,
                    **kwargs: object) -> int:
        if action.startswith("POST /v1/customers"):
            waiting.set()
            release.wait(30)
        return real(conn, actor, action, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(audit, "append", slow_append)
    answered: dict[str, int] = {}
    with served.client("admin") as client:  # one event loop for every request below
        post = threading.Thread(target=lambda: answered.update(
            post=client.post("/v1/customers", json={"customers": 5}).status_code))
        post.start()
        try:
            assert waiting.wait(20)
            health = threading.Thread(target=lambda: answered.update(
                health=client.get("/health").status_code))
            health.start()
            health.join(10)
            seen_while_waiting = dict(answered)
        finally:
            release.set()
        post.join(30)
    assert seen_while_waiting.get("health") == 200
    assert answered["post"] == 422
    with served.ws.control.read() as conn:  # the entry that waited was written, not lost
        actions = [r.action for r in conn.execute(sa.select(audit_log.c.action))]
        assert audit.verify(conn).ok
    assert "POST /v1/customers" in actions


def test_a_store_that_cannot_be_had_in_time_is_a_503_that_changed_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = build(tmp_path)
    before = served.ws.count("customers")

    def exhausted(*args: object, **kwargs: object) -> None:
        raise sa.exc.TimeoutError("QueuePool limit of size 10 overflow 54 reached")

    monkeypatch.setattr(customer_store, "upsert", exhausted)
    client = TestClient(served.app, raise_server_exceptions=False)  # type: ignore[arg-type]
    client.headers["Authorization"] = f"Bearer {served.keys['admin']}"
    answer = client.post("/v1/customers", json={"customers": [{"customer_id": "C900"}]})
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "2"
    assert "busy" in answer.json()["detail"]
    assert served.ws.count("customers") == before


def test_an_api_import_reads_only_the_customers_it_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = build(tmp_path)
    asked: list[object] = []
    real = customer_store.as_arrow

    def watched(conn: sa.Connection, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        asked.append(kwargs.get("ids"))
        return real(conn, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(customer_store, "as_arrow", watched)
    client = served.client("admin")
    answer = client.post("/v1/customers", json={"customers": [
        {"customer_id": "C001", "city": "杭州"}, {"customer_id": "C901", "name": "新客户"}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["inserted"] == 1 and answer.json()["updated"] == 1
    assert sorted(asked[0]) == ["C001", "C901"]  # type: ignore[arg-type]
    with served.ws.control.read() as conn:
        assert customer_store.get(conn, "C001")["city"] == "杭州"  # type: ignore[index]
