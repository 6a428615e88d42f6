"""The dashboard in a real browser: Debian's Chromium driven by Playwright against a real
server (``tierwise serve``) on a demo workspace.

Outside CI these tests skip when Chromium or Playwright is missing; in CI they must run.
Screenshots of every page are saved under ``test-artifacts/screens``.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.test_crash import _start
from tests.test_serve import _free_port

import tierwise
from tierwise.demo.generator import DemoSpec
from tierwise.demo.load import load_generated, showcase
from tierwise.store import accounts

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SCREENS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screens"
#: The served workspace's folder (set by the ``server`` fixture).
SERVED: dict[str, Path] = {}
BUNDLE = Path(tierwise.__file__).parent / "dashboard" / "static" / "build" / "app.js"
USER, PASSWORD = "analyst", "dashboard-pass-1"
PAGES = ["/", "/rfm", "/tiers", "/lifecycle", "/segments", "/customers", "/clv", "/actions",
         "/review?period=2026Q3", "/imports", "/segments/new", "/breakdown?by=city",
         "/funnel?by=tier", "/duplicates"]


def _missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is not installed (Debian package chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not BUNDLE.exists():
        return f"the dashboard script is not built ({BUNDLE}; run make setup)"
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(reason)
    SCREENS.mkdir(parents=True, exist_ok=True)
    root = tmp_path_factory.mktemp("dash") / "ws"
    SERVED["root"] = root
    ws = tierwise.init(root)
    load_generated(ws, DemoSpec(customers=600, seed=11, locale="zh-CN"))
    showcase(ws)
    from tierwise.actions.channels import Channels
    from tierwise.actions.dispatch import dispatch_due

    while dispatch_due(ws, Channels(ws)):  # the showcase's tasks, on the worklist now
        pass
    with ws.control.write() as conn:
        accounts.add_user(conn, USER, PASSWORD, "admin")
    ws.close()
    port = _free_port()
    process = _start(root, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(20)


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, server: str, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(base_url=server, viewport={"width": 1360, "height": 900},
                                  accept_downloads=True, locale="zh-CN")
    tab = context.new_page()
    tab.problems = []
    tab.on("console", lambda m: m.type == "error" and tab.problems.append(m.text))
    tab.on("pageerror", lambda e: tab.problems.append(str(e)))
    tab.goto("/")
    assert "/login" in tab.url  # no session: the sign-in form, then back
    tab.fill("#u", USER)
    tab.fill("#p", PASSWORD)
    tab.click("button[type=submit]")
    tab.wait_for_url(re.compile(r"/$"))
    yield tab
    context.close()


def _charts_drawn(tab: Any) -> int:
    charts = tab.locator("[data-chart]")
    count = charts.count()
    for i in range(count):
        charts.nth(i).locator("svg").first.wait_for(state="attached", timeout=10_000)
    return count


def test_every_page_renders_with_charts_and_no_script_errors(page: Any) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for lang in ("zh-CN", "en"):  # screenshots in both languages: name.png, name-en.png
        page.goto(f"/lang/{lang}?next=/")
        for path in PAGES:
            response = page.goto(path)
            assert response.status == 200, path
            drawn[path] = _charts_drawn(page)
            name = path.strip("/").split("?")[0].replace("/", "-") or "overview"
            suffix = "" if lang == "zh-CN" else "-en"
            page.screenshot(path=str(SCREENS / f"{name}{suffix}.png"), full_page=True)
        assert page.locator("html").get_attribute("lang") == lang
    page.goto("/lang/zh-CN?next=/")
    assert page.problems == []  # CSP violations and script errors show up here
    assert drawn["/"] >= 4 and drawn["/rfm"] >= 3 and drawn["/tiers"] >= 3
    assert drawn["/lifecycle"] >= 2 and drawn["/clv"] >= 2 and drawn["/review?period=2026Q3"] >= 1
    assert drawn["/funnel?by=tier"] == 1
    # the Sankey of tier migration between the two snapshots is drawn with paths
    page.goto("/tiers")
    assert page.locator("#opt-migration").count() == 1
    assert page.locator("[data-chart=opt-migration] svg path").count() > 3


def test_a_bar_of_a_breakdown_opens_its_customers(page: Any) -> None:
    """Every chart element of the Breakdown page is a link to the customers behind it."""
    page.goto("/breakdown?by=tier")
    assert _charts_drawn(page) == 2
    bars = page.locator("[data-chart=opt-by-customers] svg path[fill^='#']")  # not text
    first_link = page.evaluate(
        "JSON.parse(document.getElementById('links-by-customers').textContent)[0]")
    assert first_link.startswith("/customers?tier=")
    box = None
    for i in range(bars.count()):  # the first bar: the left-most filled shape of the grid
        candidate = bars.nth(i).bounding_box()
        if candidate and candidate["height"] > 4 and candidate["width"] > 4 and (
                box is None or candidate["x"] < box["x"]):
            box = candidate
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url(re.compile(r"/customers\?tier="))
    assert page.url.endswith(first_link)
    assert page.problems == []


def test_a_step_of_the_funnel_opens_its_customers(page: Any) -> None:
    """The funnel's chart: clicking a step lists exactly the leads who reached it."""
    page.goto("/funnel?period=2026Q3")
    assert _charts_drawn(page) == 1
    links = page.evaluate(
        "JSON.parse(document.getElementById('links-funnel').textContent)")
    counts = [int(t.replace(",", "")) for t in page.locator(
        "table.funnel tbody td.num a").all_inner_texts()]
    assert len(links) == len(counts) >= 3
    shapes = page.locator("[data-chart=opt-funnel] svg path[fill^='#']")
    boxes = [b for b in (shapes.nth(i).bounding_box() for i in range(shapes.count()))
             if b and b["width"] > 20 and b["height"] > 8]
    top = min(boxes, key=lambda b: b["y"])  # the first step, drawn at the top
    page.mouse.click(top["x"] + top["width"] / 2, top["y"] + top["height"] / 2)
    page.wait_for_url(re.compile(r"/funnel/customers\?"))
    assert "step=leads" in page.url
    shown = page.locator("tbody th[scope=row] a").count()
    assert shown == min(counts[0], 50)
    assert page.problems == []


