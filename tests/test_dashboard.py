"""Dashboard pages, previews, the review and its reports, without a browser."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.api_helpers import wait_for_job

import tierwise
from tierwise.dashboard import charts
from tierwise.dashboard.data import VIEWS, reasons
from tierwise.definitions.segment_ast import conditions_of
from tierwise.definitions.segment_parser import parse
from tierwise.demo.generator import DemoSpec
from tierwise.demo.load import load_generated, showcase
from tierwise.errors import TierwiseError
from tierwise.server.app import create_app
from tierwise.services.periods import parse_period
from tierwise.services.review import review
from tierwise.store import accounts

PASSWORD = "dashboard-pass-1"
PAGES = ["/", "/rfm", "/tiers", "/lifecycle", "/clv", "/segments", "/segments/new", "/breakdown",
         "/customers", "/actions", "/review?period=2026Q3", "/imports"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tierwise.Workspace]:
    ws = tierwise.init(tmp_path_factory.mktemp("dash") / "ws")
    load_generated(ws, DemoSpec(customers=400, seed=5, locale="zh-CN"))
    showcase(ws)
    with ws.control.write() as conn:
        for role in ("admin", "viewer", "analyst"):
            accounts.add_user(conn, role, PASSWORD, role)
    yield ws
    ws.close()


def _client(ws: tierwise.Workspace, user: str | None = "admin") -> TestClient:
    client = TestClient(create_app(ws))
    if user:
        ok = client.post("/v1/auth/login", json={"username": user, "password": PASSWORD})
        assert ok.status_code == 200
        client.headers["X-CSRF-Token"] = ok.json()["csrf_token"]
    return client


def _links(html: str, chart: str) -> list[str | None]:
    """The links of a chart's elements on a page (its ``links-<chart>`` script)."""
    found = re.search(rf'<script type="application/json" id="links-{chart}">(.*?)</script>',
                      html, re.S)
    assert found, chart
    return json.loads(found.group(1))  # type: ignore[no-any-return]


def _shown_count(client: Any, link: str) -> int:
    """How many customers the list a chart element links to says it holds."""
    listed = client.get(link + "&lang=en").text
    found = re.search(r"· ([\d,]+) Customers", listed)
    assert found, listed[:400]
    return int(found.group(1).replace(",", ""))


def _chart_options(html: str) -> dict[str, Any]:
    found = re.findall(r'<script type="application/json" id="(opt-[^"]+)">(.*?)</script>',
                       html, re.S)
    return {name: json.loads(body) for name, body in found}


def test_every_page_answers_in_both_languages_with_chart_data(demo: tierwise.Workspace) -> None:
    client = _client(demo)
    for lang, overview in (("zh-CN", "总览"), ("en", "Overview")):
        for path in PAGES:
            sep = "&" if "?" in path else "?"
            page = client.get(f"{path}{sep}lang={lang}")
            assert page.status_code == 200, (path, page.text[:300])
            assert f'<html lang="{lang}">' in page.text
            assert overview in page.text  # the navigation is translated
            assert "content-security-policy" in page.headers
            for option in _chart_options(page.text).values():
                assert option.get("series"), path
    home = _chart_options(client.get("/").text)
    assert {"opt-trend", "opt-tier-mix", "opt-risk", "opt-stages"} <= set(home)
    tiers = _chart_options(client.get("/tiers").text)
    assert tiers["opt-migration"]["series"][0]["type"] == "sankey"


def test_pages_need_a_session_and_the_permission(demo: tierwise.Workspace) -> None:
    anonymous = _client(demo, None)
    to_login = anonymous.get("/rfm?x=1", follow_redirects=False)
    assert to_login.status_code == 303
    assert to_login.headers["location"] == "/login?next=/rfm%3Fx%3D1"
    viewer = _client(demo, "viewer")
    assert viewer.get("/rfm").status_code == 200
    assert viewer.get("/segments/new").status_code == 403  # needs segments:write
    assert viewer.get("/imports").status_code == 200
    assert 'id="import-form"' not in viewer.get("/imports").text  # may not import


def test_overview_figures_match_the_snapshot(demo: tierwise.Workspace) -> None:
    view = VIEWS.get(demo)
    t = view.table
    kpis = view.kpis()
    # accounts and private customers: the people at an account count there, not again
    alone = demo.sql("SELECT count(*) FROM customers WHERE account_id IS NULL").column(0)
    assert kpis["customers"] == t.num_rows == alone[0].as_py() < demo.count("customers")
    assert kpis["revenue"] == pytest.approx(sum(v or 0 for v in t.column("revenue_total")
                                                .to_pylist()))
    tiers = {r["value"]: r["customers"] for r in view.breakdown("tier")}
    assert sum(tiers.values()) == t.num_rows
    rows = t.select(["p_alive", "revenue_total", "first_order_at", "as_of"]).to_pylist()
    expected = sum((1 - r["p_alive"]) * r["revenue_total"] / max(
        (r["as_of"] - r["first_order_at"]).total_seconds() / 86400 / 365.25, 1.0)
        for r in rows if r["p_alive"] is not None and r["first_order_at"] is not None)
    assert kpis["value_at_risk"] == pytest.approx(expected, rel=1e-6)
    pareto = view.pareto()
    assert pareto[0] == (0.0, 0.0) and pareto[-1][1] == pytest.approx(1.0)
    assert all(b[1] >= a[1] for a, b in zip(pareto, pareto[1:], strict=False))


def test_monthly_trend_counts_local_calendar_months(demo: tierwise.Workspace) -> None:
    """Months are those of the workspace's time zone (an order at 20:00 UTC on the last day
    of a month belongs to the next one in Shanghai), the last twelve up to as_of."""
    view = VIEWS.get(demo)
    zone = demo.config.zone
    as_of = view.as_of
    expected: dict[str, list[float]] = {}
    paid = demo.sql("SELECT ordered_at, amount, customer_id FROM orders "
                    "WHERE status = 'paid'").to_pylist()
    local_now = as_of.astimezone(zone)
    first = local_now.year * 12 + local_now.month - 1 - 11  # months since year 0
    keep = {f"{(first + k) // 12:04d}-{(first + k) % 12 + 1:02d}" for k in range(12)}
    buyers: dict[str, set[str]] = {}
    for o in paid:
        if o["ordered_at"] > as_of:
            continue
        month = f"{o['ordered_at'].astimezone(zone):%Y-%m}"
        if month in keep:
            expected.setdefault(month, [0, 0.0])
            expected[month][0] += 1
            expected[month][1] += float(o["amount"])
            buyers.setdefault(month, set()).add(o["customer_id"])
    months = view.monthly()
    assert [m["month"] for m in months] == sorted(expected)
    assert len(months) == 12
    for m in months:
        assert m["orders"] == expected[m["month"]][0]
        assert m["revenue"] == pytest.approx(expected[m["month"]][1])
        assert m["buyers"] == len(buyers[m["month"]])
    # the demo has orders near month ends: some fall in another month in UTC than locally
    moved = [o for o in paid if f"{o['ordered_at'].astimezone(zone):%Y-%m}"
             != f"{o['ordered_at']:%Y-%m}"]
    assert moved


