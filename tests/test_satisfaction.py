"""NPS and CSAT: one function, the same figures in the Python API, the CLI, the REST API and
the dashboard, and the same customers as the segment language's satisfaction fields."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.conftest import write

import tierwise
from tierwise.insights.satisfaction import satisfaction
from tierwise.segments.evaluate import evaluate_rule
from tierwise.server.app import create_app
from tierwise.store import accounts

AS_OF = datetime(2026, 6, 30, 12, tzinfo=UTC)
PASSWORD = "satisfaction-pw-1"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> tierwise.Workspace:
    root = tmp_path_factory.mktemp("nps")
    made = tierwise.init(root / "ws")
    made.import_file("customers", write(root / "c.csv", (
        "customer_id,name,city\nC1,甲,上海\nC2,乙,上海\nC3,丙,北京\nC4,丁,北京\nC5,戊,北京\n")))
    made.import_file("feedback", write(root / "f.csv", (
        "customer_id,at,nps,csat\n"
        "C1,2026-01-05,3,\n"          # C1's latest score is 10: a promoter
        "C1,2026-05-01,10,5\n"
        "C2,2026-03-01,9,4\n"
        "C2,2026-04-01,,2\n"          # C2's mean rating 3
        "C3,2026-02-01,7,\n"
        "C4,2026-02-01,2,1\n"
        "C5,2026-07-15,0,1\n")))      # after as_of: not counted
    with made.control.write() as conn:
        accounts.add_user(conn, "admin", PASSWORD, "admin")
    return made


def test_the_figures_on_hand_made_feedback(ws: tierwise.Workspace) -> None:
    found = satisfaction(ws, AS_OF)
    assert (found["respondents"], found["promoters"], found["passives"],
            found["detractors"]) == (4, 2, 1, 1)
    assert found["nps"] == 25.0  # 100 × (2 − 1) / 4
    assert found["rated"] == 3 and found["csat"] == pytest.approx((5 + 3 + 1) / 3, abs=0.01)
    assert found["satisfied_share"] == pytest.approx(1 / 3, abs=1e-4)
    by_city = {g["value"]: g for g in satisfaction(ws, AS_OF, "city")["groups"]}
    assert by_city["上海"]["nps"] == 100.0 and by_city["北京"]["nps"] == -50.0
    # the same customers as the rule language's fields
    for cls, n in (("promoter", 2), ("passive", 1), ("detractor", 1)):
        assert evaluate_rule(ws, f"nps_class = '{cls}'", AS_OF).num_rows == n
    with pytest.raises(tierwise.TierwiseError, match="cannot break satisfaction down"):
        satisfaction(ws, AS_OF, "colour")


def test_every_surface_shows_the_same_numbers(ws: tierwise.Workspace) -> None:
    ws.compute(AS_OF)  # the dashboard's figures are of the latest snapshot
    expected = satisfaction(ws, AS_OF, "city")
    client = TestClient(create_app(ws))
    ok = client.post("/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    client.headers["X-CSRF-Token"] = ok.json()["csrf_token"]
    api = client.get("/v1/insights/satisfaction", params={"by": "city"}).json()
    assert (api["nps"], api["csat"], api["respondents"]) == (
        expected["nps"], expected["csat"], expected["respondents"])
    assert {g["value"]: g["nps"] for g in api["groups"]} == {
        g["value"]: g["nps"] for g in expected["groups"]}
    assert client.get("/v1/insights/satisfaction", params={"by": "colour"}).status_code == 422
    page = client.get("/?lang=en").text
    tiles = dict(re.findall(r'<span class="kpi-label">([^<]*)</span>'
                            r'<span class="kpi-value">([^<]*)</span>', page))
    assert tiles["NPS (4)"] == "+25.0" and tiles["CSAT (3)"].startswith("3.00 · 33.3%")
    assert 'id="opt-nps"' in page
    done = subprocess.run([sys.executable, "-m", "tierwise.cli.main", "satisfaction", "--by",
                           "city", "--json", "-w", str(ws.root)], capture_output=True,
                          text=True, check=True)
    cli = json.loads(done.stdout)
    assert (cli["nps"], cli["csat"]) == (expected["nps"], expected["csat"])


def test_no_feedback_is_said_not_zero(tmp_path: Path) -> None:
    empty = tierwise.init(tmp_path / "ws")
    found = satisfaction(empty, AS_OF, "city")
    assert found["respondents"] == 0 and found["nps"] is None and found["csat"] is None
    assert found["groups"] == []
    with pytest.raises(tierwise.TierwiseError, match="run `tierwise compute` first"):
        satisfaction(empty, AS_OF, "tier")  # tiers need a snapshot


def test_months_segments_and_customers(ws: tierwise.Workspace) -> None:
    """NPS and CSAT of each month's answers (the trend), of a segment's members, and of one
    customer, on hand-made feedback, the same on the API, the CLI and the pages."""
    from tierwise.insights.satisfaction import of_customer, trend
    from tierwise.segments import catalog as defs
    from tierwise.segments.membership import evaluate_all

    months = {m["month"]: m for m in trend(ws, AS_OF, 7)}
    assert list(months) == ["2025-12", *[f"2026-0{i}" for i in range(1, 7)]]
    assert months["2026-06"]["partial"] and not months["2026-05"]["partial"]
    # February: C3 7 (passive), C4 2 (detractor) → −50; C4 rated 1
    assert (months["2026-02"]["respondents"], months["2026-02"]["nps"]) == (2, -50.0)
    assert (months["2026-02"]["rated"], months["2026-02"]["csat"]) == (1, 1.0)
    # January: C1 3 → −100; April: C2 rated 2 but gave no score
    assert months["2026-01"]["nps"] == -100.0
    assert months["2026-04"]["respondents"] == 0 and months["2026-04"]["csat"] == 2.0
    assert months["2026-06"]["respondents"] == 0 and months["2026-06"]["nps"] is None
    # a segment: the Shanghai customers C1 (10) and C2 (9)
    defs.save(ws, defs.SegmentDefinition(key="shanghai", rule="city = '上海'",
                                         names={"zh-CN": "上海客户", "en": "Shanghai"}))
    evaluate_all(ws, AS_OF, ["shanghai"])
    mine = satisfaction(ws, AS_OF, segment="shanghai")
    assert (mine["respondents"], mine["nps"], mine["rated"]) == (2, 100.0, 2)
    assert mine["csat"] == pytest.approx((5 + 3) / 2)
    with pytest.raises(tierwise.TierwiseError, match="no segment 'nope'"):
        satisfaction(ws, AS_OF, segment="nope")
    # one customer: C2's latest score 9 (a promoter), mean rating (4 + 2) / 2
    assert of_customer(ws, "C2", AS_OF) == {"nps": 9, "nps_class": "promoter",
                                            "nps_answers": 1, "csat": 3.0, "csat_answers": 2}
    client = TestClient(create_app(ws))
    ok = client.post("/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    client.headers["X-CSRF-Token"] = ok.json()["csrf_token"]
    api = client.get("/v1/insights/satisfaction/trend",
                     params={"months": 7, "until": AS_OF.isoformat()}).json()
    assert {m["month"]: m["nps"] for m in api["months"]} == {
        k: m["nps"] for k, m in months.items()}
    seg = client.get("/v1/insights/satisfaction", params={"segment": "shanghai"}).json()
    assert seg["nps"] == 100.0
    assert client.get("/v1/insights/satisfaction", params={"segment": "nope"}).status_code \
        in (400, 422)
    assert client.get("/v1/insights/satisfaction/trend",
                      params={"months": 0}).status_code == 422
    done = subprocess.run([sys.executable, "-m", "tierwise.cli.main", "satisfaction",
                           "--trend", "7", "--as-of", AS_OF.isoformat(), "--json", "-w",
                           str(ws.root)], capture_output=True, text=True, check=True)
    assert {m["month"]: m["nps"] for m in json.loads(done.stdout)} == {
        k: m["nps"] for k, m in months.items()}
    # the pages: the segment's tiles, the customer's, the tiers table
    page = client.get("/segments/shanghai?lang=en").text
    tiles = dict(re.findall(r'<span class="kpi-label">([^<]*)</span>'
                            r'<span class="kpi-value">([^<]*)</span>', page))
    now = satisfaction(ws, datetime.now(UTC), segment="shanghai")
    assert tiles[f"NPS ({now['respondents']})"] == f"{now['nps']:+.1f}"
    page = client.get("/customers/C2?lang=zh-CN").text
    tiles = dict(re.findall(r'<span class="kpi-label">([^<]*)</span>'
                            r'<span class="kpi-value">([^<]*)</span>', page))
    assert tiles["最近一次 NPS (1)"] == "9 · 推荐者" and tiles["CSAT 满意度 (2)"] == "3.00"
    for path, by in (("/tiers", "tier"), ("/lifecycle", "lifecycle")):
        page = client.get(f"{path}?lang=en").text
        expected = satisfaction(ws, AS_OF, by)
        shown = re.findall(r'<td class="num" data-kpi="nps">([^<]*)</td>', page)
        assert sorted(s for s in shown if s != "—") == sorted(
            f"{g['nps']:+.1f}" for g in expected["groups"] if g["nps"] is not None), path


def test_the_two_ways_to_the_figures_agree(ws: tierwise.Workspace) -> None:
    """Everyone's NPS and CSAT at an instant (the rule language's fields, compiled) and
    the answers given up to that instant (``in_windows``, behind segments, the review
    and the trend) are the same figures."""
    from tierwise.insights.satisfaction import EPOCH, EPSILON, in_windows

    whole = satisfaction(ws, AS_OF)
    [window] = in_windows(ws, [(EPOCH, AS_OF + EPSILON)])
    assert {k: whole[k] for k in window["figures"]} == window["figures"]