def test_a_task_is_assigned_from_the_worklist(page: Any) -> None:
    """The owner typed beside a task is sent with "assign" (data-input) and shows after."""
    page.goto("/actions")
    assign = page.locator("button[data-input^='#assign-']")
    if assign.count() == 0:
        pytest.skip("the showcase left no open task to assign")
    task_input = assign.first.get_attribute("data-input")
    page.fill(task_input, "王经理")
    assign.first.click()
    page.wait_for_load_state("load")
    page.wait_for_selector("h3:has-text('王经理')")
    assert page.problems == []


def test_language_switch(page: Any) -> None:
    page.goto("/rfm")
    assert page.locator("h1").inner_text() == "RFM 分析"
    page.click("a[lang=en]")
    page.wait_for_url(re.compile(r"/rfm$"))
    assert page.locator("h1").inner_text() == "RFM"
    assert page.locator("nav a[aria-current=page]").inner_text() == "RFM"
    page.goto("/customers")  # the choice sticks (cookie)
    assert page.locator("h1").inner_text() == "Customers"
    page.click("a[lang=zh-CN]")
    assert page.locator("h1").inner_text() == "客户"


def test_keyboard_reaches_the_content_first(page: Any) -> None:
    page.goto("/")
    page.keyboard.press("Tab")
    skip = page.locator(":focus")
    assert skip.get_attribute("href") == "#main"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_visual_segment_builder_counts_and_saves(page: Any, server: str) -> None:
    from playwright.sync_api import expect

    page.goto("/segments/new")
    page.fill("#key", "two_plus_orders")
    page.fill("#name-en", "Two or more orders")
    row = page.locator(".condition").first
    row.locator(".c-left").fill("COUNT(orders)")
    row.locator(".c-op").select_option(">=")
    row.locator(".c-value").fill("2")
    expect(page.locator("#rule")).to_have_value("COUNT(orders) >= 2")
    expect(page.locator("#live-count")).to_have_text(re.compile(r"^[\d,]+ / [\d,]+ "))
    shown = int(page.locator("#live-count").inner_text().split("/")[0].replace(",", ""))
    assert shown > 0
    page.screenshot(path=str(SCREENS / "segment-builder.png"), full_page=True)
    # a typing error is reported inline with its place, in the page's language (zh-CN)
    page.fill("#rule", "COUNT(orders) >= ")
    expect(page.locator("#rule-errors")).to_contain_text(re.compile(r"第 1 行第 \d+ 列"))
    # text → rows: a flat AND becomes two rows
    page.fill("#rule", "tier IN ('A', 'B') AND COUNT(orders) >= 2")
    expect(page.locator(".condition")).to_have_count(2)
    expect(page.locator(".condition .c-left").first).to_have_value("tier")
    expect(page.locator("#rule-errors")).to_have_text("")
    page.click("#plan-button")
    expect(page.locator("#plan")).to_be_visible()
    expect(page.locator(".plan-entering")).to_have_text(re.compile(r"\d"))
    entering = int(page.locator(".plan-entering").inner_text().replace(",", ""))
    page.click("#save-button")
    page.wait_for_url(re.compile(r"/segments/two_plus_orders$"))
    assert page.locator("h1").inner_text().startswith("two_plus_orders") or \
        "Two or more" in page.locator("h1").inner_text() or "two_plus_orders" in page.content()
    assert f"{entering:,}" in page.locator("main").inner_text()
    # editing starts from the applied rule, as rows, and keeps what the form does not show
    page.goto("/segments/two_plus_orders/edit")
    expect(page.locator(".condition")).to_have_count(2)
    expect(page.locator("#name-en")).to_have_value("Two or more orders")
    page.locator(".condition .c-value").last.fill("3")
    expect(page.locator("#rule")).to_have_value("tier IN ('A', 'B') AND COUNT(orders) >= 3")
    page.click("#save-button")
    page.wait_for_url(re.compile(r"/segments/two_plus_orders$"))
    applied = page.request.get(f"{server}/v1/segments/two_plus_orders").json()
    assert applied["version"] == 2 and applied["definition"]["names"]["en"] == \
        "Two or more orders"