def test_tier_plan_counts_what_a_rule_would_do(demo: tierwise.Workspace) -> None:
    client = _client(demo)
    current = client.get("/v1/settings").json()["tiers"]["spec"]
    same = client.post("/v1/tiers/plan", json=current).json()
    assert same["moved"] == 0
    assert all(r["before"] == r["after"] for r in same["tiers"])
    wider = {**current, "method": "percentile", "cuts": [0.1, 0.2, 0.3]}
    plan = client.post("/v1/tiers/plan", json=wider).json()
    after = {r["tier"]: r["after"] for r in plan["tiers"]}
    total = VIEWS.get(demo).table.num_rows
    assert after["A"] == round(0.1 * total) and sum(after.values()) == total
    bad = client.post("/v1/tiers/plan", json={**current, "cuts": [0.5]})
    assert bad.status_code == 422 and "分界点" in bad.json()["detail"]  # zh-CN workspace
    assert client.get("/v1/settings").json()["tiers"]["version"] == 0  # nothing saved


def test_upload_inspection_suggests_a_mapping(demo: tierwise.Workspace) -> None:
    client = _client(demo)
    data = "客户编号,姓名,notes\nX1,张三,hello\nX2,李四,\n".encode()
    found = client.post("/dashboard/imports/inspect", data={"table": "customers"},
                        files={"file": ("people.csv", data, "text/csv")}).json()
    assert found["columns"] == ["客户编号", "姓名", "notes"]
    assert found["suggested"] == {"客户编号": "customer_id", "姓名": "name"}
    assert found["sample"][0] == ["X1", "张三", "hello"] and len(found["sample"]) == 2
    wrong = client.post("/dashboard/imports/inspect", data={"table": "nope"},
                        files={"file": ("people.csv", data, "text/csv")})
    assert wrong.status_code == 422 and "未知的表 'nope'" in wrong.json()["detail"]


def test_an_inspected_upload_is_sent_once(demo: tierwise.Workspace) -> None:
    """The inspection holds the file; a second inspection and the import name it by its
    id; only its sender can, and an import takes it (once)."""

    from tierwise.web import uploads

    client = _client(demo)
    data = "客户编号,姓名\nH1,张三\nH2,李四\n".encode()
    found = client.post("/dashboard/imports/inspect", data={"table": "customers"},
                        files={"file": ("新客户.csv", data, "text/csv")}).json()
    upload_id = found["upload_id"]
    again = client.post("/dashboard/imports/inspect",
                        data={"table": "orders", "upload_id": upload_id}).json()
    assert again["columns"] == ["客户编号", "姓名"] and again["file"] == "新客户.csv"
    assert again["upload_id"] == upload_id and "order_id" in again["fields"]
    both = client.post("/dashboard/imports/inspect",
                       data={"table": "customers", "upload_id": upload_id},
                       files={"file": ("x.csv", data, "text/csv")})
    assert both.status_code == 422
    # another principal is told there is no such upload
    other = _client(demo, "analyst").post("/v1/imports", data={
        "table": "customers", "upload_id": upload_id, "mapping": "columns: {}"})
    assert other.status_code == 404 and upload_id in other.json()["detail"]
    started = client.post("/v1/imports", data={
        "table": "customers", "upload_id": upload_id, "dry_run": "true",
        "mapping": "columns:\n  客户编号: customer_id\n  姓名: name"})
    assert started.status_code == 202, started.text
    job = wait_for_job(client, started.json()["job_id"])
    assert job["status"] == "done", job
    assert job["params"]["file"] == "新客户.csv" and job["result"]["inserted"] == 2
    assert not (uploads.root() / upload_id).exists()
    twice = client.post("/v1/imports", data={"table": "customers", "upload_id": upload_id})
    assert twice.status_code == 404
    neither = client.post("/v1/imports", data={"table": "customers"})
    assert neither.status_code == 422
    # an upload nobody imports goes after an hour
    kept = client.post("/dashboard/imports/inspect", data={"table": "customers"},
                       files={"file": ("p.csv", data, "text/csv")}).json()["upload_id"]
    assert uploads.expire(time.time() + uploads.KEEP.total_seconds() + 1) >= 1
    assert not (uploads.root() / kept).exists()
    gone = client.post("/dashboard/imports/inspect",
                       data={"table": "customers", "upload_id": kept})
    assert gone.status_code == 404 and "send the file again" in gone.json()["detail"]


def test_rule_rows_for_the_visual_builder() -> None:
    flat = conditions_of(parse("tier IN ('A', 'B') AND COUNT(orders, LAST 90d) >= 2 "
                               "AND NOT IN_SEGMENT('vip') AND email IS NOT NULL"))
    assert flat == {"join": "AND", "rows": [
        {"left": "tier", "op": "IN", "value": "'A', 'B'"},
        {"left": "COUNT(orders, LAST 90d)", "op": ">=", "value": "2"},
        {"left": "NOT IN_SEGMENT", "op": "", "value": "'vip'"},
        {"left": "email", "op": "IS NOT NULL", "value": ""}]}
    assert conditions_of(parse("city = '上海' OR tier = 'A'"))["join"] == "OR"
    assert conditions_of(parse("tier = 'A'"))["rows"] == [
        {"left": "tier", "op": "=", "value": "'A'"}]
    assert conditions_of(parse("tier = 'A' OR (city = 'x' AND tier = 'B')")) is None


def test_check_route_returns_rows(demo: tierwise.Workspace) -> None:
    client = _client(demo)
    checked = client.post("/v1/segments/check", json={"rule": "tier = 'A' AND clv > 10"}).json()
    assert [r["left"] for r in checked["conditions"]["rows"]] == ["tier", "clv"]


def test_periods() -> None:
    q = parse_period("2026q3", "Asia/Shanghai")
    assert (q.name, q.start.month, q.end.month, q.end.year) == ("2026Q3", 7, 10, 2026)
    assert q.previous().name == "2026Q2"
    assert parse_period("2026Q1").previous().name == "2025Q4"
    assert parse_period("2026-01").previous().name == "2025-12"
    assert parse_period("2026H1").previous().name == "2025H2"
    assert parse_period("2026").previous().name == "2025"
    from tierwise.services.review import last_full_quarter

    assert last_full_quarter(datetime(2026, 6, 30, 15, 59, tzinfo=UTC)) == "2026Q2"
    assert last_full_quarter(datetime(2026, 11, 15, tzinfo=UTC)) == "2026Q3"
    assert last_full_quarter(datetime(2026, 1, 10, tzinfo=UTC)) == "2025Q4"
    for bad in ("2026Q5", "26Q1", "2026-13", "Q3", "2026-07-10..2026-07-01",
                "2026-02-30..2026-03-01", "2026-01-01..2036-12-31", "9999", "9999H2",
                "9999-12", "0001Q1", "1900", "9999-12-31..9999-12-31",
                "0001-01-01..0001-01-02"):
        with pytest.raises(TierwiseError, match="period"):
            parse_period(bad)
    # any stretch of days, both ends included; the one before is as many days before it
    days = parse_period("2026-07-01..2026-08-15", "Asia/Shanghai")
    assert (days.start.isoformat(), days.end.isoformat(), days.days) == (
        "2026-07-01T00:00:00+08:00", "2026-08-16T00:00:00+08:00", 46)
    before = days.previous()
    assert (before.name, before.end) == ("2026-05-16..2026-06-30", days.start)
    assert parse_period("2026-03-01..2026-03-01").previous().name == "2026-02-28..2026-02-28"


