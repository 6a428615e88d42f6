"""Matching customers as they arrive, and merges that move pending actions without acting
twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pytest
import sqlalchemy as sa
from tests.api_helpers import Served, build

import tierwise
from tierwise.demo.duplicates import with_duplicates
from tierwise.identity import review
from tierwise.identity.arrivals import match_arrivals
from tierwise.identity.match import explain, find_duplicates
from tierwise.identity.merge import merge, undo
from tierwise.ingest.readers import RecordsSource
from tierwise.store import outbox as outbox_store
from tierwise.store.tables import outbox, tasks, trigger_fires


@pytest.fixture
def served(tmp_path: Path, control_url: str) -> Served:
    found = build(tmp_path, control_url)
    yield found  # type: ignore[misc]
    found.ws.close()


def _delivery(customer: str, source: str, status: str, at: datetime) -> dict[str, object]:
    return {"idempotency_key": f"{customer}-{source}-{status}", "source": source,
            "event": "enter", "customer_id": customer, "action": "email", "payload": "{}",
            "status": status, "next_attempt_at": at, "created_at": at}


def _actions(ws: tierwise.Workspace) -> dict[str, object]:
    with ws.control.read() as conn:
        return {
            "outbox": sorted((r.source, r.customer_id, r.status) for r in conn.execute(
                sa.select(outbox.c.source, outbox.c.customer_id, outbox.c.status))),
            "fires": sorted((r.trigger_key, r.customer_id, r.count) for r in conn.execute(
                sa.select(trigger_fires))),
            "tasks": sorted((r.title, r.customer_id) for r in conn.execute(
                sa.select(tasks.c.title, tasks.c.customer_id))),
        }


def test_merge_moves_pending_actions_once_and_undo_puts_them_back(served: Served) -> None:
    ws = served.ws
    at = datetime.now(UTC) - timedelta(hours=1)
    with ws.control.write() as conn:
        outbox_store.add(conn, [
            _delivery("C001", "trigger:welcome", "delivered", at),  # the survivor was welcomed
            _delivery("C002", "trigger:welcome", "pending", at),  # … the copy is about to be
            _delivery("C002", "trigger:birthday", "pending", at),
        ])
        conn.execute(trigger_fires.insert(), [
            {"trigger_key": "welcome", "customer_id": "C001", "first_at": at, "last_at": at,
             "count": 1},
            {"trigger_key": "welcome", "customer_id": "C002", "first_at": at - timedelta(days=1),
             "last_at": at, "count": 1}])
        conn.execute(tasks.insert().values(
            customer_id="C002", title="call back", source="test", status="open",
            created_at=at))
    before = _actions(ws)
    done = merge(ws, "C001", ["C002"], actor="test")
    after = _actions(ws)
    assert after["outbox"] == [("trigger:birthday", "C001", "pending"),
                               ("trigger:welcome", "C001", "delivered"),
                               ("trigger:welcome", "C002", "suppressed")]
    assert after["fires"] == [("welcome", "C001", 2)]  # fire-once stays fired
    assert after["tasks"] == [("call back", "C001")]
    undo(ws, done.merge_id, actor="test")
    assert _actions(ws) == before


@pytest.fixture
def population(tmp_path: Path) -> tuple[tierwise.Workspace, dict[str, str], object]:
    """Originals imported and a model trained on them; the copies not imported yet."""
    data = with_duplicates(800, share=0.15, seed=4)
    copy = pc.match_substring(data.records["customer_id"], "-D")
    originals, copies = data.records.filter(pc.invert(copy)), data.records.filter(copy)
    ws = tierwise.init(tmp_path / "w")
    ws.import_source("customers", RecordsSource("crm", originals.column_names,
                                                iter([originals])))
    find_duplicates(ws, review.LOWER)  # trains and saves the model
    yield ws, data.truth, copies
    ws.close()


def test_arrivals_merge_sure_duplicates_and_queue_likely_ones(population) -> None:  # type: ignore[no-untyped-def]
    ws, truth, copies = population
    arriving = copies.slice(0, 40)
    ws.import_source("customers", RecordsSource("api", arriving.column_names,
                                                iter([arriving])))
    ids = arriving["customer_id"].to_pylist()
    found = match_arrivals(ws, ids, actor="test")
    assert found.trained and found.checked == len(ids)
    assert found.seconds < 30  # generous: about 10–30 ms a record on a laptop
    merged = {i: m.survivor_id for m in found.merged for i in m.merged_ids}
    # every automatic merge joined records of one customer
    assert merged and all(truth[i] == truth[s] for i, s in merged.items())
    from tierwise.store import audit

    with ws.control.read() as conn:  # each merge is in the audit log, as an arrival's
        logged = audit.entries(conn, action="merge", limit=1000)
    assert sorted(e["detail"]["merge_id"] for e in logged) == sorted(
        m.merge_id for m in found.merged)
    assert {e["detail"]["reason"] for e in logged} == {"arrival"}
    waiting = {i for p in review.pending(ws, 1000) for i in (p["left_id"], p["right_id"])}
    handled = [i for i in ids if i in merged or i in merged.values() or i in waiting]
    assert len(handled) >= 0.7 * len(ids), (len(handled), len(ids))
    # the reviewer sees why, field by field
    pair = review.pending(ws, 1)
    if pair:
        why = explain(ws, pair[0]["left_id"], pair[0]["right_id"])
        assert {f["field"] for f in why["fields"]} >= {"name", "phone", "email", "city"}
        assert abs(why["match_weight"] - (why["prior_weight"] + sum(
            f["weight"] for f in why["fields"]))) < 0.01


def test_arrivals_through_the_api_and_without_a_model(served: Served) -> None:
    client = served.client("admin")
    body = {"customers": [{"customer_id": "N1", "name": "張三", "phone": "13800138000",
                           "city": "上海市"}]}
    answer = client.post("/v1/customers", json=body).json()
    assert answer["matching"]["model_trained"] is False  # said, not silently skipped
    data = with_duplicates(300, share=0.2, seed=6)
    copy = pc.match_substring(data.records["customer_id"], "-D")
    originals, copies = data.records.filter(pc.invert(copy)), data.records.filter(copy)
    served.ws.import_source("customers", RecordsSource("crm", originals.column_names,
                                                       iter([originals])))
    find_duplicates(served.ws, review.LOWER)  # trains the model
    # a copy that shares its e-mail or phone with its original
    arriving = next(c for c in copies.to_pylist() if c["email"] and c["phone"])
    body = {"customers": [{k: (v.isoformat() if hasattr(v, "isoformat") else v)
                           for k, v in arriving.items() if v is not None}]}
    answer = client.post("/v1/customers", json=body).json()
    matching = answer["matching"]
    assert matching["model_trained"] is True and matching["pairs_scored"] >= 1
    original = data.truth[arriving["customer_id"]]
    merged = {i for m in matching["merged"] for i in [m["survivor_id"], *m["merged_ids"]]}
    waiting = {i for p in review.pending(served.ws, 1000) for i in (p["left_id"],
                                                                     p["right_id"])}
    assert {original, arriving["customer_id"]} <= merged or \
        {original, arriving["customer_id"]} <= waiting, matching
    why = client.get("/v1/duplicates/explain", params={"left": "C001", "right": "C003"})
    assert why.status_code == 200 and why.json()["match_probability"] < 0.5
    assert {"prior_weight", "match_weight", "fields"} <= set(why.json())
    assert all("name" not in f or f["field"] for f in why.json()["fields"])
    assert client.get("/v1/duplicates/explain",
                      params={"left": "C001", "right": "NOPE"}).status_code == 404
    page = client.get("/duplicates")
    assert page.status_code == 200
    pending = review.pending(served.ws, 20)
    if pending:  # each pair with both records and the evidence, field by field
        assert f"#{pending[0]['pair_id']}" in page.text and 'class="evidence"' in page.text
        assert "Prior" in client.get("/duplicates?lang=en").text
    assert client.get("/duplicates?status=bogus").status_code == 400
    assert client.get("/duplicates?color=red").status_code == 400


def test_a_copy_arriving_between_real_time_rounds_is_merged_without_a_new_entry(
        tmp_path: Path) -> None:
    """A customer written again under a new id (another system's copy) is merged into the
    one the real-time worker already knows, before any round sees it: the next round finds
    no new member and enters nobody a second time — even when an order arrives under the
    copy's id (the redirect hands it to the survivor)."""
    from datetime import date

    from tierwise.demo.generator import DemoSpec
    from tierwise.demo.load import load_generated
    from tierwise.realtime.worker import Worker
    from tierwise.segments import catalog as defs
    from tierwise.segments import membership
    from tierwise.store.tables import segment_history

    ws = tierwise.init(tmp_path / "ws")
    try:
        load_generated(ws, DemoSpec(customers=400, seed=11, end=date(2026, 6, 30)))
        defs.save(ws, defs.SegmentDefinition(key="buyers", rule="COUNT(orders) >= 1"))
        worker = Worker(ws)
        worker.catch_up()
        worker.run_batch()
        find_duplicates(ws, review.LOWER)  # the model, trained on customers without copies
        members = membership.members_at(ws, "buyers")
        original = next(c for c in ws.table("customers").to_pylist()
                        if c["customer_id"] in members and c["phone"] and c["email"])
        with ws.control.read() as conn:
            entries = conn.execute(sa.select(sa.func.count()).select_from(segment_history)
                                   ).scalar()
        copy = {**original, "customer_id": "COPY-1", "email": original["email"].upper(),
                "signup_at": datetime.now(UTC)}
        ws.import_source("customers", RecordsSource.from_dicts("crm", [
            {k: v for k, v in copy.items() if k in ("customer_id", "name", "email", "phone",
                                                    "city", "gender", "birth_date",
                                                    "signup_at")}]))
        found = match_arrivals(ws, ["COPY-1"], actor="test")
        assert [(m.survivor_id, m.merged_ids) for m in found.merged] == \
            [(original["customer_id"], ["COPY-1"])]
        ws.import_source("orders", RecordsSource.from_dicts("shop", [
            {"order_id": "ARRIVAL-O1", "customer_id": "COPY-1",
             "ordered_at": datetime.now(UTC).isoformat(), "amount": 10}]))
        worker.run_batch()
        assert "COPY-1" not in membership.members_at(ws, "buyers")
        assert original["customer_id"] in membership.members_at(ws, "buyers")
        with ws.control.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(segment_history)
                                ).scalar() == entries
    finally:
        ws.close()
