"""Holdout groups and uplift with confidence intervals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from tests.test_cli import tw

import tierwise
from tierwise.insights.effectiveness import holdout, uplift
from tierwise.segments.vocabulary import vocabulary


def test_holdout_is_random_reproducible_and_sized() -> None:
    ids = [f"C{i:05d}" for i in range(20_000)]
    treated, held = holdout(ids, 0.1, "spring")
    assert abs(len(held) / len(ids) - 0.1) < 0.01
    assert holdout(ids, 0.1, "spring") == (treated, held)
    assert set(holdout(ids, 0.1, "autumn")[1]) != set(held)


def _workspace(tmp_path: Path, treated_rate: float, holdout_rate: float
               ) -> tuple[tierwise.Workspace, list[str], list[str]]:
    rng = np.random.default_rng(3)
    ws = tierwise.init(tmp_path / "ws")
    treated = [f"T{i:04d}" for i in range(1500)]
    held = [f"H{i:04d}" for i in range(1500)]
    rows = ["order_id,customer_id,ordered_at,amount"]
    n = 0
    for ids, rate in ((treated, treated_rate), (held, holdout_rate)):
        for cid in ids:
            n += 1
            rows.append(f"O{n},{cid},2025-01-05 10:00,50")  # before the treatment
            if rng.random() < rate:
                n += 1
                rows.append(f"O{n},{cid},2025-03-{rng.integers(2, 28):02d} 10:00,"
                            f"{rng.integers(50, 150)}")
    (tmp_path / "o.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ws.import_file("orders", tmp_path / "o.csv", unknown_customers="create")
    return ws, treated, held


def test_uplift_finds_a_real_effect(tmp_path: Path) -> None:
    ws, treated, held = _workspace(tmp_path, 0.45, 0.30)
    effects = {e.metric: e for e in uplift(ws, treated, held,
                                           datetime(2025, 3, 1, tzinfo=UTC), 30)}
    repurchase = effects["repurchase_rate"]
    assert 0.10 < repurchase.difference < 0.20 and repurchase.significant
    assert repurchase.low < 0.15 < repurchase.high
    assert effects["revenue_per_customer"].difference > 0
    ws.close()


def test_no_effect_is_not_significant(tmp_path: Path) -> None:
    ws, treated, held = _workspace(tmp_path, 0.30, 0.30)
    repurchase = uplift(ws, treated, held, datetime(2025, 3, 1, tzinfo=UTC), 30)[0]
    assert repurchase.low < 0 < repurchase.high
    ws.close()


def test_holdout_and_uplift_cli(tmp_path: Path) -> None:
    ws, treated, held = _workspace(tmp_path, 0.45, 0.30)
    from tierwise.segments import catalog as defs
    from tierwise.segments import membership

    campaign = defs.SegmentDefinition(key="spring", kind="static")
    defs.write_file(ws, campaign)
    defs.save(ws, campaign)
    membership.edit_static(ws, "spring", add=treated + held)
    root = str(ws.root)
    assert "spring_holdout" in tw("holdout", "spring", "--share", "0.2", "-w", root)
    out = tw("uplift", "--treated", "spring", "--holdout", "spring_holdout", "--since",
             "2025-03-01", "-w", root)
    assert "repurchase" in out and "95% CI" in out
    ws.close()


def test_uplift_of_a_triggered_action_against_its_holdout(tmp_path: Path) -> None:
    """Entries into a static list fire a tag action with a 30 % holdout; treated customers
    then buy more often than held-out ones, and the measurement finds it."""
    from datetime import timedelta

    from tierwise.actions import catalog as automations
    from tierwise.actions.outbox import in_holdout
    from tierwise.ingest.readers import RecordsSource
    from tierwise.insights.effectiveness import action_uplift
    from tierwise.segments import catalog as defs
    from tierwise.segments import membership

    rng = np.random.default_rng(5)
    ws = tierwise.init(tmp_path / "ws")
    ids = [f"K{i:04d}" for i in range(2000)]
    start = datetime(2026, 3, 1, tzinfo=UTC)
    ws.import_source("orders", RecordsSource.from_dicts("history", [
        {"order_id": f"A{c}", "customer_id": c, "ordered_at": "2026-01-05T10:00:00+00:00",
         "amount": 50} for c in ids]), unknown_customers="create")
    defs.save(ws, defs.SegmentDefinition(key="winback", kind="static"))
    words = vocabulary(ws)
    with ws.control.write() as conn:
        automations.save(conn, "trigger", automations.parse_definition("trigger", {
            "key": "winback_offer", "on": {"event": "enter", "segment": "winback"},
            "action": {"type": "tag", "tag": "offer"}, "holdout": 0.3}, "test"),
            allowed_targets=[], vocabulary=words)
    membership.edit_static(ws, "winback", add=ids, at=start)
    orders = []
    for c in ids:
        rate = 0.2 if in_holdout("trigger:winback_offer", c, 0.3) else 0.35
        if rng.random() < rate:
            day = int(rng.integers(1, 25))
            orders.append({"order_id": f"B{c}", "customer_id": c, "amount": 80,
                           "ordered_at": (start + timedelta(days=day)).isoformat()})
    ws.import_source("orders", RecordsSource.from_dicts("after", orders))
    found = action_uplift(ws, "trigger:winback_offer", days=30)
    treated, held, effects = found.treated, found.held_out, found.effects
    assert treated + held == 2000 and 0.25 < held / 2000 < 0.35
    revenue = effects[2]
    assert revenue.metric == "revenue_per_customer"
    assert found.incremental_revenue == pytest.approx(revenue.difference * treated)
    assert found.cost == 0 and found.return_on_cost is None  # tags cost nothing
    repurchase = effects[0]
    assert repurchase.metric == "repurchase_rate" and repurchase.significant
    assert repurchase.low < 0.15 < repurchase.high
    out = tw("uplift", "--action", "trigger:winback_offer", "-w", str(ws.root))
    assert "held out" in out and "repurchase_rate" in out


def test_a_journeys_conversion_against_its_holdout(tmp_path: Path) -> None:
    """A journey with a goal and a holdout: the goal is checked for held-out customers
    too, and the conversion rates of both groups are those of a direct count."""
    from tierwise.actions import catalog as automations
    from tierwise.actions import playbooks
    from tierwise.actions.outbox import in_holdout
    from tierwise.ingest.readers import RecordsSource
    from tierwise.insights.effectiveness import action_uplift
    from tierwise.segments import catalog as defs
    from tierwise.segments import membership

    rng = np.random.default_rng(11)
    ws = tierwise.init(tmp_path / "ws")
    ids = [f"J{i:04d}" for i in range(600)]
    start = datetime.now(UTC) - timedelta(days=10)
    ws.import_source("orders", RecordsSource.from_dicts("history", [
        {"order_id": f"A{c}", "customer_id": c, "ordered_at": "2026-01-05T10:00:00+00:00",
         "amount": 50} for c in ids]), unknown_customers="create")
    defs.save(ws, defs.SegmentDefinition(key="lapsed", kind="static"))
    with ws.control.write() as conn:
        automations.save(conn, "playbook", automations.parse_definition("playbook", {
            "key": "recall", "applies_to": {"segment": "lapsed"},
            "exit_when": "COUNT(orders, LAST 7d) >= 1", "holdout": 0.5,
            "steps": [{"after": "0d", "action": {"type": "tag", "tag": "recall"}},
                      {"after": "3d", "action": {"type": "tag", "tag": "reminder"}}]},
            "test"), allowed_targets=[], vocabulary=vocabulary(ws))
    membership.edit_static(ws, "lapsed", add=ids, at=start)
    playbooks.advance(ws, start)
    held = {c for c in ids if in_holdout("playbook:recall", c, 0.5)}
    bought = {c for c in ids if rng.random() < (0.2 if c in held else 0.4)}
    ws.import_source("orders", RecordsSource.from_dicts("after", [
        {"order_id": f"B{c}", "customer_id": c, "amount": 80,
         "ordered_at": (start + timedelta(days=1)).isoformat()} for c in bought]))
    playbooks.advance(ws, start + timedelta(days=3))
    found = action_uplift(ws, "playbook:recall", days=30)
    conversion = found.effects[0]
    assert conversion.metric == "conversion_rate"
    treated = [c for c in ids if c not in held]
    assert conversion.treated == pytest.approx(len(bought - held) / len(treated))
    assert conversion.holdout == pytest.approx(len(bought & held) / len(held))
    assert conversion.significant and conversion.low < 0.2 < conversion.high
    # the dashboard's page shows the same numbers (the same function), and says why when
    # there is nothing to compare
    from fastapi.testclient import TestClient

    from tierwise.server.app import create_app
    from tierwise.store import accounts

    with ws.control.write() as conn:
        accounts.add_user(conn, "boss", "a-long-test-password", "admin", None)
    client = TestClient(create_app(ws))
    assert client.post("/v1/auth/login", json={"username": "boss",
                                               "password": "a-long-test-password"}).is_success
    page = client.get("/actions/effect?source=playbook:recall&lang=en")
    assert page.status_code == 200
    assert "Conversion rate" in page.text and f"{found.treated:,}" in page.text
    assert f"{conversion.treated * 100:.1f}%" in page.text
    nothing = client.get("/actions/effect?source=trigger:nothing&lang=en")
    assert nothing.status_code == 200 and "both groups need at least two" in nothing.text
    assert client.get("/actions/effect?source=segment:x").status_code == 400
    assert client.get("/actions/effect?source=playbook:recall&days=0").status_code == 400
    ws.close()