def test_review_kpis_on_hand_made_orders(tmp_path: Path) -> None:
    ws = tierwise.init(tmp_path / "ws")
    ws.import_source("customers", _records([{"customer_id": c} for c in "ABCDE"]))

    def order(oid: str, cid: str, day: str, amount: float) -> dict[str, Any]:
        return {"order_id": oid, "customer_id": cid, "ordered_at": f"{day} 12:00:00",
                "amount": amount, "status": "paid"}

    ws.import_source("orders", _records([
        order("1", "A", "2026-05-01", 100), order("2", "A", "2026-07-10", 50),
        order("3", "A", "2026-08-10", 150),  # A: buys twice in Q3
        order("4", "B", "2026-05-02", 80),  # B: Q2 only → churned in Q3
        order("5", "C", "2025-12-01", 40), order("6", "C", "2026-09-01", 60),  # C: lapsed, back
        order("7", "D", "2026-09-02", 200)]))  # D: first order in Q3; E never buys
    ws.compute(datetime(2026, 9, 30, tzinfo=UTC))
    found = review(ws, "2026Q3", None)
    assert found.grouping == "tier"
    now = {k: 0.0 for k in ("buyers", "orders", "revenue")}
    for g in found.groups:
        for k in now:
            now[k] += g["now"][k]
    assert now == {"buyers": 3, "orders": 4, "revenue": 460.0}
    seg = review(ws, "2026Q3", None)
    total = {"customers": sum(g["customers"] for g in seg.groups)}
    assert total == {"customers": 5}
    # one group holding everyone: build it from a segment of all customers
    from tierwise.segments import catalog as defs
    from tierwise.segments.membership import evaluate_all

    defs.save(ws, defs.SegmentDefinition(key="all", rule="customer_id IS NOT NULL"))
    evaluate_all(ws)
    whole = review(ws, "2026Q3", "all").groups[0]
    assert whole["customers"] == 5
    assert whole["now"]["conversion_rate"] == pytest.approx(3 / 5)  # A, C, D bought
    assert whole["now"]["repurchase_rate"] == pytest.approx(1 / 3)  # A twice
    assert whole["now"]["aov"] == pytest.approx(460 / 4)
    assert whole["now"]["churn_rate"] == pytest.approx(1 / 2)  # of A, B (Q2 buyers): B
    assert whole["now"]["reactivation_rate"] == pytest.approx(1 / 1)  # C lapsed, came back
    assert whole["before"]["revenue"] == pytest.approx(180.0)
    movers = review(ws, "2026Q3", "all")
    assert movers.movers_up[0]["customer_id"] == "D"
    assert movers.movers_down[0]["customer_id"] == "B"


def _records(rows: list[dict[str, Any]]) -> Any:
    from tierwise.ingest.readers import RecordsSource

    return RecordsSource.from_dicts("test", rows)


def test_reports_as_html_and_pdf(demo: tierwise.Workspace, tmp_path: Path) -> None:
    client = _client(demo)
    page = client.get("/review/report.html?period=2026Q3&lang=en")
    assert page.status_code == 200 and "attachment" in page.headers["content-disposition"]
    assert "Review report · 2026Q3" in page.text and "<script" not in page.text
    assert "<svg" in page.text
    pdf = client.get("/review/report.pdf?period=2026Q3")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert client.get("/review/report.pdf?period=20X6").status_code == 422