def test_customer_360_and_member_export(page: Any) -> None:
    page.goto("/segments")
    first = page.locator("tbody th a").first
    key = first.get_attribute("href").rsplit("/", 1)[1]
    first.click()
    page.wait_for_url(re.compile(f"/segments/{key}$"))
    size = int(re.search(r"([\d,]+)", page.locator("main p strong").first.inner_text())
               .group(1).replace(",", ""))
    with page.expect_download() as info:
        page.click("a[href$='format=csv']")
    rows = list(csv.reader(io.StringIO(Path(info.value.path()).read_text("utf-8-sig"))))
    assert rows[0][0] == "customer_id" and len(rows) == size + 1
    if size:
        page.locator("main table tbody th a").first.click()
        page.wait_for_url(re.compile(r"/customers/"))
        assert page.locator("ol.timeline li").count() >= 1
        page.screenshot(path=str(SCREENS / "customer-360.png"), full_page=True)


def test_import_through_the_mapping_screen(page: Any, server: str, tmp_path: Path) -> None:
    source = tmp_path / "新客户.csv"
    source.write_text("ref_no,姓名,城市\nWEB-001,王小明,上海\nWEB-002,李华,北京\n", "utf-8")
    page.goto("/imports")
    page.select_option("#table", "customers")
    page.set_input_files("#file", str(source))
    page.wait_for_selector("select[data-column='ref_no']")
    # 姓名 and 城市 are recognised; ref_no is mapped by hand
    assert page.locator("select[data-column='姓名']").input_value() == "name"
    assert page.locator("select[data-column='城市']").input_value() == "city"
    page.select_option("select[data-column='ref_no']", "customer_id")
    assert page.locator("#preview td", has_text="王小明").count() == 1
    page.screenshot(path=str(SCREENS / "import-mapping.png"), full_page=True)
    page.click("#import-button")
    page.wait_for_url(re.compile(r"/imports\?job=\d+$"), timeout=30_000)
    assert "新客户.csv" in page.locator("section.result").inner_text()
    page.goto("/customers?q=WEB-00")
    assert page.locator("tbody th a").count() == 2
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}


@pytest.fixture(scope="session", autouse=True)
def _fresh_screens() -> None:
    shutil.rmtree(SCREENS, ignore_errors=True)


