"""Customer economics against a hand-computed example: revenue, gross margin from costs,
category margins and the default margin, acquisition cost in the period (own, else the
channel's), tickets by priority, the account manager's time by tier, what messages cost,
profit contribution and referral value (credited to the first referrer, within its
window); the same figures on the page, the API and the CLI; the contribution as a tier
metric and a rule field."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.conftest import write

import tierwise
from tierwise.models import compute
from tierwise.models.economics import EconomicsSettings, per_customer
from tierwise.server.app import create_app
from tierwise.services import economics as service
from tierwise.store import accounts
from tierwise.store.tables import outbox

AS_OF = datetime(2026, 10, 15, tzinfo=UTC)
PASSWORD = "economics-pass-1"
#: Q3 2026 is 92 days: two hours a month at 50 an hour.
MANAGER = 2 * 50 * 92 / 30.4375
SETTINGS = EconomicsSettings(default_margin=0.5, category_margins={"B": 0.3},
                             ticket_cost=10, ticket_costs={"high": 30},
                             manager_hours={t: 2 for t in "ABCD"}, hourly_cost=50,
                             channel_cac={"抖音": 50})


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> tierwise.Workspace:
    root = tmp_path_factory.mktemp("economics")
    made = tierwise.init(root / "ws", message_costs={"email": 0.5})
    made.import_file("customers", write(root / "c.csv", (
        "customer_id,signup_at,acquisition_cost,channel,industry\n"
        "E1,2026-07-01,100,官网,制造业\nE2,2026-07-10,,抖音,制造业\n"
        "E3,2026-01-01,80,官网,零售\nE4,,,,\n")))
    made.import_file("orders", write(root / "o.csv", (
        "order_id,customer_id,ordered_at,amount,cost,category,status\n"
        "O1,E1,2026-07-05,1000,600,A,paid\n"       # margin 400 (its cost)
        "O2,E1,2026-08-05,500,,B,paid\n"           # 150 (category B: 30 %)
        "O3,E2,2026-07-15,200,,C,paid\n"           # 100 (default 50 %)
        "O4,E3,2026-09-01,300,100,A,paid\n"        # 200
        "O5,E4,2026-08-01,400,,A,refunded\n"       # not revenue
        "O6,E4,2026-08-02,250,,,paid\n"            # 125; E4's first paid order: acquired
        "O7,E1,2026-06-30,999,,A,paid\n")))        # before the period
    made.import_file("tickets", write(root / "t.csv", (
        "ticket_id,customer_id,opened_at,priority\n"
        "T1,E1,2026-07-20,high\nT2,E1,2026-08-20,low\nT3,E2,2026-07-21,\n")))
    made.import_file("referrals", write(root / "r.csv", (
        "referrer_id,referred_id,at\n"
        "E1,E2,2026-07-10\nE3,E2,2026-07-20\n"     # E2 is credited to E1, the first
        "E1,E4,2025-01-01\n")))                    # E4's orders: beyond the 365 days
    with made.control.write() as conn:
        service = json.dumps({"event": {}, "action": {"type": "sms", "purpose": "service"}})
        for key, customer, at, payload in (
                ("m1", "E1", "2026-07-25", "{}"), ("m2", "E1", "2026-07-26", "{}"),
                ("m3", "E2", "2026-10-02", "{}"),  # after Q3
                ("m4", "E2", "2026-08-03", service)):  # a service message: cost to serve
            when = datetime.fromisoformat(at).replace(tzinfo=UTC)
            conn.execute(sa.insert(outbox).values(
                idempotency_key=key, source="trigger:t", event="enter", customer_id=customer,
                action="email", payload=payload, status="delivered", next_attempt_at=when,
                created_at=when, delivered_at=when, cost=0.5))
    compute.save_setting(made, "economics", SETTINGS)
    made.compute(AS_OF)
    with made.control.write() as conn:
        accounts.add_user(conn, "admin", PASSWORD, "admin")
    return made


EXPECTED = {
    "E1": {"revenue": 1500, "gross_margin": 550, "acquisition_cost": 100, "ticket_cost": 40,
           "manager_cost": MANAGER, "marketing_cost": 1.0, "referral_value": 100,
           "service_message_cost": 0},
    "E2": {"revenue": 200, "gross_margin": 100, "acquisition_cost": 50, "ticket_cost": 10,
           "manager_cost": MANAGER, "marketing_cost": 0, "referral_value": 0,
           "service_message_cost": 0.5},
    "E3": {"revenue": 300, "gross_margin": 200, "acquisition_cost": 0, "ticket_cost": 0,
           "manager_cost": MANAGER, "marketing_cost": 0, "referral_value": 0,
           "service_message_cost": 0},
    "E4": {"revenue": 250, "gross_margin": 125, "acquisition_cost": 0, "ticket_cost": 0,
           "manager_cost": MANAGER, "marketing_cost": 0, "referral_value": 0,
           "service_message_cost": 0},
}


def _contribution(e: dict[str, float]) -> float:
    return (e["gross_margin"] - e["ticket_cost"] - e["manager_cost"]
            - e["service_message_cost"] - e["marketing_cost"] - e["acquisition_cost"])


def test_each_measure_by_hand(ws: tierwise.Workspace) -> None:
    for customer, expected in EXPECTED.items():
        found = service.of_customer(ws, customer, "2026Q3", as_of=AS_OF)
        for name, value in expected.items():
            assert found[name] == pytest.approx(value), (customer, name)
        assert found["cost_to_serve"] == pytest.approx(
            expected["ticket_cost"] + MANAGER + expected["service_message_cost"])
        assert found["profit_contribution"] == pytest.approx(_contribution(expected))
    whole = service.economics(ws, "2026Q3", as_of=AS_OF)
    assert whole.totals["customers"] == 4 and whole.totals["orders"] == 5
    assert whole.totals["revenue"] == 2250 and whole.totals["gross_margin"] == 975
    assert whole.totals["profit_contribution"] == pytest.approx(
        sum(_contribution(e) for e in EXPECTED.values()), abs=0.01)
    assert whole.totals["referral_value"] == 100
    # the priority without a cost of its own is said
    assert any("priority low" in note for note in whole.notes)
    by_industry = service.economics(ws, "2026Q3", "industry", as_of=AS_OF)
    groups = {g["group"]: g for g in by_industry.groups}
    assert set(groups) == {"制造业", "零售", None}
    assert groups["制造业"]["revenue"] == 1700 and groups["制造业"]["customers"] == 2
    assert sum(g["profit_contribution"] for g in by_industry.groups) == pytest.approx(
        whole.totals["profit_contribution"], abs=0.02)
    total, rows = service.customers(ws, "2026Q3", "profit_contribution", as_of=AS_OF)
    assert total == 4 and [r["customer_id"] for r in rows] == ["E1", "E3", "E4", "E2"]
    assert service.customers(ws, "2026Q3", "revenue", by="industry", group="零售",
                             as_of=AS_OF)[1][0]["customer_id"] == "E3"


def test_orders_without_any_cost_are_counted_whole_and_said(ws: tierwise.Workspace) -> None:
    bare = EconomicsSettings()
    found = per_customer(ws, bare, datetime(2026, 6, 30, 16, tzinfo=UTC),
                         datetime(2026, 9, 30, 16, tzinfo=UTC))
    rows = {r["customer_id"]: r for r in found.to_pylist()}
    assert rows["E2"]["gross_margin"] == 200 and rows["E2"]["orders_without_cost"] == 1
    assert rows["E1"]["gross_margin"] == 900  # O2 at its full 500: no category margin
    assert rows["E1"]["manager_cost"] == 0  # no tiers given: no manager time
    compute.save_setting(ws, "economics", bare)
    try:
        notes = service.economics(ws, "2026Q3", as_of=AS_OF).notes
        assert any("3 paid orders have no cost" in n for n in notes), notes
    finally:
        compute.save_setting(ws, "economics", SETTINGS)


def test_settings_are_checked(ws: tierwise.Workspace) -> None:
    with pytest.raises(tierwise.TierwiseError, match="tiers that do not exist: VIP"):
        compute.save_setting(ws, "economics", EconomicsSettings(manager_hours={"VIP": 3}))
    for bad in ({"category_margins": {"A": 1.5}}, {"ticket_costs": {"high": -1}},
                {"ticket_cost": -1}, {"colour": 1}):
        with pytest.raises(ValueError):
            EconomicsSettings.model_validate(bad)
    with pytest.raises(tierwise.TierwiseError, match="by='city'"):
        service.economics(ws, "2026Q3", "city", as_of=AS_OF)
    with pytest.raises(tierwise.TierwiseError, match="order='nope'"):
        service.customers(ws, "2026Q3", "nope", as_of=AS_OF)


def test_contribution_feeds_the_tiers_and_rules(ws: tierwise.Workspace) -> None:
    """The snapshot holds each customer's last twelve months' contribution (no manager
    time: the tier prices it); rules and the tier weights read it."""
    snap = compute.load_snapshot(ws).table
    got = dict(zip(snap["customer_id"].to_pylist(), snap["contribution_12m"].to_pylist(),
                   strict=True))
    # the year to 15 October: O7 (999, no cost, default 50 %) counts too; E3's
    # acquisition (January) is inside the year; messages 1.0 for E1
    assert got["E1"] == pytest.approx(400 + 150 + 499.5 - 40 - 1.0 - 100)
    assert got["E3"] == pytest.approx(200 - 80)
    from tierwise.segments.evaluate import evaluate_rule

    assert sorted(evaluate_rule(ws, "contribution_12m > 500", AS_OF)["customer_id"]
                  .to_pylist()) == ["E1"]


def test_page_api_and_cli_agree(ws: tierwise.Workspace) -> None:
    expected = service.economics(ws, "2026Q3", "industry", as_of=AS_OF)
    client = TestClient(create_app(ws))
    ok = client.post("/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    client.headers["X-CSRF-Token"] = ok.json()["csrf_token"]
    api = client.get("/v1/values/economics", params={"period": "2026Q3",
                                                     "by": "industry"}).json()
    assert api["totals"]["revenue"] == expected.totals["revenue"]
    assert {g["group"]: g["revenue"] for g in api["groups"]} == {
        g["group"]: g["revenue"] for g in expected.groups}
    assert any("low" in n for n in api["notes"])
    page = client.get("/economics", params={"period": "2026Q3", "by": "industry",
                                            "lang": "en"})
    assert page.status_code == 200
    assert "Profit contribution" in page.text and "2,250.00" in page.text
    listed = client.get("/v1/values/economics/customers", params={
        "period": "2026Q3", "order": "revenue", "limit": 2}).json()
    assert listed["total"] == 4 and [r["customer_id"] for r in listed["customers"]] == [
        "E1", "E3"]
    assert client.get("/v1/values/economics", params={"period": "2026Q3", "by": "city"}
                      ).status_code == 422
    assert client.get("/economics", params={"period": "nope"}).status_code == 400
    done = subprocess.run([sys.executable, "-m", "tierwise.cli.main", "economics", "--period",
                           "2026Q3", "--by", "industry", "--json", "-w", str(ws.root)],
                          capture_output=True, text=True, check=True)
    cli = json.loads(done.stdout)
    assert cli["totals"]["gross_margin"] == expected.totals["gross_margin"]
    assert cli["notes"] and len(cli["groups"]) == 3
    done = subprocess.run([sys.executable, "-m", "tierwise.cli.main", "economics", "--period",
                           "2026Q3", "--customer", "E1", "--json", "-w", str(ws.root)],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["referral_value"] == 100
    path = Path(ws.root) / "econ.yaml"
    path.write_text("ticket_cost: 12\nmanager_hours: {A: 1}\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "tierwise.cli.main", "economics", "--settings",
                    str(path), "-w", str(ws.root)], capture_output=True, text=True, check=True)
    try:
        assert compute.load_settings(ws).economics.ticket_cost == 12
    finally:
        compute.save_setting(ws, "economics", SETTINGS)


def test_the_review_shows_economics_per_tier(ws: tierwise.Workspace) -> None:
    from tierwise.services.review import review
    from tierwise.web import report

    found = review(ws, "2026Q3")
    whole = service.economics(ws, "2026Q3", as_of=AS_OF)
    assert sum(g["customers"] for g in found.economics) == 4
    assert sum(g["revenue"] for g in found.economics) == whole.totals["revenue"]
    assert sum(g["profit_contribution"] for g in found.economics) == pytest.approx(
        whole.totals["profit_contribution"], abs=0.05)
    page = report.html(ws, found, "en")
    assert "Customer economics" in page and "Profit contribution" in page
    chinese = report.html(ws, found, "zh-CN")
    assert "利润贡献" in chinese and "优先级为 low" in chinese  # the note, in Chinese


def test_a_ticket_costs_what_its_most_specific_key_says(tmp_path: Path) -> None:
    made = tierwise.init(tmp_path / "ws")
    made.import_file("customers", write(tmp_path / "c.csv", "customer_id\nX\n"))
    made.import_file("tickets", write(tmp_path / "t.csv", (
        "工单号,客户编号,创建时间,优先级,受理渠道\n"
        "T1,X,2026-07-02,urgent,phone\nT2,X,2026-07-03,low,phone\n"
        "T3,X,2026-07-04,high,web\nT4,X,2026-07-05,high,\nT5,X,2026-07-06,,chat\n"
        "T6,X,2026-07-07,low,chat\n")))
    settings = EconomicsSettings(ticket_cost=5, ticket_costs={"phone/urgent": 300, "high": 60,
                                                              "phone": 40})
    found = per_customer(made, settings, datetime(2026, 7, 1, tzinfo=UTC),
                         datetime(2026, 8, 1, tzinfo=UTC)).to_pylist()[0]
    # 300 (phone/urgent) + 40 (phone) + 60 (high) + 60 (high) + 5 + 5 (chat: no key)
    assert found["tickets"] == 6 and found["ticket_cost"] == 470
    compute.save_setting(made, "economics", settings)
    notes = service.economics(made, "2026Q3", as_of=AS_OF).notes
    assert any("chat/low" in n for n in notes), notes
    made.close()


def test_acquisition_follows_the_first_paid_order_without_a_signup(tmp_path: Path) -> None:
    """A customer without a signup instant was acquired by their first paid order: counted
    when that falls in the period, not when it came before; with a signup instant, the
    signup decides."""
    made = tierwise.init(tmp_path / "ws")
    made.import_file("customers", write(tmp_path / "c.csv", (
        "customer_id,signup_at,channel\nN1,,抖音\nN2,,抖音\nS1,2026-07-03,抖音\n"
        "S2,2026-05-01,抖音\nN3,,抖音\n")))
    made.import_file("orders", write(tmp_path / "o.csv", (
        "order_id,customer_id,ordered_at,amount,status\n"
        "A,N1,2026-07-09,10,paid\nB,N1,2026-07-20,10,paid\n"   # first paid in July
        "C,N2,2026-06-20,10,paid\nD,N2,2026-07-09,10,paid\n"   # first paid in June
        "E,S2,2026-07-09,10,paid\n"                              # signed up in May
        "F,N3,2026-07-02,10,refunded\nG,N3,2026-08-02,10,paid\n")))  # first paid: August
    settings = EconomicsSettings(channel_cac={"抖音": 50})
    found = {r["customer_id"]: r["acquisition_cost"] for r in per_customer(
        made, settings, datetime(2026, 7, 1, tzinfo=UTC),
        datetime(2026, 8, 1, tzinfo=UTC)).to_pylist()}
    assert found == {"N1": 50, "N2": 0, "S1": 50, "S2": 0, "N3": 0}
    made.close()


def test_a_setting_that_names_nothing_is_said(ws: tierwise.Workspace) -> None:
    """A typo in a category, channel or ticket key prices nothing: said, not ignored."""
    typo = SETTINGS.model_copy(update={"category_margins": {"B": 0.3, "Bb": 0.4},
                                       "channel_cac": {"抖音": 50, "抖英": 60},
                                       "ticket_costs": {"high": 30, "hihg": 20}})
    compute.save_setting(ws, "economics", typo)
    try:
        notes = [str(n) for n in service.economics(ws, "2026Q3", as_of=AS_OF).notes]
    finally:
        compute.save_setting(ws, "economics", SETTINGS)
    for setting, key in (("category_margins", "Bb"), ("channel_cac", "抖英"),
                         ("ticket_costs", "hihg")):
        assert any(n.startswith(f"{setting} names {key},") for n in notes), (setting, notes)
    fine = [str(n) for n in service.economics(ws, "2026Q3", as_of=AS_OF).notes]
    assert not any("price nothing" in n for n in fine)


def test_the_managers_time_follows_the_playbooks_service_level(ws: tierwise.Workspace
                                                                 ) -> None:
    from tierwise.actions import catalog as automations
    from tierwise.segments import catalog as defs
    from tierwise.segments.membership import evaluate_all

    defs.save(ws, defs.SegmentDefinition(key="makers", rule="industry = '制造业'"))
    evaluate_all(ws, AS_OF)
    book = {"key": "key_accounts", "names": {"zh-CN": "重点客户", "en": "Key accounts"},
            "applies_to": {"segment": "makers"}, "priority": 1, "service_level": "premium"}
    with ws.control.write() as conn:
        automations.save(conn, "playbook", automations.parse_definition(
            "playbook", book, "test"), "test", allowed_targets=(), vocabulary=None)
    before = compute.load_settings(ws, for_compute=False).economics
    try:
        compute.save_setting(ws, "economics", before.model_copy(update={
            "service_level_hours": {"premium": 10, "gold": 3}}))
        premium = 10 * 50 * 92 / 30.4375
        found = {c: service.of_customer(ws, c, "2026Q3", as_of=AS_OF)["manager_cost"]
                 for c in ("E1", "E2", "E3", "E4")}
        # E1 and E2 (manufacturing) by the playbook's level; the others by their tier
        assert found == pytest.approx({"E1": premium, "E2": premium, "E3": MANAGER,
                                       "E4": MANAGER})
        notes = service.economics(ws, "2026Q3", as_of=AS_OF).notes
        assert any("service_level_hours names gold" in str(n) for n in notes)
    finally:
        compute.save_setting(ws, "economics", before)
        with ws.control.write() as conn:
            automations.disable(conn, "playbook", "key_accounts", "test")


def test_the_kept_figures_follow_new_deliveries(ws: tierwise.Workspace) -> None:
    before = service.cached_economics(ws, "2026Q3").totals["marketing_cost"]
    when = datetime(2026, 9, 9, tzinfo=UTC)
    with ws.control.write() as conn:
        conn.execute(sa.insert(outbox).values(
            idempotency_key="late", source="trigger:t", event="enter", customer_id="E3",
            action="email", payload="{}", status="delivered", next_attempt_at=when,
            created_at=when, delivered_at=when, cost=0.5))
    assert service.cached_economics(ws, "2026Q3").totals["marketing_cost"] == before + 0.5
    with ws.control.write() as conn:
        conn.execute(sa.delete(outbox).where(outbox.c.idempotency_key == "late"))
