"""One concept, one answer: the CLI, the REST API and the dashboard show the same expected
value at risk, the same tier plan and the same contact decisions on the same workspace."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from tests.test_cli import tw

import tierwise
from tierwise.demo.generator import DemoSpec
from tierwise.demo.load import load_generated
from tierwise.security import consent
from tierwise.server.app import create_app
from tierwise.store import accounts

PASSWORD = "one-answer-pass"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tierwise.Workspace]:
    ws = tierwise.init(tmp_path_factory.mktemp("one") / "ws", locale="en")
    load_generated(ws, DemoSpec(customers=300, seed=11, locale="en"))
    ws.compute()
    with ws.control.write() as conn:
        accounts.add_user(conn, "ann", PASSWORD, "admin")
        key = accounts.create_key(conn, "k", "admin", "test").secret
    ws.api_key = key  # type: ignore[attr-defined]
    yield ws
    ws.close()


def _api(ws: tierwise.Workspace) -> TestClient:
    client = TestClient(create_app(ws))
    client.headers["Authorization"] = f"Bearer {ws.api_key}"  # type: ignore[attr-defined]
    return client


def _browser(ws: tierwise.Workspace) -> TestClient:
    client = TestClient(create_app(ws))
    ok = client.post("/v1/auth/login", json={"username": "ann", "password": PASSWORD})
    client.headers["X-CSRF-Token"] = ok.json()["csrf_token"]
    return client


def _whole(text: str) -> int:
    return round(float(text.replace(",", "")))


def test_expected_value_at_risk_is_one_number(demo: tierwise.Workspace) -> None:
    api = _api(demo).get("/v1/values/summary").json()["value_at_risk"]
    assert api > 0
    page = _browser(demo).get("/clv?lang=en").text
    shown = re.search(r"Expected value at risk</[^>]+>\s*<[^>]+>([\d,.]+)<", page)
    assert shown is not None, page[:2000]
    cli = re.search(r"Expected value at risk[^:]*: ([\d,]+)", tw("clv", "-w", str(demo.root)))
    assert cli is not None
    assert _whole(shown.group(1)) == _whole(cli.group(1)) == round(api)


def test_a_tier_plan_is_one_plan(demo: tierwise.Workspace) -> None:
    spec = _api(demo).get("/v1/settings").json()["tiers"]["spec"]
    proposed = {**spec, "method": "percentile", "cuts": [0.1, 0.2, 0.3]}
    api = _api(demo).post("/v1/tiers/plan", json=proposed).json()
    page = _browser(demo).post("/v1/tiers/plan", json=proposed).json()  # the tiers page's call
    assert page == api and api["moved"] > 0
    out = tw("tiers", "plan", "--method", "percentile", "--cuts", "0.1,0.2,0.3", "-w",
             str(demo.root))
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 4 and cells[1].replace(",", "").isdigit():
            rows[cells[0]] = (_whole(cells[1]), _whole(cells[2]))
    assert [(r["before"], r["after"]) for r in api["tiers"]] == list(rows.values())
    assert f"{api['moved']:,} customers would change tier" in out


def test_a_contact_decision_is_one_decision(demo: tierwise.Workspace) -> None:
    customer = demo.customers()["customer_id"].iloc[0]
    consent.set_preference(demo, customer, "email", consent=True)
    consent.set_preference(demo, customer, "sms", unsubscribed=True)
    page = _browser(demo).get(f"/customers/{customer}?lang=en").text
    for channel in ("email", "sms", "phone", "webhook", "wechat"):
        for purpose in ("marketing", "service"):
            api = _api(demo).get(f"/v1/customers/{customer}/consent",
                                 params={"channel": channel, "purpose": purpose}).json()
            cli = tw("customers", "consent", customer, "--channel", channel, "--purpose",
                     purpose, "-w", str(demo.root))
            cell = re.search(rf'class="(ok|refused)" data-channel="{channel}" '
                             rf'data-purpose="{purpose}"', page)
            assert cell is not None
            assert api["allowed"] == (cell.group(1) == "ok") == ("not allowed" not in cli)
            assert api["reason"] in cli
    email = _api(demo).get(f"/v1/customers/{customer}/consent",
                           params={"channel": "email", "purpose": "marketing"}).json()
    sms = _api(demo).get(f"/v1/customers/{customer}/consent",
                         params={"channel": "sms", "purpose": "service"}).json()
    assert email["allowed"] and not sms["allowed"]


def test_the_latest_snapshot_is_the_latest_instant(demo: tierwise.Workspace) -> None:
    """A backfill (a snapshot computed now for an earlier instant) does not become the
    customers' current values on any front end."""
    from datetime import timedelta

    from tierwise.models import compute

    current = compute.load_snapshot(demo)
    backfill = demo.compute(current.as_of - timedelta(days=400))
    assert backfill.snapshot_id is not None and backfill.snapshot_id > current.snapshot_id
    assert compute.load_snapshot(demo).snapshot_id == current.snapshot_id
    api = _api(demo).get("/v1/values/summary").json()
    assert api["snapshot_id"] == current.snapshot_id
    customer = demo.customers()["customer_id"].iloc[0]
    values = _api(demo).get(f"/v1/customers/{customer}").json()["values"]
    assert values["snapshot_id"] == current.snapshot_id
