"""Accounts and their contacts: imports that link them (or refuse the whole file), rules
over an account's contacts and over its and its contacts' events and orders, and the
account-level measures that roll the contacts' orders up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.conftest import write

import tierwise
from tierwise.definitions.roles import Principal
from tierwise.definitions.segment_fields import RuleError
from tierwise.errors import ImportRejected
from tierwise.identity.merge import merge
from tierwise.ingest.readers import RecordsSource
from tierwise.segments import catalog as defs
from tierwise.segments import incremental, membership
from tierwise.segments.evaluate import evaluate_rule
from tierwise.services import economics
from tierwise.services.customers import customer_profile, present_profile
from tierwise.store.tables import outbox

ACCOUNTS = ("customer_id,name,industry,owner\n"
            "A1,甲公司,制造业,王\nA2,乙公司,零售,李\nA3,丙公司,金融,王\n")
CONTACTS = ("客户编号,姓名,邮箱,所属客户,角色,注册时间\n"
            "P1,张三,zs@a1.cn,A1,决策者,2026-01-05\n"
            "P2,李四,ls@a1.cn,A1,Influencer,2026-02-01\n"
            "P3,王五,ww@a2.cn,A2,采购,2025-11-11\n"
            "P4,赵六,zl@a2.cn,A2,,2026-06-01\n")


def _links(ws: tierwise.Workspace) -> dict[str, tuple[str | None, str | None]]:
    rows = ws.sql("SELECT customer_id, account_id, role FROM customers").to_pylist()
    return {r["customer_id"]: (r["account_id"], r["role"]) for r in rows}


@pytest.fixture
def accounts(ws: tierwise.Workspace, tmp_path: Path) -> tierwise.Workspace:
    ws.import_file("customers", write(tmp_path / "a.csv", ACCOUNTS))
    ws.import_file("customers", write(tmp_path / "p.csv", CONTACTS))
    return ws


def test_contacts_name_their_account_and_role(accounts: tierwise.Workspace):
    links = _links(accounts)
    assert links["P1"] == ("A1", "decision_maker")  # the role is stored as its code
    assert links["P2"] == ("A1", "influencer")
    assert links["P3"] == ("A2", "purchasing")
    assert links["P4"] == ("A2", None)
    assert links["A1"] == (None, None)


@pytest.mark.parametrize(("rows", "column", "value", "words"), [
    ("P9,钱七,A9,决策者\n", "所属客户", "A9", "names no customer"),
    ("P9,钱七,P9,决策者\n", "所属客户", "P9", "its own account"),
    ("P9,钱七,P1,决策者\n", "所属客户", "P1", "is itself a contact of A1"),
    # A3 is P8's account in this file: it cannot become a contact (and P8's row, naming
    # a contact as its account, is refused too)
    ("A3,丙公司,A1,\n", "所属客户", "A1", "account of 1 contact(s) (e.g. P8)"),
    ("A1,甲公司,A2,\n", "所属客户", "A2", "account of 2 contact(s)"),
    ("P9,钱七,,决策者\n", "角色", "decision_maker", "a role is for contacts"),
    ("P9,钱七,A1,boss\n", "角色", "boss", None),  # an unknown role: the column's check
])
def test_a_bad_link_rejects_the_whole_file(accounts: tierwise.Workspace, tmp_path: Path,
                                           rows: str, column: str, value: str,
                                           words: str | None):
    before = _links(accounts)
    text = "客户编号,姓名,所属客户,角色\n" + "P8,孙八,A3,技术\n" + rows
    with pytest.raises(ImportRejected) as caught:
        accounts.import_file("customers", write(tmp_path / "bad.csv", text),
                             report_path=tmp_path / "r.csv")
    reject = next(r for r in caught.value.rejects if r["row"] == 3)
    assert (reject["row"], reject["column"], reject["value"]) == (3, column, value)
    if words is not None:
        assert words in str(reject["reason"])
    assert _links(accounts) == before  # P8 (a good row) was not imported either


def test_a_link_can_name_an_account_in_the_same_file(ws: tierwise.Workspace,
                                                     tmp_path: Path):
    ws.import_file("customers", write(tmp_path / "both.csv", (
        "customer_id,name,account_id,role\nP1,张三,A1,decision maker\nA1,甲公司,,\n")))
    assert _links(ws)["P1"] == ("A1", "decision_maker")


def test_a_contact_of_a_contact_in_one_file_is_refused(ws: tierwise.Workspace,
                                                       tmp_path: Path):
    with pytest.raises(ImportRejected, match="2 row.*P2.*cannot become a contact"):
        ws.import_file("customers", write(tmp_path / "chain.csv", (
            "customer_id,account_id\nA1,\nP1,A1\nP2,P1\n")), report_path=tmp_path / "r.csv")
    assert ws.sql("SELECT count(*) AS n FROM customers").column(0)[0].as_py() == 0


def test_an_import_without_the_columns_keeps_the_links(accounts: tierwise.Workspace,
                                                       tmp_path: Path):
    accounts.import_file("customers", write(tmp_path / "upd.csv",
                                            "customer_id,city\nP1,上海\n"))
    assert _links(accounts)["P1"] == ("A1", "decision_maker")


# -- rules --------------------------------------------------------------------------------
T = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def _members(ws: tierwise.Workspace, rule: str) -> list[str]:
    return evaluate_rule(ws, rule, T)["customer_id"].to_pylist()


@pytest.fixture
def active(accounts: tierwise.Workspace, tmp_path: Path) -> tierwise.Workspace:
    """Events and orders of the accounts and of their people."""
    accounts.import_file("events", write(tmp_path / "e.csv", (
        "event_id,customer_id,occurred_at,type\n"
        "E1,P1,2026-06-29,webinar\nE2,P2,2026-06-20,page_view\nE3,A1,2026-06-28,login\n"
        "E4,P3,2026-03-01,webinar\nE5,A3,2026-06-29,webinar\nE6,P1,2026-07-02,webinar\n")))
    accounts.import_file("orders", write(tmp_path / "o.csv", (
        "order_id,customer_id,ordered_at,amount,status\n"
        "O1,A1,2026-05-01,1000,paid\nO2,P2,2026-06-01,500,paid\nO3,P3,2026-06-01,800,paid\n"
        "O4,P4,2026-06-02,300,refunded\nO5,A3,2026-01-01,50,paid\n")))
    return accounts


def test_rules_count_an_accounts_contacts_by_role(active: tierwise.Workspace):
    ws = active
    for words in ("决策者", "decision maker", "Decision maker", "decision_maker"):
        assert _members(ws, f"COUNT(contacts WHERE role = '{words}') >= 1") == ["A1"]
        assert _members(ws, f"role = '{words}'") == ["P1"]
    assert _members(ws, "COUNT(contacts) >= 2") == ["A1", "A2"]
    assert _members(ws, "COUNT(contacts) = 0") == ["A3", "P1", "P2", "P3", "P4"]
    assert _members(ws, "COUNT_DISTINCT(contacts.role) = 1") == ["A2"]  # P4 has none
    assert _members(ws, "account_id = 'A2'") == ["P3", "P4"]
    with pytest.raises(RuleError, match="contacts.role 没有取值 'boss'"):
        _members(ws, "COUNT(contacts WHERE role = 'boss') >= 1")
    with pytest.raises(RuleError, match="contacts has no column 'email'"):
        _members(ws, "COUNT(contacts WHERE email = 'x') >= 1")  # no personal data there
    assert _members(ws, "COUNT(contacts, LAST 60d) >= 1") == ["A2"]  # P4 joined in June
    # a contact without a sign-up counts from when it was stored: now, not at T
    ws.import_source("customers", RecordsSource.from_dicts("crm", [
        {"customer_id": "P5", "account_id": "A3", "role": "finance"}]))
    assert _members(ws, "COUNT(contacts WHERE role = 'finance') >= 1") == []
    now = evaluate_rule(ws, "COUNT(contacts WHERE role = '财务') >= 1")
    assert now["customer_id"].to_pylist() == ["A3"]


def test_rollups_against_a_direct_computation(active: tierwise.Workspace):
    ws = active
    account = {c: a for c, (a, _) in _links(ws).items() if a}
    events = ws.table("events").to_pylist()
    orders = ws.table("orders").to_pylist()
    cutoff = T - timedelta(days=30)
    recent: dict[str, int] = {}
    for e in events:
        if cutoff < e["occurred_at"] <= T:
            who = account.get(e["customer_id"], e["customer_id"])
            recent[who] = recent.get(who, 0) + 1
    spent: dict[str, float] = {}
    for o in orders:
        if o["status"] == "paid":
            who = account.get(o["customer_id"], o["customer_id"])
            spent[who] = spent.get(who, 0) + o["amount"]
    assert recent == {"A1": 3, "A3": 1}  # E6 is after T; E4 is older than the window
    assert _members(ws, "COUNT(account_events, LAST 30d) >= 3") == ["A1"]
    assert _members(ws, "COUNT(account_events, LAST 30d) >= 1") == sorted(recent)
    assert spent == {"A1": 1500, "A2": 800, "A3": 50}
    assert _members(ws, "SUM(account_orders.amount) >= 800") == ["A1", "A2"]
    # the account's own events alone: only A1's login and A3's webinar
    assert _members(ws, "COUNT(events, LAST 30d) >= 1") == ["A1", "A3", "P1", "P2"]
    assert _members(ws, "COUNT(account_events WHERE type = '已退款') >= 1") == []
    assert _members(ws, "COUNT(account_orders WHERE status = '已退款') >= 1") == ["A2"]
    # a contact's rows count for its account's survivor once the account is merged away
    merge(ws, "A3", ["A2"], actor="test")
    assert _members(ws, "SUM(account_orders.amount) >= 800") == ["A1", "A3"]
    assert _members(ws, "COUNT(contacts) >= 2") == ["A1", "A3"]


def test_an_account_moves_when_its_contacts_bring_rows(active: tierwise.Workspace):
    ws = active
    defs.save(ws, defs.SegmentDefinition(
        key="engaged", rule="COUNT(account_events WHERE type = 'webinar', LAST 30d) >= 2"))
    defs.save(ws, defs.SegmentDefinition(
        key="decided", rule="COUNT(contacts WHERE role = '决策者') >= 1"))
    membership.evaluate_all(ws, T)
    assert membership.members_at(ws, "engaged") == []
    assert membership.members_at(ws, "decided") == ["A1"]
    ws.import_source("events", RecordsSource.from_dicts("live", [
        {"event_id": f"L{i}", "customer_id": "P3", "occurred_at": "2026-06-30T10:00:00Z",
         "type": "webinar"} for i in range(2)]))
    ws.import_source("customers", RecordsSource.from_dicts("crm", [
        {"customer_id": "P4", "role": "决策者"}]))
    results = incremental.evaluate_changed(ws, {"events": {"P3"}, "customers": {"P4"}}, T)
    assert {r.key: r.entered for r in results} == {"engaged": 1, "decided": 1}
    assert membership.members_at(ws, "engaged") == ["A2"]
    assert membership.members_at(ws, "decided") == ["A1", "A2"]


# -- account-level measures and the 360 view ------------------------------------------------
def test_account_measures_roll_up_their_contacts_orders(active: tierwise.Workspace):
    ws = active
    facts = {r["customer_id"]: r for r in ws.compute(T).table.to_pylist()}
    # contacts are people at an account, not customers of their own: counted once, there
    assert sorted(facts) == ["A1", "A2", "A3"]
    assert (facts["A1"]["orders_total"], facts["A1"]["revenue_total"]) == (2, 1500)
    assert (facts["A2"]["orders_total"], facts["A2"]["revenue_total"]) == (1, 800)
    assert (facts["A3"]["orders_total"], facts["A3"]["revenue_total"]) == (1, 50)
    assert _members(ws, "tier IS NOT NULL") == ["A1", "A2", "A3"]
    with ws.control.write() as conn:  # a message to P1 costs its account
        when = datetime(2026, 6, 1, tzinfo=UTC)
        conn.execute(sa.insert(outbox).values(
            idempotency_key="m1", source="trigger:t", event="enter", customer_id="P1",
            action="sms", payload="{}", status="delivered", next_attempt_at=when,
            created_at=when, delivered_at=when, cost=0.2))
    total, rows = economics.customers(ws, "2026", as_of=T)
    revenue = {r["customer_id"]: r["revenue"] for r in rows}
    assert {r["customer_id"]: r["marketing_cost"] for r in rows} == {"A1": 0.2, "A2": 0,
                                                                      "A3": 0}
    assert total == 3
    assert revenue == {"A1": 1500, "A2": 800, "A3": 50}


def test_the_360_view_of_an_account_lists_its_people(active: tierwise.Workspace):
    ws = active
    account = customer_profile(ws, "A1", T)
    people = {p["customer_id"]: p for p in account.people}
    assert sorted(people) == ["P1", "P2"]
    assert people["P1"]["role"] == "decision_maker" and people["P1"]["events_30d"] == 1
    assert people["P2"]["orders"] == 1 and people["P2"]["revenue"] == 500
    assert account.rollup == {"orders": 2, "revenue": 1500, "events_30d": 3, "people": 2}
    contact = customer_profile(ws, "P1", T)
    assert contact.account == {"customer_id": "A1", "name": "甲公司", "owner": "王",
                               "role": "decision_maker"}
    assert contact.people == [] and contact.rollup == {}
    # a viewer without the right to personal data sees the people masked
    viewer = Principal("user", "viewer", "viewer", frozenset({"customers:read"}))
    shown = present_profile(ws, viewer, account)
    assert all(p["pii_masked"] and p["email"] != "zs@a1.cn" for p in shown.people)
    assert present_profile(ws, viewer, contact).account["name"] != "甲公司"


# -- identity -------------------------------------------------------------------------------
def test_contacts_merge_within_and_across_accounts(active: tierwise.Workspace,
                                                   tmp_path: Path):
    ws = active
    # the same person twice at A1 (a second record from another system), and P3 moved
    # from A2 to A1 and was entered there again as P6
    ws.import_file("customers", write(tmp_path / "dup.csv", (
        "customer_id,name,email,account_id,role,signup_at\n"
        "P1b,张三,zs@a1.cn,A1,,2026-03-01\nP6,王五,ww@a1.cn,A1,finance,2026-05-01\n")))
    merge(ws, "P1", ["P1b"], actor="test")
    assert _links(ws)["P1"] == ("A1", "decision_maker")
    merge(ws, "P6", ["P3"], actor="test")  # the survivor's account and role win
    assert _links(ws)["P6"] == ("A1", "finance")
    # P3's order now counts for A1, the account of the person it was merged into
    assert _members(ws, "SUM(account_orders.amount) >= 2300") == ["A1"]
    assert _members(ws, "COUNT(contacts) >= 3") == ["A1"]  # P1, P2, P6
    with pytest.raises(tierwise.TierwiseError, match="A1 is the account of 3 contact"):
        merge(ws, "A1", ["P2"], actor="test")
    with pytest.raises(tierwise.TierwiseError, match="cannot be merged"):
        merge(ws, "P2", ["A1"], actor="test")
    assert _links(ws)["P2"] == ("A1", "influencer")


def test_the_api_takes_contacts_and_lists_an_accounts_people(active: tierwise.Workspace):
    from fastapi.testclient import TestClient

    from tierwise.server.app import create_app
    from tierwise.store import accounts as account_store

    ws = active
    with ws.control.write() as conn:
        secret = account_store.create_key(conn, "crm", "admin", "test").secret
    client = TestClient(create_app(ws), raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {secret}"
    added = client.post("/v1/customers", json={"customers": [
        {"customer_id": "P7", "name": "周九", "account_id": "A3", "role": "技术"}]})
    assert added.status_code == 200, added.text
    bad = client.post("/v1/customers", json={"customers": [
        {"customer_id": "P8", "account_id": "P7"}, {"customer_id": "P9", "account_id": "A3"}]})
    assert bad.status_code == 422 and "本身是 A3 的联系人" in bad.text
    assert "P9" not in _links(ws)  # all or nothing
    listed = client.get("/v1/customers", params={"account_id": "A1", "role": "决策者"})
    assert [c["customer_id"] for c in listed.json()["items"]] == ["P1"]
    assert client.get("/v1/customers", params={"role": "boss"}).status_code in (400, 422)
    profile = client.get("/v1/customers/A3/profile").json()
    assert [p["customer_id"] for p in profile["people"]] == ["P7"]
    assert profile["people"][0]["role"] == "technical"
    assert client.get("/v1/customers/P7/profile").json()["account"]["customer_id"] == "A3"


def test_a_copy_of_the_customers_from_before_the_columns_is_not_read(
        accounts: tierwise.Workspace, tmp_path: Path):
    """A workspace upgraded to a version whose customers have more columns (account_id and
    role, migration 0015) rebuilds its Parquet copy of them instead of reading the old one."""
    import hashlib

    import pyarrow.parquet as pq

    from tierwise.store import customer_mirror
    from tierwise.store import customers as customer_store

    ws = accounts
    with ws.control.read() as conn:
        count, latest = customer_store.state(conn)
    old = customer_mirror.folder(ws.root) / ("customers-" + hashlib.sha1(
        f"{count}|{latest}".encode()).hexdigest()[:16] + ".parquet")
    with ws.control.read() as conn:  # as the version before wrote it, by its name then
        written = customer_store.as_arrow(conn, sealed=True)
    customer_mirror.invalidate(ws.root)  # nothing kept in memory or on disk
    old.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(written.drop(["account_id", "role"]), old)
    assert "account_id" in customer_mirror.read(ws.root, ws.control).column_names
    assert _members(ws, "COUNT(contacts) >= 2") == ["A1", "A2"]


def test_an_account_whose_people_leave_in_the_same_file_may_become_a_contact(
        accounts: tierwise.Workspace, tmp_path: Path):
    ws = accounts
    with pytest.raises(ImportRejected, match=r"account of 1 contact\(s\) \(e\.g\. P2\)"):
        ws.import_file("customers", write(tmp_path / "one.csv", (
            "customer_id,account_id\nP1,\nA1,A2\n")), report_path=tmp_path / "r.csv")
    ws.import_file("customers", write(tmp_path / "both.csv", (
        "customer_id,account_id,role\nP1,A2,决策者\nP2,A3,\nA1,A2,finance\n")))
    links = _links(ws)
    assert (links["A1"], links["P1"], links["P2"]) == (
        ("A2", "finance"), ("A2", "decision_maker"), ("A3", None))  # an empty cell empties


def test_the_account_a_person_leaves_is_looked_at_again(active: tierwise.Workspace):
    """The worker learns of changed customers by their ``updated_at``: moving a person from
    A2 to A3 marks A2 changed too, so A2 leaves a segment over its people at once."""
    from tierwise.realtime.outside import updated_customers
    from tierwise.store.control import utcnow

    ws = active
    defs.save(ws, defs.SegmentDefinition(key="buyers_in", rule=(
        "COUNT(contacts WHERE role = 'purchasing') >= 1")))
    membership.evaluate_all(ws, T)
    assert membership.members_at(ws, "buyers_in") == ["A2"]  # P3
    since = utcnow()
    ws.import_source("customers", RecordsSource.from_dicts("crm", [
        {"customer_id": "P3", "account_id": "A3"}]))
    changed, _ = updated_customers(ws, since)
    assert changed == {"P3", "A2"}
    results = incremental.evaluate_changed(ws, {"customers": changed}, T)
    assert {r.key: (r.entered, r.exited) for r in results}["buyers_in"] == (1, 1)
    assert membership.members_at(ws, "buyers_in") == ["A3"]
    # a merge that takes a person from an account marks it changed too
    since = utcnow()
    merge(ws, "P1", ["P3"], actor="test")  # P3 (A3's buyer) is P1, of A1
    changed, _ = updated_customers(ws, since)
    assert changed == {"P1", "A3"}
    incremental.evaluate_changed(ws, {"customers": changed}, T)
    assert membership.members_at(ws, "buyers_in") == []


def test_erasing_an_account_or_a_person(active: tierwise.Workspace):
    from tierwise.realtime.outside import updated_customers
    from tierwise.security import privacy
    from tierwise.store.control import utcnow

    ws = active
    since = utcnow()
    privacy.erase_customer(ws, "P3")  # A2 has one person fewer: marked changed
    assert updated_customers(ws, since)[0] == {"A2"}
    privacy.erase_customer(ws, "A1")  # its people stay, as customers of their own
    links = _links(ws)
    assert "A1" not in links and links["P1"] == (None, None) and links["P2"] == (None, None)
    assert _members(ws, "COUNT(contacts) >= 1") == ["A2"]  # P4


def test_breakdowns_are_of_accounts_and_satisfaction_is_by_role(active: tierwise.Workspace,
                                                                 tmp_path: Path):
    from tierwise.insights import satisfaction
    from tierwise.models.compute import load_snapshot
    from tierwise.services import breakdowns

    ws = active
    ws.compute(T)
    snapshot = load_snapshot(ws)
    # the values grouped have no people: by role or account is refused, not all "none"
    for by in ("role", "account_id"):
        with pytest.raises(tierwise.TierwiseError, match="cannot group customers by"):
            breakdowns.by_dimension(ws, snapshot, by)
    with pytest.raises(tierwise.TierwiseError, match="unknown filter"):
        breakdowns.by_dimension(ws, snapshot, "tier", fields={"role": "决策者"})
    # satisfaction is the answers of whoever answered: a person's role says who
    ws.import_file("feedback", write(tmp_path / "f.csv", (
        "customer_id,at,nps\nP1,2026-06-01,9\nP2,2026-06-02,3\nP3,2026-06-03,10\n")))
    found = satisfaction.satisfaction(ws, T, "role")
    by_role = {g["value"]: g for g in found["groups"]}
    assert by_role["decision_maker"]["nps"] == 100 and by_role["influencer"]["nps"] == -100
    with pytest.raises(tierwise.TierwiseError, match="cannot break satisfaction down"):
        satisfaction.satisfaction(ws, T, "account_id")


def test_a_value_no_contact_or_rolled_up_row_has_is_said(active: tierwise.Workspace):
    from tierwise.definitions.segment_parser import parse
    from tierwise.segments import literals

    ws = active
    said = literals.unseen(ws, parse("COUNT(account_events WHERE type = 'webnar') >= 1"), T,
                           "en")
    assert len(said) == 1 and "'webnar'" in said[0] and "webinar" in said[0]
    said = literals.unseen(ws, parse("COUNT(contacts WHERE customer_id = 'P9') >= 1"), T,
                           "en")
    assert len(said) == 1 and "'P9'" in said[0]


def test_rolled_up_rows_follow_a_move_and_a_merge(active: tierwise.Workspace):
    """The links behind the roll-ups are kept between reads while the customers stay as
    they are: a person moving to another account, or a merge, is seen by the next read."""
    rule = "SUM(account_orders.amount) >= 800"
    assert _members(active, rule) == ["A1", "A2"]  # A1 1000 + P2 500, A2 P3's 800
    assert _members(active, rule) == ["A1", "A2"]  # kept: the same
    active.import_source("customers", RecordsSource.from_dicts("crm", [
        {"customer_id": "P3", "account_id": "A3"}]))
    assert _members(active, rule) == ["A1", "A3"]  # A3: its 50 + P3's 800
    merge(active, "A1", ["A3"], actor="test")
    assert _members(active, rule) == ["A1"]