def test_tier_rule_form_previews_before_saving(page: Any) -> None:
    from playwright.sync_api import expect

    page.goto("/tiers")
    page.select_option("#tier-method", "percentile")
    page.fill("#tier-cuts", "0.1, 0.2, 0.3")
    spec = page.locator("#tier-spec")
    expect(spec).to_have_value(re.compile(r'"method": "percentile"'))
    expect(spec).to_have_value(re.compile(r'"cuts": \[\s*0.1,\s*0.2,\s*0.3\s*\]'))
    page.click("#tier-plan-button")
    first = page.locator("#tier-plan tbody tr").first
    expect(first.locator("td").nth(2)).to_have_text("60")  # 10 % of 600 customers in A
    expect(page.locator("#tier-save-button")).to_be_enabled()
    page.screenshot(path=str(SCREENS / "tier-plan.png"), full_page=True)


def test_the_worklist_flow_and_the_satisfaction_figures(page: Any) -> None:
    """In the browser: a task is started, snoozed a day and completed from the worklist
    (each shown after the page reloads); the overview's NPS and CSAT tiles are the figures
    computed directly from the feedback; the tier page's NPS per tier too."""
    from tierwise.insights.satisfaction import satisfaction

    ws = tierwise.Workspace.open(SERVED["root"])
    try:
        from tierwise.dashboard.data import Views

        view = Views().get(ws)
        whole, by_tier = satisfaction(ws, view.as_of), satisfaction(ws, view.as_of, "tier")
    finally:
        ws.close()
    page.goto("/?lang=en")
    tiles = dict(zip(page.locator(".kpi-label").all_inner_texts(),
                     page.locator(".kpi-value").all_inner_texts(), strict=True))
    assert tiles[f"NPS ({whole['respondents']:,})"] == f"{whole['nps']:+.1f}"
    assert tiles[f"CSAT ({whole['rated']:,})"].startswith(f"{whole['csat']:.2f}")
    page.goto("/tiers?lang=en")
    shown = sorted(t for t in page.locator("td[data-kpi=nps]").all_inner_texts() if t != "—")
    assert shown == sorted(f"{g['nps']:+.1f}" for g in by_tier["groups"]
                           if g["nps"] is not None)
    def task_now(task_id: str) -> dict[str, Any]:
        for status in ("active", "done"):
            listed = page.request.get(f"/v1/tasks?status={status}&limit=5000").json()
            found = next((t for t in listed if str(t["task_id"]) == task_id), None)
            if found:
                return found
        raise AssertionError(f"task {task_id} is gone")

    def eventually(test: Any) -> None:
        for _ in range(100):
            if test():
                return
            time.sleep(0.1)
        raise AssertionError("the page's action did not take")

    page.goto("/actions?lang=en#tasks")
    start = page.locator("button[data-post$='/start']")
    assert start.count() > 0, "the showcase's tasks are on the worklist"
    task = start.first.get_attribute("data-post").split("/")[3]
    due = task_now(task)["due_at"]
    with page.expect_navigation():  # each action reloads the page once it took
        start.first.click()  # start: in progress
    eventually(lambda: task_now(task)["status"] == "in_progress")
    with page.expect_navigation():
        page.locator(f"button[data-post='/v1/tasks/{task}/snooze']").click()  # a day later
    eventually(lambda: task_now(task)["due_at"] != due)
    complete = page.locator(f"button[data-post='/v1/tasks/{task}/complete']")
    if complete.count() == 0:  # snoozed down the worklist: find it on its owner's list
        owner = task_now(task)["owner"]
        page.goto(f"/actions?lang=en&owner={owner}#tasks" if owner else "/actions?lang=en")
    with page.expect_navigation():
        complete.click()
    eventually(lambda: task_now(task)["status"] == "done")
    assert page.problems == []


def test_the_review_report_downloads_with_every_section(page: Any, tmp_path: Path) -> None:
    """From the Review page, in both languages: the PDF download has the KPI, satisfaction,
    migration and movers sections as text, with no replacement glyph."""
    from pypdf import PdfReader

    for lang, words in (("zh-CN", ("客户群指标", "满意度", "等级迁移", "收入增加最多的客户")),
                        ("en", ("Segment KPIs", "Satisfaction", "Tier migration",
                                "Biggest increases in revenue"))):
        page.goto(f"/review?period=2026Q3&lang={lang}")
        with page.expect_download() as caught:
            page.locator("a[href^='/review/report.pdf']").click()
        target = tmp_path / f"review-{lang}.pdf"
        caught.value.save_as(target)
        text = "".join(p.extract_text() for p in PdfReader(target).pages).replace("\n", "")
        for word in words:
            assert word in text, (lang, word)
        assert "\ufffd" not in text
    assert page.problems == []