def _pdf_text(data: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """A PDF's text, each run of it with its font's name, and its drawing operators."""
    import io

    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    shown: list[tuple[str, str]] = []

    def seen(text: str, _cm: Any, _tm: Any, font: Any, _size: Any) -> None:
        if text.strip() and font is not None:
            shown.append((text, str(font.get("/BaseFont"))))

    whole = "".join(page.extract_text(visitor_text=seen) for page in reader.pages)
    drawn = b"".join(page.get_contents().get_data() for page in reader.pages)
    return whole.replace("\n", ""), shown, drawn


def _rgb(colour: str) -> bytes:
    """A fill colour as ReportLab writes it: .678431 .709804 .741176 rg."""
    return (" ".join(f"{int(colour[i:i + 2], 16) / 255:.6f}".lstrip("0") for i in (1, 3, 5))
            + " rg").encode()


def test_the_pdf_report_says_what_the_html_one_says_in_an_embedded_font(
        demo: tierwise.Workspace) -> None:
    """The PDF review has every section of the HTML one — KPIs with NPS and CSAT, the
    revenue and NPS charts, satisfaction, the tier migration as a matrix and a Sankey, the
    biggest movers — with the same figures; every character is drawn in the embedded CJK
    font (no replacement glyph, no font the reader must supply)."""
    from tierwise.web import report

    font = report.embedded_font()
    if font is None:
        assert os.environ.get("CI") != "true", "CI installs fonts-wqy-zenhei"
        pytest.skip("no embeddable CJK font here: apt-get install fonts-wqy-zenhei")
    client = _client(demo)
    found = review(demo, "2026Q3")
    for lang in ("zh-CN", "en"):
        said = report.content(demo, found, lang)
        whole, shown, drawn = _pdf_text(client.get(
            f"/review/report.pdf?period=2026Q3&lang={lang}").content)
        page = client.get(f"/review/report.html?period=2026Q3&lang={lang}").text
        headings = [said.title, said.words["kpis"], said.words["satisfaction"],
                    said.words["migration"], *[title for title, _, _ in said.movers]]
        if said.revenue:
            headings.append(said.revenue.title)
        for heading in headings:
            assert heading in whole, (lang, heading)
            assert str(escape_html(heading)) in page, (lang, heading)
        cells = [v for _, row in said.kpi_rows for v in row if v] + [
            v for row in said.satisfaction_rows for v in row]
        for cell in cells:  # the same figures in both files
            assert cell.replace(" ", "") in whole.replace(" ", ""), (lang, cell)
            assert str(escape_html(cell)) in page, (lang, cell)
        if said.flows:  # the matrix, and the Sankey's states with their counts
            assert "<path d=" in page
            for before, after, _ in said.flows:
                assert before in whole and after in whole
        else:
            assert said.migration_note and said.migration_note in page
        assert "\ufffd" not in whole
        fonts = {f for _, f in shown}  # subsets of the embedded font, named /ABCDEF+Name-0
        assert all(re.fullmatch(rf"/[A-Z]{{6}}\+{_embedded_name()}(-\d+)?", f)
                   for f in fonts), (lang, fonts)
        assert said.words["font_note"] not in whole
        for colour in ("#adb5bd", "#0b5cad"):  # the bars of both periods
            assert _rgb(colour) in drawn, (lang, colour)


def _embedded_name() -> str:
    from reportlab.pdfbase import pdfmetrics

    from tierwise.web import report

    return str(pdfmetrics.getFont(report.EMBEDDED).face.name.decode())


def escape_html(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def test_without_an_embeddable_font_the_pdf_falls_back_and_says_so(
        demo: tierwise.Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no CJK font to embed, Chinese is set in the reader's STSong-Light and the rest
    (the middle dot, dashes, digits) in Helvetica, and the PDF says which font it relies on;
    a TIERWISE_PDF_FONT that is no font is an error, not a silent fallback."""
    from tierwise.web import report

    monkeypatch.setattr(report, "embedded_font", lambda: None)
    found = review(demo, "2026Q3")
    for lang in ("zh-CN", "en"):
        whole, shown, _ = _pdf_text(report.pdf(demo, found, lang))
        for char in ("·", "–"):
            assert {f for text, f in shown if char in text} == {"/Helvetica"}, (lang, char)
        assert any("STSong" in f for _, f in shown) == (lang == "zh-CN")
        assert report.content(demo, found, lang).words["font_note"].split("（")[0] \
            .split(" (")[0] in whole
    monkeypatch.undo()
    from reportlab.pdfbase import pdfmetrics

    registered = pdfmetrics._fonts.pop(report.EMBEDDED, None)  # noqa: SLF001
    try:
        monkeypatch.setenv("TIERWISE_PDF_FONT", str(Path(__file__)))
        with pytest.raises(TierwiseError, match="TIERWISE_PDF_FONT"):
            report.embedded_font()
    finally:
        if registered is not None:
            pdfmetrics._fonts[report.EMBEDDED] = registered  # noqa: SLF001


def test_a_review_under_way_is_partial_and_compared_with_as_many_days(
        demo: tierwise.Workspace) -> None:
    """The current quarter runs to now and is compared with the same stretch of the quarter
    before; the notes and the period's NPS and CSAT (answers given in the period, each
    customer's latest) match a direct computation."""
    from datetime import timedelta

    import pandas as pd

    from tierwise.services.periods import parse_period
    from tierwise.store.control import utcnow
    from tierwise.web import report

    now = utcnow()
    quarter = f"{now.year}Q{(now.month - 1) // 3 + 1}"
    found = review(demo, quarter)
    assert found.partial and abs((found.period.end - now).total_seconds()) < 60
    whole = parse_period(quarter, demo.config.timezone).previous()
    assert found.previous.start == whole.start
    assert abs((found.previous.end - found.previous.start)
               - (found.period.end - found.period.start)) < timedelta(seconds=1)
    for lang, word in (("zh-CN", "本期尚未结束"), ("en", "still under way")):
        assert any(word in n for n in report.content(demo, found, lang).notes)
    # NPS and CSAT of the period's answers, per tier of the closing snapshot
    from tierwise.models.compute import load_snapshot

    done = review(demo, "2026Q3")
    tiers = load_snapshot(demo).table.select(["customer_id", "tier"]).to_pandas()
    if done.closed_at is not None:
        from tierwise.models import compute

        ids = [s["snapshot_id"] for s in compute.list_snapshots(demo)
               if s["as_of"] == done.closed_at]
        tiers = load_snapshot(demo, ids[0]).table.select(["customer_id", "tier"]).to_pandas()
    answers = demo.sql('SELECT customer_id, "at", nps, csat FROM feedback').to_pandas()
    answers["at"] = pd.to_datetime(answers["at"], utc=True)
    start, end = done.period.start.astimezone(UTC), done.period.end.astimezone(UTC)
    inside = answers[(answers["at"] >= start) & (answers["at"] < end)].merge(tiers)
    checked = 0
    for g in done.groups:
        mine = inside[inside["tier"] == g["group"]]
        scores = mine.dropna(subset=["nps"]).sort_values("at").groupby("customer_id").nps.last()
        ratings = mine.dropna(subset=["csat"]).groupby("customer_id").csat.mean()
        assert g["now"]["respondents"] == len(scores)
        if len(scores):
            expected = 100 * ((scores >= 9).sum() - (scores <= 6).sum()) / len(scores)
            assert g["now"]["nps"] == round(expected, 1)
            checked += 1
        if len(ratings):
            assert g["now"]["csat"] == round(ratings.mean(), 2)
    assert checked, "the demo has NPS answers in 2026Q3"


def test_a_period_without_a_closing_snapshot_says_so(tmp_path: Path) -> None:
    """With no snapshot before the period ended, the tiers are of a later one and the
    review says so; with no snapshot at all, a segment's review says there is no
    migration instead of leaving the section out."""
    from tierwise.models.compute import compute
    from tierwise.segments import catalog as defs
    from tierwise.segments.membership import evaluate_all
    from tierwise.web import report

    ws = tierwise.init(tmp_path / "ws")
    try:
        load_generated(ws, DemoSpec(customers=60, seed=3))
        defs.save(ws, defs.SegmentDefinition(key="buyers", rule="COUNT(orders) >= 1"))
        evaluate_all(ws, datetime.now(UTC), ["buyers"])
        bare = review(ws, "2026Q1", "buyers")
        assert bare.closed_at is None and not bare.migration
        for lang in ("zh-CN", "en"):
            said = report.content(ws, bare, lang)
            assert said.migration_note == said.words["no_migration_snapshot"]
            assert said.migration_note in report.html(ws, bare, lang)
        compute(ws, datetime(2026, 9, 30, tzinfo=UTC))
        late = review(ws, "2026Q1")
        assert late.closing_late and late.closed_at is not None
        for lang, word in (("zh-CN", "本期结束前没有快照"), ("en", "No snapshot was taken")):
            said = report.content(ws, late, lang)
            assert any(word in n for n in said.notes)
            assert said.migration_note is not None  # one snapshot: no migration
            whole, _, _ = _pdf_text(report.pdf(ws, late, lang))
            assert word in whole.replace(" ", "") or word in whole
    finally:
        ws.close()


def test_report_command_writes_both_files(demo: tierwise.Workspace, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tierwise.cli.main import app

    html, pdf = tmp_path / "r.html", tmp_path / "r.pdf"
    result = CliRunner().invoke(app, ["report", "--period", "2026Q3", "--html", str(html),
                                      "--pdf", str(pdf), "-w", str(demo.root)])
    assert result.exit_code == 0, result.output
    assert "2026Q3" in html.read_text("utf-8") and pdf.read_bytes().startswith(b"%PDF")
    assert "2026Q3" in result.output


def test_chart_options_are_plain_json() -> None:
    option = charts.sankey("t", [("A", "A", 3), ("A", "B", 1)], "before", "after")
    names = [n["name"] for n in option["series"][0]["data"]]
    assert names == ["A · before", "A · after", "B · after"]
    json.dumps(option)  # nothing a browser could not parse
    assert charts.sparkline([1, 2, 3])["series"][0]["data"] == [1, 2, 3]


def test_at_risk_reasons_in_both_languages() -> None:
    row = {"recency_days": 120.0, "typical_gap_days": 30.0, "p_alive": 0.12, "orders_total": 1}
    assert reasons(row, "en") == ["no order for 120 days, 4.0× the usual gap of 30 days",
                                  "P(alive) only 12%", "bought only once"]
    assert reasons(row, "zh-CN")[0].startswith("已 120 天未购买")


def test_script_json_cannot_close_its_element() -> None:
    from tierwise.web.templating import _chart_json

    assert "</script>" not in str(_chart_json({"name": "</script><b>"}))


def test_segment_list_shows_size_trend(demo: tierwise.Workspace) -> None:
    client = _client(demo)
    page = client.get("/segments").text
    assert "to_be_awakened" in page
    assert re.search(r'id="spark-\d+"', page)  # two evaluations: a trend line
    key = "to_be_awakened"
    detail = client.get(f"/segments/{key}").text
    assert "format=csv" in detail and "format=xlsx" in detail
    # why members came and went, in the page's language, not as codes
    assert "数据变化" in detail and "data_change" not in detail


def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_text_colours_meet_wcag_aa() -> None:
    css = (Path(tierwise.__file__).parent / "dashboard" / "static" / "dashboard.css").read_text()
    colours = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6})", css))
    for name in ("ink", "muted", "accent", "bad", "good", "warn"):
        assert _contrast(colours[name], "#ffffff") >= 4.5, name
        assert _contrast(colours[name], colours["bg"]) >= 4.5, name  # table heads, header
    assert _contrast(colours["accent-ink"], colours["accent"]) >= 4.5  # buttons


def test_customer_timeline_has_tier_changes(demo: tierwise.Workspace) -> None:
    from tierwise.models import compute

    first, last = (compute.load_snapshot(demo, s["snapshot_id"])
                   for s in compute.list_snapshots(demo)[-2:])
    before = dict(zip(first.table.column("customer_id").to_pylist(),
                      first.table.column("tier").to_pylist(), strict=True))
    moved = next(c for c, t in zip(last.table.column("customer_id").to_pylist(),
                                   last.table.column("tier").to_pylist(), strict=True)
                 if before.get(c) not in (None, t))
    page = _client(demo).get(f"/customers/{moved}?lang=en").text
    assert "Tier change" in page
    timeline = page[page.index('<ol class="timeline">'):]
    assert f"{before[moved]} · " in timeline  # the old tier's label, then the new one


def test_import_result_page_names_the_rejected_rows(demo: tierwise.Workspace) -> None:

    client = _client(demo)
    bad = "客户编号,注册时间\nB1,2026-01-01\nB2,not a date\n".encode()
    started = client.post("/v1/imports", data={"table": "customers"},
                          files={"file": ("bad.csv", bad, "text/csv")}).json()
    job = wait_for_job(client, started["job_id"])
    assert job["status"] == "failed"
    page = client.get(f"/imports?job={started['job_id']}&lang=en").text
    assert "Import result" in page and "bad.csv" in page
    assert f'/v1/imports/{started["job_id"]}/rejects' in page
    rejected = client.get(f"/v1/imports/{started['job_id']}/rejects").text
    assert "not a date" in rejected


def test_actions_page_lists_the_showcase_automations(demo: tierwise.Workspace) -> None:
    from tierwise.actions import dispatch
    from tierwise.actions.channels import Channels

    dispatch.dispatch_due(demo, Channels(demo))  # what the server's dispatcher does
    page = _client(demo).get("/actions?lang=en").text
    assert "awaken_call" in page and "tier_a_care" in page and "awaken_sequence" in page
    assert "Owner:" in page and "/v1/tasks/" in page  # open tasks with a complete button
    deliveries = page[page.index('id="deliveries"'):page.index("Tasks", page.index(
        'id="deliveries"'))]
    # payloads as readable fields (the raw JSON on demand), never a Python dict
    assert "{&#39;" not in deliveries and "{'" not in deliveries
    assert "segment.entered" in deliveries and "<details><summary>JSON</summary>" in deliveries
    customer = re.search(r'/customers/([^"]+)"', page[page.index("Tasks"):]).group(1)
    assert "Tier A care" in _client(demo).get(f"/customers/{customer}?lang=en").text or \
        "Recall sequence" in _client(demo).get(f"/customers/{customer}?lang=en").text


def test_customer_list_filtered_by_snapshot_values(demo: tierwise.Workspace) -> None:
    view = VIEWS.get(demo)
    t = view.table
    ids = sorted(c for c, tier, stage in zip(t.column("customer_id").to_pylist(),
                                              t.column("tier").to_pylist(),
                                              t.column("lifecycle").to_pylist(), strict=True)
                 if tier == "D" and stage == "churned")
    assert len(ids) > 50  # two pages
    client = _client(demo)
    first = client.get("/customers?tier=D&lifecycle=churned&lang=en").text
    assert f"{len(ids):,} Customers" in first
    shown = re.findall(r'<th scope="row"><a href="/customers/([^"]+)"', first)
    assert shown == ids[:50]
    cursor = re.search(r'after=([^"&]+)" rel="next"', first).group(1)
    second = client.get(f"/customers?tier=D&lifecycle=churned&after={cursor}").text
    assert re.findall(r'<th scope="row"><a href="/customers/([^"]+)"', second) == ids[50:100]
    tiers = client.get("/tiers").text
    assert 'href="/customers?tier=A"' in tiers
    nothing = client.get("/customers?tier=Z&lang=en")  # no such tier: said, not empty
    assert nothing.status_code == 400 and "Valid values: 'A'" in nothing.json()["detail"]


def test_upload_inspection_reads_large_and_binary_files(demo: tierwise.Workspace,
                                                        tmp_path: Path) -> None:
    from openpyxl import Workbook

    client = _client(demo)
    big = "客户编号,姓名\n" + "".join(f"L{i:07d},顾客{i}\n" for i in range(120_000))
    assert len(big.encode()) > 2 << 20  # larger than the API's 1 MB body limit
    found = client.post("/dashboard/imports/inspect", data={"table": "customers"},
                        files={"file": ("big.csv", big.encode(), "text/csv")})
    assert found.status_code == 200 and found.json()["sample"][0] == ["L0000000", "顾客0"]
    book = Workbook()
    sheet = book.active
    sheet.append(["customer_id", "城市"])
    sheet.append(["X9", "上海"])
    book.save(tmp_path / "people.xlsx")
    xlsx = client.post("/dashboard/imports/inspect", data={"table": "customers"},
                       files={"file": ("people.xlsx", (tmp_path / "people.xlsx").read_bytes())})
    assert xlsx.json()["suggested"] == {"customer_id": "customer_id", "城市": "city"}
    assert xlsx.json()["sample"] == [["X9", "上海"]]


def test_customer_timeline_shows_tickets_and_feedback(demo: tierwise.Workspace) -> None:
    row = demo.sql("SELECT f.customer_id, f.nps FROM feedback f JOIN tickets t "
                   "ON t.customer_id = f.customer_id WHERE f.nps IS NOT NULL LIMIT 1"
                   ).to_pylist()[0]
    page = _client(demo).get(f"/customers/{row['customer_id']}?lang=en").text
    timeline = page[page.index('<ol class="timeline">'):]
    assert '<span class="tag">Feedback</span>' in timeline
    assert f"nps {row['nps']}" in timeline
    assert '<span class="tag">Tickets</span>' in timeline


def test_customers_by_their_own_fields_alone_and_with_values(demo: tierwise.Workspace) -> None:
    """City, industry, gender (by label), tag … narrow the list in the API and the page,
    alone or with tier/lifecycle, exactly as the data says."""
    import pyarrow.parquet as pq

    people = demo.customers()
    city = people["city"].value_counts().index[0]
    industry = people["industry"].dropna().value_counts().index[0]
    client = _client(demo)

    def api_ids(**params: str) -> list[str]:
        found, after = [], None
        while True:
            page = client.get("/v1/customers", params={**params, "limit": "500",
                                                       **({"after": after} if after else {})})
            assert page.status_code == 200, page.text
            found += [c["customer_id"] for c in page.json()["items"]]
            after = page.json()["next_after"]
            if after is None:
                return found

    assert api_ids(city=city) == sorted(people.loc[people["city"] == city, "customer_id"])
    both = people[(people["city"] == city) & (people["industry"] == industry)]
    assert api_ids(city=city, industry=industry) == sorted(both["customer_id"])
    women = sorted(people.loc[people["gender"] == "female", "customer_id"])
    assert women and api_ids(gender="女") == women == api_ids(gender="female")
    assert client.get("/v1/customers", params={"gender": "unicorn"}).status_code == 400
    tags = {c: json.loads(t) for c, t in zip(people["customer_id"], people["tags"],
                                             strict=True) if isinstance(t, str)}
    tag = next(t for listed in tags.values() for t in listed)
    assert api_ids(tag=tag) == sorted(c for c, listed in tags.items() if tag in listed)

    def page_ids(**params: str) -> list[str]:
        found, after = [], None
        while True:
            html = client.get("/customers", params={**params, **(
                {"after": after} if after else {})})
            assert html.status_code == 200, html.text
            found += re.findall(r'<th scope="row"><a href="/customers/([^"]+)"', html.text)
            nxt = re.search(r'after=([^"&]+)" rel="next"', html.text)
            if not nxt:
                return found
            after = nxt.group(1)

    assert page_ids(city=city) == sorted(people.loc[people["city"] == city, "customer_id"])
    snapshot = pq.read_table(sorted((demo.root / "snapshots").glob("*.parquet"))[-1],
                             columns=["customer_id", "tier"]).to_pandas()
    tier = snapshot["tier"].value_counts().index[0]
    in_tier = set(snapshot.loc[snapshot["tier"] == tier, "customer_id"])
    expected = sorted(c for c in people.loc[people["city"] == city, "customer_id"]
                      if c in in_tier)
    assert page_ids(city=city, tier=tier) == expected


def test_the_delivery_log_pages_by_keyset_and_filters(tmp_path: Path) -> None:
    """The Actions page lists the newest 50 deliveries, pages back with an "older" link
    that neither repeats nor skips a row, and filters by status, source, channel,
    customer, event and local days; a filter value it does not know is a 400."""
    from tierwise.actions.outbox import enqueue
    from tierwise.definitions.automations import Tag, Task

    ws = tierwise.init(tmp_path / "ws")
    with ws.control.write() as conn:
        accounts.add_user(conn, "admin", PASSWORD, "admin")
        for day in range(1, 6):  # 5 days × 2 sources × 13 customers = 130 deliveries
            at = datetime(2026, 7, day, 10, tzinfo=UTC)
            enqueue(conn, "trigger:welcome", "enter", Tag(type="tag", tag="new"),
                    [{"customer_id": f"C{i:03d}", "segment": "new"} for i in range(13)], at)
            enqueue(conn, "playbook:care", "playbook_step",
                    Task(type="task", title="call"),
                    [{"customer_id": f"C{i:03d}"} for i in range(13)], at)
    client = _client(ws)

    def ids(query: str) -> tuple[list[int], str | None]:
        page = client.get(f"/actions{query}")
        assert page.status_code == 200, page.text[:300]
        older = re.search(r'href="\?([^"]*)before=(\d+)#deliveries" rel="next"', page.text)
        return ([int(n) for n in re.findall(r"<tr><td>(\d+)</td>", page.text)],
                older.group(2) if older else None)

    seen: list[int] = []
    page, older = ids("")
    while True:
        assert len(page) <= 50 and page == sorted(page, reverse=True)
        seen += page
        if older is None:
            break
        page, older = ids(f"?before={older}")
    assert seen == list(range(130, 0, -1))  # every row once, newest first
    tasks, _ = ids("?action=task")
    assert len(tasks) == 50 and all(n % 26 > 13 or n % 26 == 0 for n in tasks)
    mine, _ = ids("?customer=C004&source=trigger:welcome")
    assert len(mine) == 5
    day, _ = ids("?since=2026-07-02&until=2026-07-03&event=enter")
    assert len(day) == 26  # two local days, the trigger's 13 a day
    older_tasks, _ = ids("?action=task&before=100")
    assert older_tasks and max(older_tasks) < 100
    for wrong in ("?status=lost", "?action=fax", "?event=left", "?since=yesterday",
                  "?before=x", "?channel=sms"):
        assert client.get(f"/actions{wrong}").status_code == 400, wrong
    ws.close()


def test_breakdown_by_any_dimension_links_to_its_customers(demo: tierwise.Workspace) -> None:
    """The Breakdown page, GET /v1/values/breakdown and `tierwise breakdown` give one
    answer: per group the overview's figures, groups adding up to the filtered total, and
    each group's link listing exactly its customers; unknown dimensions, filters and
    values are refused."""
    import subprocess
    import sys
    from urllib.parse import unquote

    from tierwise.models.compute import load_snapshot
    from tierwise.services.breakdowns import by_dimension

    client = _client(demo)
    snap = load_snapshot(demo)
    overview = by_dimension(demo, snap, "tier")
    assert overview["total"] == VIEWS.get(demo).kpis()  # the overview's own figures
    assert sum(g["customers"] for g in overview["groups"]) == snap.table.num_rows
    tier = overview["groups"][-1]["value"]
    found = by_dimension(demo, snap, "city", {"tier": tier})
    assert sum(g["customers"] for g in found["groups"]) == found["total"]["customers"]
    assert found["total"]["revenue"] == pytest.approx(sum(g["revenue"]
                                                          for g in found["groups"]))
    api = client.get("/v1/values/breakdown", params={"by": "city", "tier": tier}).json()
    assert [(g["value"], g["customers"]) for g in api["groups"]] == [
        (g["value"], g["customers"]) for g in found["groups"]]
    page = client.get("/breakdown", params={"by": "city", "tier": tier, "lang": "en"})
    assert page.status_code == 200, page.text[:300]
    rows = re.findall(r'<tr><th scope="row"><a href="([^"]+)">[^<]*</a></th>'
                      r'<td class="num">([\d,]+)</td>', page.text)
    assert rows and 'data-links="links-by-customers"' in page.text
    for href, shown in rows[:3]:  # the customers behind a row are exactly its count
        query = dict(p.split("=", 1) for p in href.split("?", 1)[1].replace("&amp;", "&")
                     .split("&"))
        listed, after = [], None
        while True:
            html = client.get("/customers", params={k: unquote(v) for k, v in query.items()}
                              | ({"after": after} if after else {})).text
            listed += re.findall(r'<th scope="row"><a href="/customers/([^"]+)"', html)
            nxt = re.search(r'after=([^"&]+)" rel="next"', html)
            if not nxt:
                break
            after = nxt.group(1)
        assert len(listed) == int(shown.replace(",", "")), href
    cli = subprocess.run([sys.executable, "-m", "tierwise.cli.main", "breakdown", "--by",
                          "city", "--where", f"tier={tier}", "--json", "-w", str(demo.root)],
                         capture_output=True, text=True, check=True)
    assert json.loads(cli.stdout)["total"]["customers"] == found["total"]["customers"]
    by_tag = by_dimension(demo, snap, "tag")
    assert sum(g["customers"] for g in by_tag["groups"]) >= snap.table.num_rows
    for wrong in ({"by": "colour"}, {"by": "city", "tier": "Z"}, {"by": "city", "x": "1"}):
        assert client.get("/breakdown", params=wrong).status_code == 400, wrong
    assert client.get("/v1/values/breakdown", params={"by": "colour"}).status_code == 422
    assert client.get("/v1/values/breakdown", params={"tier": "Z"}).status_code == 400


def test_a_segment_is_broken_down_and_its_groups_list_its_members(
        demo: tierwise.Workspace) -> None:
    """From a segment's page to its members by city, and from a city to exactly those
    members on the customer list; an unknown segment is refused, never an empty list."""
    from urllib.parse import unquote

    from tierwise.models.compute import load_snapshot
    from tierwise.segments import catalog as defs
    from tierwise.segments.membership import evaluate_all, members_at
    from tierwise.services.breakdowns import by_dimension

    defs.save(demo, defs.SegmentDefinition(key="buyers_2", rule="COUNT(orders) >= 2"))
    evaluate_all(demo, datetime.now(UTC), ["buyers_2"])
    members = set(members_at(demo, "buyers_2"))
    assert members
    found = by_dimension(demo, load_snapshot(demo), "city", segment="buyers_2")
    assert found["total"]["customers"] == len(members)
    client = _client(demo)
    assert "/breakdown?segment=buyers_2" in client.get("/segments/buyers_2").text
    page = client.get("/breakdown", params={"segment": "buyers_2", "by": "city"}).text
    href = re.search(r'<tr><th scope="row"><a href="([^"]+)">', page).group(1)
    query = {k: unquote(v) for k, v in (p.split("=", 1) for p in href.split("?", 1)[1]
                                        .replace("&amp;", "&").split("&"))}
    assert query["segment"] == "buyers_2"
    listed, after = [], None
    while True:
        html = client.get("/customers", params=query | ({"after": after} if after else {})).text
        listed += re.findall(r'<th scope="row"><a href="/customers/([^"]+)"', html)
        nxt = re.search(r'after=([^"&]+)" rel="next"', html)
        if not nxt:
            break
        after = nxt.group(1)
    city = query["city"]
    expected = next(g["customers"] for g in found["groups"] if g["value"] == city)
    assert len(listed) == expected and set(listed) <= members
    for wrong in ("/breakdown?segment=nope", "/customers?segment=nope"):
        answer = client.get(wrong)
        assert answer.status_code == 400 and "buyers_2" in answer.json()["detail"], wrong
    assert client.get("/v1/values/breakdown", params={"segment": "nope"}).status_code == 400


def test_chart_elements_open_the_customers_behind_them(demo: tierwise.Workspace) -> None:
    """On the overview, the tiers and the lifecycle page, each slice or bar of a chart over
    tiers, churn risk or stages links to the customer list of exactly its customers."""
    signed_in = _client(demo)

    class Paced:  # under the per-user rate limit (20 requests a second), however fast
        @staticmethod
        def get(*args: Any, **kwargs: Any) -> Any:
            time.sleep(0.07)
            return signed_in.get(*args, **kwargs)

    client = Paced()
    checked = 0
    for path, chart in (("/", "tier-mix"), ("/", "risk"), ("/", "stages"),
                        ("/tiers", "tier-dist"), ("/lifecycle", "funnel"),
                        ("/rfm", "rf-count")):
        html = client.get(path, params={"lang": "en"}).text
        links = _links(html, chart)
        option = _chart_options(html)[f"opt-{chart}"]
        data = option["series"][0]["data"]
        assert len(links) == len(data), (path, chart)
        for link, point in zip(links, data, strict=True):
            if link is None:
                continue
            value = point["value"] if isinstance(point, dict) else point
            if chart == "rf-count":  # [r - 1, f - 1, customers]: the cell's R and F scores
                assert link == f"/customers?rfm_r={value[0] + 1}&rfm_f={value[1] + 1}"
                value = value[2]
            count = _shown_count(client, link)
            if chart == "tier-dist":  # that chart shows shares, not counts: compare shares
                total = VIEWS.get(demo).table.num_rows
                assert round(100 * count / total, 2) == value
            else:
                assert count == value, (chart, link)
            checked += 1
    assert checked >= 20
    for wrong in ("rfm_r=0", "rfm_r=x", "rfm_f=11"):
        assert client.get(f"/customers?{wrong}").status_code == 400, wrong
    # every flow of the migration Sankeys: the customers who moved that way
    flows = 0
    for path, chart in (("/tiers", "migration"), ("/lifecycle", "flows")):
        html = client.get(path, params={"lang": "en"}).text
        links = _links(html, chart)
        edges = _chart_options(html)[f"opt-{chart}"]["series"][0]["links"]
        assert len(links) == len(edges)
        for link, edge in list(zip(links, edges, strict=True))[:8]:
            if link is None:  # a customer who came or left: no value on one side
                continue
            assert "since=" in link and "was_" in link
            assert _shown_count(client, link) == edge["value"], \
                (chart, link)
            flows += 1
    assert flows >= 4
    for wrong in ("was_tier=A", "since=1", "since=999&was_tier=A", "since=1&was_tier=Z"):
        assert client.get(f"/customers?{wrong}").status_code == 400, wrong
    # the monthly trend's bars: the month's buyers; the Pareto curve's points: the top N
    html = client.get("/", params={"lang": "en"}).text
    links = _links(html, "trend")
    months = VIEWS.get(demo).monthly()
    assert len(links) == len(months)
    for link, month in list(zip(links, months, strict=True))[-3:]:
        assert _shown_count(client, link) == month["buyers"], link
    html = client.get("/tiers", params={"lang": "en"}).text
    links = _links(html, "pareto")
    assert links[0] is None and links[-1] == f"/customers?top={VIEWS.get(demo).table.num_rows}"
    tenth = links[10]
    n = int(tenth.split("=")[1])
    assert _shown_count(client, tenth) == n
    best = max(VIEWS.get(demo).table.to_pylist(), key=lambda r: (r["revenue_total"] or 0))
    assert f'/customers/{best["customer_id"]}"' in client.get("/customers?top=1").text
    for wrong in ("bought=2026-13", "bought=x", "top=0", "top=99999999"):
        assert client.get(f"/customers?{wrong}").status_code == 400, wrong
    # the CLV histogram's bars: the customers of each band; the RFM treemap: each segment
    html = client.get("/clv", params={"lang": "en"}).text
    links = _links(html, "clv-hist")
    bands = VIEWS.get(demo).clv_histogram()
    assert len(links) == len(bands)
    for link, band in [(links[i], bands[i]) for i in (0, len(bands) // 2, len(bands) - 1)]:
        assert _shown_count(client, link) == band["customers"], link
    html = client.get("/rfm", params={"lang": "en"}).text
    links = _links(html, "rfm-tree")
    items = _chart_options(html)["opt-rfm-tree"]["series"][0]["data"]
    assert [i["index"] for i in items] == list(range(len(links)))
    assert all(link.startswith("/customers?rfm_segment=") for link in links)
    assert client.get("/customers?clv_band=99").status_code == 400
    # the NPS trend's months: the customers who gave a score in each
    html = client.get("/", params={"lang": "en"}).text
    links = _links(html, "nps-trend")
    months = VIEWS.get(demo).satisfaction_trend()
    assert len(links) == len(months)
    for link, month in [(lk, m) for lk, m in zip(links, months, strict=True) if lk][-3:]:
        assert _shown_count(client, link) == month["respondents"], link
    for wrong in ("answered=1999-01", "answered=x"):
        assert client.get(f"/customers?{wrong}").status_code == 400, wrong


def test_a_breakdown_over_a_period_shows_what_each_group_bought(
        demo: tierwise.Workspace) -> None:
    """With a period, each group and the total carry the periodic review's figures for it
    and the period before: by tier they equal the review's own, groups add up to the total,
    and a wrong period is refused."""
    from tierwise.models.compute import load_snapshot
    from tierwise.services.breakdowns import by_dimension

    snap = load_snapshot(demo)
    found = by_dimension(demo, snap, "city", period="2026Q3")
    total = found["total"]["period"]
    assert total["name"] == "2026Q3" and total["previous"] == "2026Q2"
    assert sum(g["period"]["now"]["revenue"] for g in found["groups"]) == pytest.approx(
        total["now"]["revenue"])
    assert sum(g["period"]["now"]["buyers"] for g in found["groups"]) == total["now"]["buyers"]
    reviewed = review(demo, "2026Q3")  # the same customers' purchases, grouped by tier
    assert total["now"]["revenue"] == pytest.approx(sum(g["now"]["revenue"]
                                                        for g in reviewed.groups))
    assert total["before"]["orders"] == sum(g["before"]["orders"] for g in reviewed.groups)
    client = _client(demo)
    page = client.get("/breakdown", params={"by": "city", "period": "2026Q3", "lang": "en"})
    assert page.status_code == 200 and "Buyers 2026Q3" in page.text
    assert client.get("/breakdown", params={"period": "2026Q9"}).status_code == 400
    api = client.get("/v1/values/breakdown", params={"by": "tier", "period": "2026-07"})
    assert api.status_code == 200 and api.json()["total"]["period"]["name"] == "2026-07"


def test_the_customer_360_names_segments_in_the_page_language(
        demo: tierwise.Workspace) -> None:
    """A customer's segments and their entries on the timeline read as the segment's name in
    the page's language (its key only as a tooltip)."""
    from tierwise.segments import catalog as defs
    from tierwise.segments.membership import evaluate_all, members_at

    defs.save(demo, defs.SegmentDefinition(
        key="two_orders_named", rule="COUNT(orders) >= 2",
        names={"zh-CN": "两单以上客户", "en": "Two orders or more"}))
    evaluate_all(demo, datetime.now(UTC), ["two_orders_named"])
    someone = sorted(members_at(demo, "two_orders_named"))[0]
    client = _client(demo)
    for lang, name in (("zh-CN", "两单以上客户"), ("en", "Two orders or more")):
        page = client.get(f"/customers/{someone}", params={"lang": lang}).text
        assert f'title="two_orders_named">{name}</a>' in page
        assert f"→ {name}" in page and "→ two_orders_named" not in page


def test_review_periods_run_in_the_workspace_zone(tmp_path: Path) -> None:
    """A quarter starts at midnight in the workspace's zone: an order at 20:00 UTC on 30
    September is on 1 October in Shanghai, so it counts in Q4, not Q3."""
    from tests.conftest import write

    ws = tierwise.init(tmp_path / "ws")
    try:
        assert ws.config.timezone == "Asia/Shanghai"
        ws.import_file("customers", write(tmp_path / "c.csv", "customer_id\nC1\nC2\n"))
        ws.import_file("orders", write(tmp_path / "o.csv", (
            "order_id,customer_id,ordered_at,amount,status\n"
            "O1,C1,2026-09-30T20:00:00Z,100,paid\n"
            "O2,C2,2026-09-30T15:00:00Z,50,paid\n")))
        ws.compute(datetime(2026, 10, 2, tzinfo=UTC))
        from tierwise.segments import catalog as defs
        from tierwise.segments.membership import evaluate_all

        defs.save(ws, defs.SegmentDefinition(key="everyone", rule="COUNT(orders) >= 0"))
        evaluate_all(ws, datetime(2026, 10, 2, tzinfo=UTC), ["everyone"])
        q3 = review(ws, "2026Q3", "everyone").groups[0]["now"]
        q4 = review(ws, "2026Q4", "everyone").groups[0]["now"]
        assert (q3["orders"], q3["revenue"]) == (1, 50.0)
        assert (q4["orders"], q4["revenue"]) == (1, 100.0)
    finally:
        ws.close()


def test_a_breakdown_by_segment_has_each_segments_members(demo: tierwise.Workspace) -> None:
    """by=segment: one group per segment holding its current members (a customer in two
    segments is in both), one for customers in none; each named in the page's language and
    linking to the customer list of exactly that segment."""
    from tierwise.models.compute import load_snapshot
    from tierwise.segments import catalog as defs
    from tierwise.segments.membership import members_at
    from tierwise.services.breakdowns import by_dimension

    snapshot = load_snapshot(demo)
    found = by_dimension(demo, snapshot, "segment")
    in_snapshot = set(snapshot.table.column("customer_id").to_pylist())
    groups = {g["value"]: g for g in found["groups"]}
    anywhere: set[str] = set()
    for key in defs.applied(demo):
        members = set(members_at(demo, key)) & in_snapshot
        anywhere |= members
        assert groups.get(key, {"customers": 0})["customers"] == len(members), key
    assert groups[None]["customers"] == len(in_snapshot - anywhere)
    client = _client(demo)
    names = defs.names_in(demo, "en")
    page = client.get("/breakdown", params={"by": "segment", "lang": "en"}).text
    key = max((k for k in groups if k), key=lambda k: groups[k]["revenue"])
    assert f'<a href="/customers?segment={key}">{names[key]}</a>' in page
    answer = client.get("/breakdown", params={"by": "segment", "segment": key})
    assert answer.status_code == 400 and "by=segment" in answer.json()["detail"]
    api = client.get("/v1/values/breakdown", params={"by": "segment"}).json()
    assert {g["value"]: g["customers"] for g in api["groups"]} == {
        k: g["customers"] for k, g in groups.items()}


def test_a_template_segment_is_described_in_the_page_language(
        demo: tierwise.Workspace) -> None:
    """A segment saved from a template (with its Chinese description, in a zh-CN
    workspace) reads in English on an English page; a description someone wrote stays."""
    from tierwise.segments import catalog as defs
    from tierwise.segments.templates import DESCRIPTIONS

    client = _client(demo)
    key = "new_customers"
    assert defs.applied(demo)[key].definition.description == DESCRIPTIONS[key]["zh-CN"]
    for lang in ("zh-CN", "en"):
        page = client.get(f"/segments/{key}", params={"lang": lang}).text
        assert f"<p>{DESCRIPTIONS[key][lang]}</p>" in page, lang
    defs.save(demo, defs.SegmentDefinition(key="own_words", rule="COUNT(orders) >= 3",
                                           description="我们自己的说明"))
    assert "<p>我们自己的说明</p>" in client.get("/segments/own_words?lang=en").text


def test_the_reviews_migration_flows_open_their_customers(demo: tierwise.Workspace) -> None:
    """On the review of the quarter under way (closed by the latest snapshot), each flow of
    the tier migration opens the customers who moved that way — of the segment reviewed,
    when it is a segment's review."""
    from tierwise.store.control import utcnow

    signed_in = _client(demo)
    now = utcnow()
    quarter = f"{now.year}Q{(now.month - 1) // 3 + 1}"
    for segment in ("", "churn_risk"):
        time.sleep(0.1)
        html = signed_in.get("/review", params={"period": quarter, "segment": segment,
                                                "lang": "en"}).text
        links = _links(html, "migration")
        edges = _chart_options(html)["opt-migration"]["series"][0]["links"]
        assert len(links) == len(edges)
        followed = 0
        for link, edge in list(zip(links, edges, strict=True))[:6]:
            if link is None:
                continue
            assert ("segment=churn_risk" in link) == bool(segment)
            listed, after = [], None
            while True:  # every page of the list
                time.sleep(0.1)
                page = signed_in.get(link + "&lang=en" + (f"&after={after}" if after else ""))
                listed += re.findall(r'<th scope="row"><a href="/customers/([^"]+)"',
                                     page.text)
                nxt = re.search(r'after=([^"&]+)" rel="next"', page.text)
                if not nxt:
                    break
                after = nxt.group(1)
            assert len(listed) == edge["value"], link
            followed += 1
        assert followed >= 1, segment


def test_an_accounts_page_lists_its_people_and_a_contacts_page_its_account(
        demo: tierwise.Workspace) -> None:
    people = demo.sql("SELECT customer_id, account_id, role FROM customers "
                      "WHERE account_id IS NOT NULL ORDER BY customer_id").to_pylist()
    person = people[0]
    theirs = [p for p in people if p["account_id"] == person["account_id"]]
    admin, viewer = _client(demo), _client(demo, "viewer")
    html = admin.get(f"/customers/{person['account_id']}?lang=en").text
    listed = re.findall(r'<tr data-person="([^"]+)">', html)
    assert sorted(listed) == sorted(p["customer_id"] for p in theirs)
    assert "People at this account" in html and f"{len(theirs)} people" in html
    assert "Decision maker" in html or "Influencer" in html or "User" in html
    zh = admin.get(f"/customers/{person['account_id']}?lang=zh-CN").text
    assert "联系人" in zh and "位联系人" in zh
    page = admin.get(f"/customers/{person['customer_id']}?lang=en").text
    assert f'href="/customers/{person["account_id"]}"' in page and "Account" in page
    # a viewer without the right to personal data sees the people's e-mails masked
    emails = re.findall(r"contact[a-z0-9.]+@example\.com",
                        viewer.get(f"/customers/{person['account_id']}?lang=en").text)
    assert emails == []
    assert re.findall(r"contact[a-z0-9.]+@example\.com", html)
