"""Personal data reaches only those who may read it: every route and page, rule previews and
explanations (no oracle), rule texts, sensitive attributes and event properties."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.api_helpers import PASSWORD, api_routes

import tierwise
from tierwise.definitions.personal_data import PersonalData, looks_personal, personal_fields
from tierwise.definitions.roles import ROLES
from tierwise.segments import catalog as defs
from tierwise.segments import membership
from tierwise.server.app import create_app
from tierwise.store import accounts

#: Values that appear nowhere but in this customer's record; none may reach a viewer.
CANARY = {
    "name": "Qorvexa Lindqvist",
    "email": "qorvexa.lindqvist.7731@canary-mail.test",
    "phone": "13971207731",
    "address": "Xylophone Lane 4417",
    "wechat": "wx_canary_55813",
    "id_card": "110101199003078876",
    "event_email": "qorvexa.alt.9918@canary-mail.test",
}
SECRETS = [CANARY["name"], "Lindqvist", CANARY["email"], "qorvexa.lindqvist", CANARY["phone"],
           "Lane 4417", CANARY["wechat"], CANARY["id_card"], CANARY["event_email"],
           "qorvexa.alt"]

CUSTOMERS = f"""customer_id,name,email,phone,address,city,owner,signup_at,微信号,身份证号,segment
C001,{CANARY['name']},{CANARY['email']},{CANARY['phone']},{CANARY['address']},上海,赵经理,2025-03-12,{CANARY['wechat']},{CANARY['id_card']},B2C
C002,李四,lisi@example.cn,13900139000,北京市朝阳区建国路1号,北京,王经理,2025-03-01,wx_li,,B2B
C003,王五,wangwu@example.cn,,深圳市南山区,深圳,王经理,2025-02-28,,,B2C
"""
ORDERS = """order_id,customer_id,ordered_at,amount,status
O1,C001,2025-03-12 10:00:00,1234.5,paid
O2,C002,2025-04-02 09:00:00,420,paid
O3,C003,2025-04-03 08:00:00,300,paid
"""
_PROPERTIES = json.dumps({"page": "/pricing", "email": CANARY["event_email"]}).replace('"', '""')
EVENTS = f"""customer_id,occurred_at,type,properties
C001,2025-04-01 11:00:00,page_view,"{_PROPERTIES}"
C002,2025-04-01 11:00:00,page_view,"{{""page"": ""/home""}}"
"""
PII_RULE = "email CONTAINS '@canary-mail.test' OR phone IS NOT NULL"
#: A rule naming one person's e-mail (not a customer's: files keep rules as written).
LITERAL = "solo.person.4242@rule-only.test"


class Exposed:
    def __init__(self, root: Path) -> None:
        self.ws = ws = tierwise.init(root / "ws")
        for name, text in (("customers", CUSTOMERS), ("orders", ORDERS), ("events", EVENTS)):
            (root / f"{name}.csv").write_text(text, encoding="utf-8")
            self.imported = ws.import_file(name, root / f"{name}.csv")
        ws.compute()
        for key, rule, kind in (("buyers", "COUNT(orders) >= 1", "dynamic"),
                                ("contactable", PII_RULE, "dynamic"),
                                ("wechat_users", "attributes.微信号 IS NOT NULL", "dynamic"),
                                ("one_person", f"email = '{LITERAL}'", "dynamic"),
                                ("vip_list", None, "static")):
            definition = defs.SegmentDefinition(key=key, rule=rule, kind=kind)
            defs.write_file(ws, definition)
            defs.save(ws, definition)
        membership.evaluate_all(ws)
        membership.edit_static(ws, "vip_list", add=["C001"])
        self.app = create_app(ws)
        self.keys: dict[str, str] = {}
        with ws.control.write() as conn:
            for role in ROLES:
                owner = "王经理" if role == "operator" else None
                accounts.add_user(conn, role, PASSWORD, role, owner)
                self.keys[role] = accounts.create_key(conn, f"{role} key", role, "test",
                                                      owner_name=owner,
                                                      rate_per_second=1000).secret

    def client(self, role: str) -> TestClient:
        client = TestClient(self.app, raise_server_exceptions=False)
        client.headers["Authorization"] = f"Bearer {self.keys[role]}"
        return client

    def session(self, role: str) -> TestClient:
        client = TestClient(self.app, raise_server_exceptions=False)
        ok = client.post("/v1/auth/login", json={"username": role, "password": PASSWORD})
        assert ok.status_code == 200
        client.headers["X-CSRF-Token"] = ok.json()["csrf_token"]
        return client


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exposed]:
    found = Exposed(tmp_path_factory.mktemp("pii"))
    yield found
    found.ws.close()


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


PATH_VALUES = {"customer_id": "C001", "key": "contactable", "job_id": "1", "username": "viewer",
               "key_id": "000000000000", "name": "rfm", "pair_id": "1", "merge_id": "1",
               "task_id": "1"}
QUERIES = {"/v1/insights/uplift": "?treated=buyers&holdout=vip_list&since=2025-01-01",
           "/v1/insights/uplift/action": "?source=trigger:none"}
PAGES = ["/", "/rfm", "/tiers", "/lifecycle", "/clv", "/segments", "/segments/contactable",
         "/segments/vip_list", "/segments/wechat_users", "/customers", "/customers?q=C00",
         "/customers/C001", "/actions", "/review?period=2025Q2", "/review/report.html?period="
         "2025Q2", "/imports"]


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_no_route_or_page_shows_pii_to_a_role_without_the_right(exposed: Exposed,
                                                                role: str) -> None:
    """Every GET route of the API (C001's id and a segment whose rule names its e-mail in
    every path), the member exports, and every dashboard page: C001's name, e-mail, phone,
    address, WeChat id, ID card number and the e-mail in its event's properties appear
    nowhere, for a viewer and for an operator who does not own C001."""
    client = exposed.client(role)
    checked = 0
    for method, path, _ in api_routes(exposed.app):
        if method != "GET":
            continue
        url = path.format(**PATH_VALUES) + QUERIES.get(path, "")
        for variant in (url, url.replace("contactable", "vip_list")):
            answer = client.get(variant)
            assert answer.status_code < 500, (variant, answer.text)
            assert _leaks(answer.text) == [], (variant, _leaks(answer.text))
            checked += 1
    for extra in ("/v1/customers?q=C001", "/v1/customers?segment=contactable",
                  "/v1/segments/contactable/members/export?format=csv",
                  "/v1/segments/contactable/members/export?format=xlsx",
                  "/v1/customers/C001/profile"):
        answer = client.get(extra)
        assert answer.status_code == 200, (extra, answer.text)
        text = answer.text if "xlsx" not in extra else _xlsx_text(answer.content)
        assert _leaks(text) == [], (extra, _leaks(text))
    session = exposed.session(role)
    for page in PAGES:
        answer = session.get(page)
        assert answer.status_code in (200, 403), (page, answer.text[:300])
        assert _leaks(answer.text) == [], (page, _leaks(answer.text))
    assert checked > 60
    # The record is there, masked: the check above is not passing on empty answers.
    shown = client.get("/v1/customers/C001").json()["customer"]
    assert shown["pii_masked"] is True
    assert shown["email"] == "q***@canary-mail.test" and shown["phone"] == "139****7731"
    assert shown["attributes"]["微信号"] == "w***"
    assert shown["attributes"]["身份证号"] == "110***********8876"
    assert shown["attributes"]["segment"] == "B2C"  # not personal: shown as it is
    profile = client.get("/v1/customers/C001/profile").json()
    assert json.loads(profile["recent_events"][0]["properties"])["email"] == "q***"


def _xlsx_text(content: bytes) -> str:
    import io

    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(content), read_only=True)
    return json.dumps([list(r) for r in book.active.iter_rows(values_only=True)],
                      ensure_ascii=False, default=str)


def test_those_with_the_right_see_pii(exposed: Exposed) -> None:
    analyst = exposed.client("analyst").get("/v1/customers/C001").json()["customer"]
    assert analyst["email"] == CANARY["email"] and analyst["pii_masked"] is False
    assert analyst["attributes"]["微信号"] == CANARY["wechat"]
    operator = exposed.client("operator").get("/v1/customers/C002").json()["customer"]
    assert operator["phone"] == "+8613900139000"  # an operator's own customer


def test_explain_of_a_rule_on_pii_needs_the_right_to_that_customers_pii(exposed: Exposed
                                                                        ) -> None:
    url = "/v1/segments/contactable/explain/{}"
    refused = exposed.client("viewer").get(url.format("C001"))
    assert refused.status_code == 403
    assert "email" in refused.json()["detail"] and "phone" in refused.json()["detail"]
    # An operator may explain it for a customer they own, not for another.
    assert exposed.client("operator").get(url.format("C002")).status_code == 200
    assert exposed.client("operator").get(url.format("C001")).status_code == 403
    shown = exposed.client("analyst").get(url.format("C001")).json()
    assert shown["result"] is True
    assert {CANARY["email"], "+86" + CANARY["phone"]} <= {
        v for s in shown["steps"] for v in s["values"].values()}
    # A rule without personal data explains for everyone.
    plain = exposed.client("viewer").get("/v1/segments/buyers/explain/C001")
    assert plain.status_code == 200 and plain.json()["result"] is True


ORACLES = [
    "customer_id = 'C001' AND email CONTAINS 'q'",
    "customer_id = 'C001' AND NOT email CONTAINS 'q'",
    "customer_id = 'C001' OR name = 'x'",
    "phone IN ('13971207731')",
    "phone IS NULL",
    "email > 'p'",
    "name BETWEEN 'A' AND 'R'",
    "NOT (address IS NOT NULL)",
    "attributes.微信号 CONTAINS 'wx'",
    "attributes.身份证号 > '1101'",
    "COUNT(events WHERE properties.email CONTAINS 'qorvexa') >= 1",
    "IN_SEGMENT('contactable') AND customer_id = 'C001'",
    "NOT IN_SEGMENT('wechat_users')",
]


@pytest.mark.parametrize("rule", ORACLES)
def test_rules_on_pii_are_no_oracle_for_a_viewer(exposed: Exposed, rule: str) -> None:
    viewer, analyst = exposed.client("viewer"), exposed.client("analyst")
    refused = viewer.post("/v1/segments/preview", json={"rule": rule})
    assert refused.status_code == 403, (rule, refused.text)
    assert "pii:read" in refused.json()["detail"]
    assert analyst.post("/v1/segments/preview", json={"rule": rule}).status_code == 200


def test_saving_a_rule_on_pii_needs_pii_read(exposed: Exposed) -> None:
    with exposed.ws.control.write() as conn:
        narrow = accounts.create_key(conn, "writer", "analyst", "test",
                                     scopes=["segments:read", "segments:write"]).secret
    client = TestClient(exposed.app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {narrow}"
    body = {"rule": "email CONTAINS '@canary-mail.test'"}
    refused = client.put("/v1/segments/probe?dry_run=true", json=body)
    assert refused.status_code == 403 and "email" in refused.json()["detail"]
    assert client.put("/v1/segments/probe?dry_run=true",
                      json={"rule": "COUNT(orders) >= 1"}).status_code == 200
    scoring = {"events": [{"when": "properties.email CONTAINS 'q'", "points": 10}]}
    assert client.put("/v1/lead-scoring", json=scoring).status_code == 403


def test_rule_texts_hide_pii_literals_from_a_viewer(exposed: Exposed) -> None:
    listed = exposed.client("viewer").get("/v1/segments").json()
    rule = next(s for s in listed if s["key"] == "one_person")["definition"]["rule"]
    assert rule == "email = 's***@rule-only.test'"
    one = exposed.client("viewer").get("/v1/segments/one_person").json()
    assert LITERAL not in json.dumps(one, ensure_ascii=False)
    page = exposed.session("viewer").get("/segments")
    assert LITERAL not in page.text and "s***@rule-only.test" in page.text
    assert LITERAL not in exposed.session("viewer").get("/segments/one_person").text
    full = exposed.client("analyst").get("/v1/segments/one_person").json()
    assert LITERAL in full["definition"]["rule"]


def test_a_viewer_searches_by_id_only(exposed: Exposed) -> None:
    by_email = exposed.client("viewer").get("/v1/customers", params={"q": CANARY["email"]})
    assert by_email.json() == {"items": [], "next_after": None, "searched_by": ["customer_id"]}
    analyst = exposed.client("analyst").get("/v1/customers", params={"q": CANARY["email"]})
    assert [c["customer_id"] for c in analyst.json()["items"]] == ["C001"]
    match = exposed.client("viewer").post("/v1/customers/match",
                                          json={"customers": [{"email": CANARY["email"]}]})
    assert match.status_code == 403
    page = exposed.session("viewer").get("/customers", params={"q": CANARY["email"]})
    assert "customer ids only" in page.text or "只能按客户编号搜索" in page.text


def test_sensitive_attributes_are_encrypted_at_rest(exposed: Exposed) -> None:
    ws = exposed.ws
    with ws.control.read() as conn:
        stored = conn.execute(sa.text("SELECT attributes FROM customers WHERE customer_id = "
                                      "'C001'")).scalar()
    assert CANARY["wechat"] not in stored and CANARY["id_card"] not in stored
    assert json.loads(stored)["segment"] == "B2C"
    ws.control.dispose()
    raw = b"".join(p.read_bytes() for p in ws.root.glob("control.db*"))
    assert CANARY["wechat"].encode() not in raw and CANARY["id_card"].encode() not in raw
    # Read back through the store, and usable in rules.
    assert json.loads(ws.customers().set_index("customer_id").loc["C001", "attributes"]
                      )["微信号"] == CANARY["wechat"]
    from tierwise.segments.evaluate import evaluate_rule

    found = evaluate_rule(ws, f"attributes.微信号 = '{CANARY['wechat']}'")
    assert found["customer_id"].to_pylist() == ["C001"]


def test_the_import_says_which_columns_were_sensitive(exposed: Exposed, tmp_path: Path
                                                      ) -> None:
    path = tmp_path / "more.csv"
    path.write_text("customer_id,QQ号,passport_no,favourite_colour\nC010,12345,E1234567,red\n",
                    encoding="utf-8")
    result = exposed.ws.import_file("customers", path)
    assert result.sensitive == ["QQ号", "passport_no"]
    assert "sensitive" in result.summary() and "QQ号" in result.summary()


def test_names_of_personal_data() -> None:
    for name in ("id_card_number", "身份证号", "passport", "wechat", "微信号", "QQ号", "qq",
                 "bank_card", "银行卡号", "home_address", "收货地址", "mobile", "tel",
                 "alt_email"):
        assert looks_personal(name), name
    for name in ("segment", "hotel_name", "qqmusic_level", "industry", "automobile_brand",
                 "language"):
        assert not looks_personal(name), name
    personal = PersonalData.of(sensitive=["member_no"], public=["office_address"])
    assert personal.is_sensitive_key("Member-No") and not personal.is_sensitive_key(
        "office_address")
    from tierwise.definitions.segment_parser import parse

    assert personal_fields(parse("attributes.member_no = 'x' OR attributes.office_address "
                                 "= 'y'"), personal) == ["attributes.member_no"]
    assert personal_fields(parse("COUNT(orders) > 1 AND city = 'x'"), personal) == []


def _file_text(path: Path) -> str:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return json.dumps(pq.read_table(path).to_pylist(), ensure_ascii=False, default=str)
    return path.read_bytes().decode("utf-8", "replace")


def test_no_file_of_the_workspace_holds_customer_pii_in_clear(exposed: Exposed) -> None:
    """The control store, the customers' Parquet copy for the engines, snapshots, segment
    files and reports hold the customer's PII and sensitive attributes sealed or not at all.
    (Event properties are facts, stored as imported: masked when shown.)"""
    ws = exposed.ws
    from tierwise.store import customer_mirror

    mirror = customer_mirror.path_for(ws.root, ws.control)
    assert mirror.exists()
    ws.control.dispose()
    secrets = [s for s in SECRETS if "alt" not in s]
    found = {str(p.relative_to(ws.root)): [s for s in secrets if s in _file_text(p)]
             for p in ws.root.rglob("*") if p.is_file() and "keys" not in p.parts
             and not p.relative_to(ws.root).as_posix().startswith("facts/events")}
    assert {k: v for k, v in found.items() if v} == {}
    assert any("_mirror" in k for k in found)