def test_a_treemap_rectangle_opens_its_segment(page: Any) -> None:
    """The RFM treemap lays its rectangles out by size; a click still opens the customers
    of the segment drawn there (each item carries its own position)."""
    page.goto("/rfm?lang=en")
    assert _charts_drawn(page) >= 3
    links = page.evaluate(
        "JSON.parse(document.getElementById('links-rfm-tree').textContent)")
    option = page.evaluate(
        "JSON.parse(document.getElementById('opt-rfm-tree').textContent)")
    names = [item["name"] for item in option["series"][0]["data"]]
    shapes = page.locator("[data-chart=opt-rfm-tree] svg path[fill^='#']")
    boxes = [b for b in (shapes.nth(i).bounding_box() for i in range(shapes.count()))
             if b and b["width"] > 30 and b["height"] > 30]
    smallest = min(boxes, key=lambda b: b["width"] * b["height"])  # not the first item
    texts = page.locator("[data-chart=opt-rfm-tree] svg text")
    drawn = ""
    for i in range(texts.count()):  # the label drawn inside the rectangle clicked
        box = texts.nth(i).bounding_box()
        if box and smallest["x"] <= box["x"] + box["width"] / 2 <= smallest["x"] + \
                smallest["width"] and smallest["y"] <= box["y"] + box["height"] / 2 <= \
                smallest["y"] + smallest["height"]:
            drawn += texts.nth(i).text_content() or ""
    page.mouse.move(smallest["x"] + 5, smallest["y"] + 5)
    page.mouse.click(smallest["x"] + smallest["width"] / 2,
                     smallest["y"] + smallest["height"] / 2)
    page.wait_for_url(re.compile(r"/customers\?rfm_segment="))
    shown = page.locator("p.filters .tag").first.inner_text()
    index = links.index(page.url[page.url.index("/customers"):])
    assert shown.endswith(names[index]), (shown, names[index])
    assert drawn.startswith(names[index]), (drawn, names[index])
    assert page.problems == []


def test_a_duplicate_pair_is_judged_on_its_evidence(page: Any) -> None:
    """The review queue shows both records and the evidence field by field; "not the same
    customer" takes the pair off the queue (the page reloads once the decision is saved)."""
    import pyarrow as pa

    from tierwise.identity import review
    from tierwise.identity.match import find_duplicates

    ws = tierwise.Workspace.open(SERVED["root"])
    try:
        find_duplicates(ws, review.LOWER)  # trains the model the page explains with
        left, right = sorted(ws.table("customers")["customer_id"].to_pylist())[:2]
        review.queue(ws, pa.table({"unique_id_l": [left], "unique_id_r": [right],
                                   "match_probability": [0.6]}), actor="test")
        pair = next(p for p in review.pending(ws, 1000)
                    if {p["left_id"], p["right_id"]} == {left, right})
    finally:
        ws.close()
    page.goto("/duplicates?lang=en")
    page.screenshot(path=str(SCREENS / "duplicates-pair-en.png"), full_page=True)
    section = page.locator(f"section[aria-labelledby='pair-{pair['pair_id']}']")
    assert section.locator(f"a[href='/customers/{left}']").count() == 1
    evidence = section.locator("table.evidence tbody tr")
    assert evidence.count() == 1 + 8 + 1  # prior, eight fields, total
    assert "Prior" in evidence.first.inner_text()
    with page.expect_navigation():
        section.locator(f"button[data-post='/v1/duplicates/{pair['pair_id']}/reject']").click()
    for _ in range(100):
        rejected = page.request.get("/v1/duplicates?status=rejected").json()
        if any(p["pair_id"] == pair["pair_id"] for p in rejected):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the decision did not take")
    assert page.locator(f"section[aria-labelledby='pair-{pair['pair_id']}']").count() == 0
    assert page.problems == []
