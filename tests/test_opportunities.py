"""Sales opportunities: imports that name stages as the workspace does (or refuse the
file), the stage history they keep, rules over both tables, and triggers on stage changes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.api_helpers import build
from tests.conftest import write

import tierwise
from tierwise.actions import catalog as automations
from tierwise.definitions.segment_fields import RuleError
from tierwise.errors import ImportRejected, TierwiseError, WorkspaceError
from tierwise.ingest.readers import RecordsSource
from tierwise.realtime import intake
from tierwise.segments import literals
from tierwise.segments.evaluate import evaluate_rule
from tierwise.segments.vocabulary import vocabulary
from tierwise.store.tables import outbox

HEADER = "商机编号,客户编号,商机名称,阶段,金额,创建时间,负责人\n"


def _history(ws: tierwise.Workspace) -> list[tuple[str, str | None, str]]:
    rows = ws.sql("SELECT opportunity_id, from_stage, stage FROM opportunity_stages "
                  "ORDER BY opportunity_id, \"at\", stage").to_pylist()
    return [(r["opportunity_id"], r["from_stage"], r["stage"]) for r in rows]


def _opportunities(ws: tierwise.Workspace) -> dict[str, dict[str, object]]:
    return {r["opportunity_id"]: r for r in ws.table("opportunities").to_pylist()}


@pytest.fixture
def accounts(ws: tierwise.Workspace, tmp_path: Path) -> tierwise.Workspace:
    ws.import_file("customers", write(tmp_path / "c.csv", "customer_id,name,industry\n"
                                      "A1,甲公司,制造业\nA2,乙公司,零售\nA3,丙公司,金融\n"))
    return ws


def test_stages_are_named_as_the_workspace_names_them(accounts: tierwise.Workspace,
                                                      tmp_path: Path):
    ws = accounts
    result = ws.import_file("opportunities", write(tmp_path / "o.csv", HEADER + (
        "D1,A1,ERP,线索,100000,2026-10-01,王\n"
        "D2,A1,CRM,Negotiation,50000,2026-11-01,李\n"
        "D3,A2,BI,WON,20000,2026-09-01 10:00,王\n")))
    assert result.inserted == 3
    found = _opportunities(ws)
    assert [found[k]["stage"] for k in ("D1", "D2", "D3")] == ["线索", "谈判", "赢单"]
    # the first stage of a new opportunity was reached when it was created
    assert found["D1"]["stage_at"] == found["D1"]["created_at"]
    # a won one is closed when it was won (here: when the import saw it)
    assert found["D3"]["closed_at"] == found["D3"]["stage_at"] is not None
    assert found["D1"]["closed_at"] is None and found["D2"]["closed_at"] is None
    assert _history(ws) == [("D1", None, "线索"), ("D2", None, "谈判"), ("D3", None, "赢单")]


def test_an_unknown_stage_rejects_the_whole_file(accounts: tierwise.Workspace,
                                                 tmp_path: Path):
    ws = accounts
    ws.import_file("opportunities", write(tmp_path / "o.csv", HEADER +
                                          "D1,A1,ERP,线索,100000,2026-10-01,王\n"))
    before = (_opportunities(ws), _history(ws))
    bad = write(tmp_path / "bad.csv", HEADER + "D1,A1,ERP,商机,100000,2026-10-01,王\n"
                                               "D4,A2,BI,closing,5000,2026-10-02,李\n")
    with pytest.raises(ImportRejected) as caught:
        ws.import_file("opportunities", bad, report_path=tmp_path / "r.csv")
    text = str(caught.value)
    assert "row 3" in text and "'阶段'" in text and "'closing'" in text and "'赢单'" in text
    assert "opportunity_stages" in text  # the setting that lists them
    assert (_opportunities(ws), _history(ws)) == before  # D1 did not move either


def test_moves_are_kept_as_history_once(accounts: tierwise.Workspace, tmp_path: Path):
    ws = accounts
    first = write(tmp_path / "o1.csv", HEADER + "D1,A1,ERP,线索,100000,2026-10-01,王\n"
                                                "D2,A2,BI,商机,8000,2026-10-05,李\n")
    ws.import_file("opportunities", first)
    stage_at = _opportunities(ws)["D2"]["stage_at"]
    ws.import_file("opportunities", first)  # the same file again: nothing moved
    assert _history(ws) == [("D1", None, "线索"), ("D2", None, "商机")]
    assert _opportunities(ws)["D2"]["stage_at"] == stage_at  # kept, not "now" again
    ws.import_file("opportunities", write(tmp_path / "o2.csv", HEADER + (
        "D1,A1,ERP,方案,120000,2026-10-01,王\nD2,A2,BI,输单,8000,2026-10-05,李\n")))
    ws.import_file("opportunities", write(tmp_path / "o3.csv", HEADER + (
        "D1,A1,ERP,谈判,120000,2026-10-01,王\n")))
    assert _history(ws) == [("D1", None, "线索"), ("D1", "线索", "方案"), ("D1", "方案", "谈判"),
                            ("D2", None, "商机"), ("D2", "商机", "输单")]
    assert _opportunities(ws)["D2"]["closed_at"] is not None
    assert ws.count("opportunities") == 2


def test_given_stage_times_are_kept_and_history_imports_merge(accounts: tierwise.Workspace,
                                                              tmp_path: Path):
    ws = accounts
    ws.import_file("opportunities", write(tmp_path / "o.csv", (
        "opportunity_id,customer_id,stage,amount,created_at,stage_at\n"
        "D1,A1,谈判,100000,2026-01-01,2026-03-01\n")))
    assert _opportunities(ws)["D1"]["stage_at"] == datetime(2026, 2, 28, 16, tzinfo=UTC)
    # the CRM's own history, its stages in English: its move into 谈判 is the same move
    # (same stage and time) as the one the import recorded
    ws.import_file("opportunity_stages", write(tmp_path / "h.csv", (
        "opportunity_id,customer_id,from_stage,stage,at\n"
        "D1,A1,,Lead,2026-01-01\nD1,A1,lead,proposal,2026-02-01\n"
        "D1,A1,Proposal,NEGOTIATION,2026-03-01\n")))
    assert _history(ws) == [("D1", None, "线索"), ("D1", "线索", "方案"), ("D1", "方案", "谈判")]
    with pytest.raises(ImportRejected, match="'closing'"):  # history names stages too
        ws.import_file("opportunity_stages", write(tmp_path / "h2.csv", (
            "opportunity_id,customer_id,from_stage,stage,at\n"
            "D1,A1,谈判,closing,2026-04-01\n")), report_path=tmp_path / "r.csv")
    assert len(_history(ws)) == 3


def test_rules_over_opportunities_and_their_moves(accounts: tierwise.Workspace,
                                                  tmp_path: Path):
    ws = accounts
    old = (datetime.now(UTC) - timedelta(days=60)).strftime("%Y-%m-%d %H:%M")
    ws.import_file("opportunities", write(tmp_path / "o.csv", (
        "opportunity_id,customer_id,stage,amount,created_at,stage_at,owner\n"
        f"D1,A1,谈判,100000,2026-01-01,{old},王\n"
        "D2,A1,赢单,30000,2026-01-01,,李\n"
        "D3,A2,方案,5000,2026-02-01,,王\n")))

    def members(rule: str) -> list[str]:
        checked = literals.check(ws, rule)
        return sorted(evaluate_rule(ws, checked.rule)["customer_id"].to_pylist())

    assert members("SUM(opportunities.amount WHERE stage = 'won') >= 30000") == ["A1"]
    assert members("COUNT(opportunities WHERE stage NOT IN ('Won', '输单')) >= 1") == [
        "A1", "A2"]
    assert members("COUNT(opportunities WHERE stage = '谈判' AND stage_at < -30d) >= 1") == [
        "A1"]
    assert members("COUNT(opportunity_stages WHERE stage = 'proposal', LAST 7d) >= 1") == [
        "A2"]
    assert members("COUNT(opportunities) = 0") == ["A3"]
    with pytest.raises(RuleError) as caught:
        literals.check(ws, "COUNT(opportunities WHERE stage = 'closing') >= 1")
    assert "'谈判'" in caught.value.en and "closing" in caught.value.en


def test_stage_settings_are_checked(tmp_path: Path):
    ws = tierwise.init(tmp_path / "ws", opportunity_stages=["Lead", "Demo", "Closed Won",
                                                            "Closed Lost"],
                       won_stage="Closed Won", lost_stage="Closed Lost")
    ws.import_file("customers", write(tmp_path / "c.csv", "customer_id\nA1\n"))
    ws.import_file("opportunities", write(tmp_path / "o.csv", (
        "opportunity_id,customer_id,stage,created_at\nD1,A1,closed won,2026-01-01\n")))
    assert _opportunities(ws)["D1"]["stage"] == "Closed Won"
    assert _opportunities(ws)["D1"]["closed_at"] is not None
    with pytest.raises(ImportRejected):  # the default stages are not this workspace's
        ws.import_file("opportunities", write(tmp_path / "o2.csv", (
            "opportunity_id,customer_id,stage,created_at\nD2,A1,赢单,2026-01-01\n")),
            report_path=tmp_path / "r.csv")
    ws.close()
    for settings, words in (({"won_stage": "won"}, "won_stage = 'won'"),
                            ({"opportunity_stages": ["线索", " 线索"]}, "twice"),
                            ({"opportunity_stages": ["线索"]}, "at least two"),
                            ({"won_stage": "输单"}, "both")):
        with pytest.raises(WorkspaceError, match=words):
            tierwise.init(tmp_path / f"bad{len(words)}", **settings)


def test_stage_changes_fire_triggers_once_and_not_for_old_history(tmp_path: Path):
    served = build(tmp_path)
    ws = served.ws
    words = vocabulary(ws)

    def define(data: dict[str, object]) -> None:
        model = automations.parse_definition("trigger", data, "test")
        with ws.control.write() as conn:
            automations.save(conn, "trigger", model, allowed_targets=[], vocabulary=words)

    define({"key": "won_deal", "on": {"event": "stage_change", "from": ["Negotiation"],
                                      "to": ["won"]},
            "action": {"type": "task", "title": "Kick-off"}})
    define({"key": "any_move", "on": {"event": "stage_change"},
            "action": {"type": "tag", "tag": "pipeline"}})
    with pytest.raises(TierwiseError, match="closing"):
        define({"key": "typo", "on": {"event": "stage_change", "to": ["closing"]},
                "action": {"type": "tag", "tag": "x"}})
    now = datetime.now(UTC)

    def post(rows: list[dict[str, object]]) -> None:
        ws.import_source("opportunities", RecordsSource.from_dicts("test", rows))

    # loading last year's deals is a backfill: no trigger fires by default
    post([{"opportunity_id": "OLD", "customer_id": "C002", "stage": "赢单",
           "created_at": "2025-01-01", "stage_at": "2025-03-01"}])
    post([{"opportunity_id": "D1", "customer_id": "C001", "stage": "谈判",
           "created_at": now.isoformat(), "amount": 5000}])
    post([{"opportunity_id": "D1", "customer_id": "C001", "stage": "赢单",
           "created_at": now.isoformat(), "amount": 5000}])
    post([{"opportunity_id": "D1", "customer_id": "C001", "stage": "赢单",
           "created_at": now.isoformat(), "amount": 5000}])  # no move: nothing fires
    with ws.control.read() as conn:
        rows = list(conn.execute(sa.select(outbox).order_by(outbox.c.outbox_id)))
    fired = sorted(((r.source, json.loads(r.payload)["event"]) for r in rows),
                   key=lambda f: (f[0], f[1]["to"]))
    assert [(s, e["opportunity_id"], e["from"], e["to"]) for s, e in fired] == [
        ("trigger:any_move", "D1", None, "谈判"), ("trigger:any_move", "D1", "谈判", "赢单"),
        ("trigger:won_deal", "D1", "谈判", "赢单")]
    won = fired[2][1]
    assert won["event"] == "opportunity.stage_changed" and won["reason"] == "data_change"
    assert won["customer_id"] == "C001" and won["amount"] == 5000
    ws.close()


def test_intake_keeps_every_stage_posted_together(tmp_path: Path):
    served = build(tmp_path)
    ws = served.ws
    client = served.client("admin")
    now = datetime.now(UTC).isoformat()
    rows = [{"opportunity_id": "D9", "customer_id": "C001", "stage": stage,
             "created_at": now, "amount": 1000} for stage in ("线索", "商机", "方案")]
    answer = client.post("/v1/opportunities", json=rows)
    assert answer.status_code == 202, answer.text
    refused = client.post("/v1/opportunities", json=[{**rows[0], "stage": "closing"}])
    assert refused.status_code == 422 and "closing" in refused.text
    moved = intake.flush(ws)
    assert moved.moved == {"opportunities": 3}
    assert moved.customers["opportunity_stages"] == {"C001"}
    assert _history(ws) == [("D9", None, "线索"), ("D9", "线索", "商机"), ("D9", "商机", "方案")]
    assert _opportunities(ws)["D9"]["stage"] == "方案"
    ws.close()


def test_an_accounts_opportunities_on_its_page_and_in_the_api(tmp_path: Path):
    served = build(tmp_path)
    ws = served.ws
    now = datetime.now(UTC)
    ws.import_source("opportunities", RecordsSource.from_dicts("test", [
        {"opportunity_id": "D1", "customer_id": "C001", "name": "ERP 升级", "stage": "谈判",
         "amount": 10000, "probability": 60, "created_at": now.isoformat()},
        {"opportunity_id": "D2", "customer_id": "C001", "stage": "won", "amount": 3000,
         "created_at": (now - timedelta(days=90)).isoformat()},
        {"opportunity_id": "D3", "customer_id": "C002", "stage": "线索",
         "created_at": now.isoformat()}]))
    page = served.client("admin").get("/customers/C001", params={"lang": "en"})
    assert page.status_code == 200
    rows = re.findall(r'<tr data-opportunity="([^"]+)"><th scope="row">[^<]*<small[^>]*>'
                      r'<code>[^<]*</code></small></th><td>([^<]+)', page.text)
    assert rows == [("D1", "Negotiation"), ("D2", "Won")]  # open first; stages in English
    assert "1 open (10,000.00, weighted by win probability 6,000.00) · 1 won (3,000.00)" \
        in page.text
    answer = served.client("admin").get("/v1/customers/C001/profile").json()
    assert [o["opportunity_id"] for o in answer["opportunities"]] == ["D1", "D2"]
    assert answer["pipeline"]["weighted_amount"] == 6000
    ws.close()


def test_the_opportunity_sla_template_finds_stalled_deals_of_key_accounts(
        accounts: tierwise.Workspace, tmp_path: Path):
    from tierwise.segments.templates import TEMPLATES

    ws = accounts
    now = datetime.now(UTC)
    ws.import_file("orders", write(tmp_path / "o.csv", (
        "order_id,customer_id,ordered_at,amount\n"
        f"O1,A1,{(now - timedelta(days=40)):%Y-%m-%d},100000\n"
        f"O2,A2,{(now - timedelta(days=40)):%Y-%m-%d},10\n")))
    ws.compute(now)
    ws.import_source("opportunities", RecordsSource.from_dicts("test", [
        {"opportunity_id": "D1", "customer_id": "A1", "stage": "谈判",
         "created_at": (now - timedelta(days=20)).isoformat(),
         "stage_at": (now - timedelta(days=10)).isoformat()},
        {"opportunity_id": "D2", "customer_id": "A2", "stage": "谈判",   # not tier A
         "created_at": (now - timedelta(days=40)).isoformat(),
         "stage_at": (now - timedelta(days=30)).isoformat()},
        {"opportunity_id": "D3", "customer_id": "A1", "stage": "赢单",   # closed: no SLA
         "created_at": (now - timedelta(days=60)).isoformat(),
         "stage_at": (now - timedelta(days=50)).isoformat()}]))
    rule = TEMPLATES["stalled_key_deals"].rule
    assert rule is not None
    assert evaluate_rule(ws, literals.check(ws, rule).rule, now)["customer_id"].to_pylist() == []
    later = now + timedelta(days=5)  # D1 has now been 15 days in 谈判
    assert evaluate_rule(ws, literals.check(ws, rule).rule, later)["customer_id"] \
        .to_pylist() == ["A1"]


def test_the_pipeline_by_hand_on_the_page_the_api_and_the_cli(tmp_path: Path):
    import subprocess
    import sys

    from tierwise.services import pipeline

    served = build(tmp_path)
    ws = served.ws
    now = datetime.now(UTC)

    def days_ago(n: float) -> str:
        return (now - timedelta(days=n)).isoformat()

    ws.import_source("opportunities", RecordsSource.from_dicts("test", [
        {"opportunity_id": "D1", "customer_id": "C001", "stage": "谈判", "amount": 10000,
         "probability": 60, "created_at": days_ago(30), "stage_at": days_ago(10),
         "owner": "王"},
        {"opportunity_id": "D2", "customer_id": "C002", "stage": "谈判", "amount": 5000,
         "created_at": days_ago(20), "stage_at": days_ago(4), "owner": "李"},  # no probability
        {"opportunity_id": "D3", "customer_id": "C001", "stage": "线索", "amount": 2000,
         "probability": 10, "created_at": days_ago(2), "owner": "王"},
        {"opportunity_id": "D4", "customer_id": "C003", "stage": "赢单", "amount": 8000,
         "created_at": days_ago(50), "stage_at": days_ago(5), "owner": "王"},
        {"opportunity_id": "D5", "customer_id": "C002", "stage": "输单", "amount": 3000,
         "created_at": days_ago(40), "stage_at": days_ago(6), "owner": "李"},
        {"opportunity_id": "D6", "customer_id": "C002", "stage": "赢单", "amount": 1000,
         "created_at": "2020-01-01", "stage_at": "2020-02-01", "owner": "李"}]))  # long ago
    period = f"{(now - timedelta(days=60)):%Y-%m-%d}..{now:%Y-%m-%d}"
    found = pipeline.pipeline(ws, period, "owner")
    stages = {s["stage"]: s for s in found.stages}
    assert [s["stage"] for s in found.stages] == ["线索", "商机", "方案", "谈判"]
    assert stages["谈判"]["open"] == 2 and stages["谈判"]["amount"] == 15000
    assert stages["谈判"]["weighted_amount"] == 6000  # D2 has no probability: counts 0
    assert stages["谈判"]["median_days_in_stage"] == pytest.approx(7.0, abs=0.1)
    assert stages["线索"]["open"] == 1 and stages["商机"]["open"] == 0
    assert found.closed["won"] == 1 and found.closed["won_amount"] == 8000  # not D6
    assert found.closed["lost"] == 1 and found.closed["win_rate"] == 0.5
    assert found.closed["median_days_to_win"] == pytest.approx(45.0, abs=0.1)
    assert any("1 open opportunities have no win probability" in n for n in found.notes)
    groups = {g["group"]: g for g in found.groups}
    assert groups["王"]["closed"]["won"] == 1 and groups["李"]["closed"]["lost"] == 1
    assert pipeline.opportunities(ws, period, "Negotiation")[0] == 2
    assert [r["opportunity_id"] for r in pipeline.opportunities(
        ws, period, "谈判", by="owner", group="李")[1]] == ["D2"]
    with pytest.raises(TierwiseError, match="won or lost"):
        pipeline.opportunities(ws, period, "赢单")
    with pytest.raises(TierwiseError, match="closing"):
        pipeline.opportunities(ws, period, "closing")
    client = served.client("admin")
    page = client.get("/pipeline", params={"period": period, "by": "owner", "lang": "en"})
    assert page.status_code == 200 and "Negotiation" in page.text
    link = re.search(r'<tr data-stage="谈判"><th scope="row">[^<]*</th><td class="num">'
                     r'<a href="([^"]+)">2</a>', page.text)
    assert link is not None
    listed = client.get(link.group(1).replace("&amp;", "&"))
    assert re.findall(r'<tr data-opportunity="([^"]+)"', listed.text) == ["D1", "D2"]
    api = client.get("/v1/values/pipeline", params={"period": period}).json()
    assert api["closed"]["won"] == 1 and api["stages"][3]["open"] == 2
    won = client.get("/v1/values/pipeline/opportunities",
                     params={"period": period, "stage": "won"}).json()
    assert [o["opportunity_id"] for o in won["opportunities"]] == ["D4"]
    assert client.get("/v1/values/pipeline", params={"period": period, "by": "city"}
                      ).status_code == 422
    done = subprocess.run([sys.executable, "-m", "tierwise.cli.main", "pipeline", "--period",
                           period, "--json", "-w", str(ws.root)],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["closed"] == api["closed"]
    ws.close()


def test_posted_opportunities_move_segments_in_the_next_micro_batch(tmp_path: Path):
    """A stage posted through intake reaches the rules on opportunities and on their moves
    in the worker's next round, with the facts kept in memory and the edge timers."""
    from tierwise.realtime.worker import Worker
    from tierwise.segments import catalog as defs
    from tierwise.segments import membership

    served = build(tmp_path)
    ws = served.ws
    for key, rule in (("negotiating", "COUNT(opportunities WHERE stage = 'Negotiation') >= 1"),
                      ("won_lately", "COUNT(opportunity_stages WHERE stage = 'won', LAST 30d)"
                                     " >= 1")):
        defs.save(ws, defs.SegmentDefinition(key=key, rule=rule))
    worker = Worker(ws)
    worker.catch_up()
    worker.run_batch()
    now = datetime.now(UTC).isoformat()
    client = served.client("admin")
    base = {"opportunity_id": "D1", "customer_id": "C003", "created_at": now, "amount": 100}
    assert client.post("/v1/opportunities", json={**base, "stage": "谈判"}).status_code == 202
    worker.run_batch()
    assert membership.members_at(ws, "negotiating") == ["C003"]
    assert membership.members_at(ws, "won_lately") == []
    assert client.post("/v1/opportunities", json={**base, "stage": "赢单"}).status_code == 202
    worker.run_batch()
    assert membership.members_at(ws, "negotiating") == []
    assert membership.members_at(ws, "won_lately") == ["C003"]
    assert _history(ws) == [("D1", None, "谈判"), ("D1", "谈判", "赢单")]
    ws.close()
