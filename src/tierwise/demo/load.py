"""Fill a workspace with demo data: generated customers, or the real CDNOW log."""

from __future__ import annotations

import importlib.metadata
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from tierwise.definitions.schemas import TABLES
from tierwise.demo.generator import DemoSpec, write_demo_files
from tierwise.errors import TierwiseError
from tierwise.ingest import imports
from tierwise.ingest.readers import RecordsSource
from tierwise.ingest.results import ImportResult
from tierwise.models.compute import compute
from tierwise.models.economics import EconomicsSettings
from tierwise.workspace import Workspace

#: Opportunities before their stage history: the history file's moves (with the stage each
#: came from) take the place of the one-move history an import of opportunities records.
ORDER = ["customers", "orders", "events", "tickets", "feedback", "referrals", "opportunities",
         "opportunity_stages"]
Step = Callable[[str, int, int], None]


def load_generated(ws: Workspace, spec: DemoSpec, keep_files: Path | None = None,
                   step: Step | None = None,
                   progress: Callable[[str, int], None] | None = None) -> list[ImportResult]:
    """Generate ``spec`` into Parquet files and import them table by table."""
    with tempfile.TemporaryDirectory(dir=ws.root, prefix=".demo-") as tmp:
        out = keep_files or Path(tmp)
        on_chunk = (lambda i, n: step("generate", i, n)) if step else None
        write_demo_files(spec, out, on_chunk)
        results = []
        for name in ORDER:
            results.append(imports.import_file(ws, name, out / name,
                                               progress=_per_table(progress, name)))
        ws.compact()
        return results


def _per_table(progress: Callable[[str, int], None] | None,
               table: str) -> Callable[[int], None] | None:
    if progress is None:
        return None
    return lambda rows: progress(table, rows)


def cdnow_path() -> Path:
    """The CDNOW master log inside the installed ``lifetimes`` wheel (never imported)."""
    try:
        files = importlib.metadata.files("lifetimes") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if str(f).endswith("datasets/CDNOW_master.txt"):
            return Path(str(f.locate()))
    raise TierwiseError(
        "the CDNOW data ships in the lifetimes wheel, which is not installed; run "
        "`pip install --no-deps lifetimes==0.11.3` (make setup does this)"
    ,
        zh="CDNOW 数据随 lifetimes 安装包提供，但它没有安装；请运行 "
        "`pip install --no-deps lifetimes==0.11.3`（make setup 会执行这一步）")


def read_cdnow(path: Path | None = None) -> pa.Table:
    """CDNOW master: customer id, yyyymmdd date, number of CDs, dollar value (69,659 rows)."""
    path = path or cdnow_path()
    text = path.read_text().splitlines()
    body = "\n".join(" ".join(line.split()) for line in text[1:] if line.strip())
    return pacsv.read_csv(
        pa.py_buffer(body.encode()),
        read_options=pacsv.ReadOptions(column_names=["customer_id", "date", "cds", "amount"]),
        parse_options=pacsv.ParseOptions(delimiter=" "),
        convert_options=pacsv.ConvertOptions(column_types={
            "customer_id": pa.string(), "date": pa.string(), "cds": pa.int64(),
            "amount": pa.float64()}),
    )


def load_cdnow(ws: Workspace, progress: Callable[[str, int], None] | None = None
               ) -> list[ImportResult]:
    """Import CDNOW as customers and orders (one order per log line, in US dollars).

    The log has no order ids: line k of customer c on day d becomes ``c-d-k``. Dates carry no
    time; they are taken as midnight in the workspace's time zone.
    """
    log = read_cdnow()
    rows = log.to_pylist()
    seen: dict[tuple[str, str], int] = {}
    order_ids = []
    for r in rows:
        k = seen.get((r["customer_id"], r["date"]), 0) + 1
        seen[(r["customer_id"], r["date"])] = k
        order_ids.append(f"{r['customer_id']}-{r['date']}-{k}")
    customers = sorted({r["customer_id"] for r in rows})
    firsts: dict[str, str] = {}
    for r in rows:
        firsts[r["customer_id"]] = min(firsts.get(r["customer_id"], r["date"]), r["date"])
    customer_table = pa.table({"customer_id": customers,
                               "signup_at": [firsts[c] for c in customers],
                               "country": ["United States"] * len(customers)})
    orders = pa.table({
        "order_id": order_ids,
        "customer_id": log.column("customer_id"),
        "ordered_at": log.column("date"),
        "amount": log.column("amount"),
        "quantity": log.column("cds"),
        "currency": ["USD"] * log.num_rows,
        "category": ["CD"] * log.num_rows,
    })
    results = []
    for name, table in (("customers", customer_table), ("orders", orders)):
        source = RecordsSource(f"CDNOW_master.txt ({name})", table.column_names,
                               iter([table]), fmt="cdnow")
        results.append(imports.import_source(ws, name, source, progress=_per_table(progress, name)))
    return results


__all__ = ["TABLES", "DemoSpec", "load_cdnow", "load_generated"]


#: Days between the two snapshots a showcase computes (so pages can show migration).
SHOWCASE_GAP_DAYS = 90


def showcase(ws: Workspace, step: Step | None = None) -> None:
    """Make a demo workspace look lived-in: a snapshot 90 days back and one now (tier
    migration has two ends), the built-in segment templates saved and evaluated, twice
    (at the earlier instant and now), so segments have history and a size trend, and a
    trigger and two playbooks (tasks only: nothing leaves the machine) that the second
    evaluation sets off, and lead scoring run at both instants (the funnel's qualified
    leads)."""
    from datetime import timedelta

    from tierwise.models import leads
    from tierwise.segments import catalog as defs
    from tierwise.segments.membership import evaluate_all
    from tierwise.segments.templates import TEMPLATES, template
    from tierwise.store.control import utcnow

    now = utcnow()
    earlier = now - timedelta(days=SHOWCASE_GAP_DAYS)
    stages = [("duplicates", lambda: _showcase_duplicates(ws)),
              ("economics", lambda: _showcase_economics(ws)),
              ("compute", lambda: compute(ws, earlier)),
              ("segments", lambda: [defs.save(ws, template(k, ws.config.locale), "demo showcase")
                                    for k in TEMPLATES]),
              ("evaluate", lambda: evaluate_all(ws, earlier)),
              ("automations", lambda: _showcase_automations(ws)),
              ("leads", lambda: leads.update(ws, None, earlier)),
              ("compute", lambda: compute(ws, now)),
              ("evaluate", lambda: evaluate_all(ws, now)),
              ("leads", lambda: (leads.replay(ws, now), leads.update(ws, None, now)))]
    for i, (name, run) in enumerate(stages, 1):
        run()
        if step:
            step(name, i, len(stages))


def _showcase_duplicates(ws: Workspace) -> None:
    """About one customer in a hundred known a second time, as another system typed it
    (phone format, e-mail case, traditional characters or a typo in the name, the city's
    long form; every third without e-mail and phone), then a duplicate scan: sure pairs
    merge, the others wait on the duplicates page."""
    import numpy as np

    from tierwise.demo.duplicates import _vary_email, _vary_name, _vary_phone
    from tierwise.identity import review
    from tierwise.identity.match import find_duplicates

    rng = np.random.default_rng(17)
    people = ws.table("customers").to_pylist()
    chosen = people[:: max(1, len(people) // min(30, max(3, len(people) // 100)))]
    copies = []
    for i, row in enumerate(chosen):
        contact = i % 3 != 0  # every third copy without e-mail and phone: less sure
        copies.append({
            "customer_id": f"{row['customer_id']}-CRM", "name": _vary_name(rng, row["name"]),
            "email": _vary_email(rng, row["email"]) if contact else None,
            "phone": _vary_phone(rng, row["phone"]) if contact else None,
            "city": f"{row['city']}市" if i % 2 and row["city"] else row["city"],
            "province": row["province"], "gender": row["gender"],
            "birth_date": row["birth_date"].isoformat() if row["birth_date"] else None,
            "channel": "CRM"})
    imports.import_source(ws, "customers", RecordsSource.from_dicts("crm export", copies))
    pairs, _ = find_duplicates(ws, review.LOWER)
    review.queue(ws, pairs, actor="demo showcase")


#: What serving the demo's customers costs (in the demo's currency): tickets by priority, the
#: account managers' time by the service level of the playbook that applies (else for tiers
#: A and B), acquisition by channel where a customer has no cost of their own, a margin for
#: the few orders without a cost.
SHOWCASE_ECONOMICS = EconomicsSettings(
    default_margin=0.35, ticket_cost=25,
    ticket_costs={"low": 15, "normal": 25, "high": 60, "urgent": 150},
    manager_hours={"A": 1.5, "B": 0.2}, service_level_hours={"premium": 2.0, "standard": 0.25},
    hourly_cost=180,
    channel_cac={"天猫": 45, "京东": 45, "抖音": 60, "Amazon": 45, "Marketplace": 40})

SHOWCASE_AUTOMATIONS: dict[str, list[dict[str, Any]]] = {
    "trigger": [{
        "key": "awaken_call", "names": {"zh-CN": "待唤醒客户回访", "en": "Call to awaken"},
        "on": {"event": "enter", "segment": "to_be_awakened"},
        "action": {"type": "task", "title": "回访待唤醒客户 / call a customer to awaken",
                   "due_hours": 72, "priority": "normal"}},
        {"key": "deal_won", "names": {"zh-CN": "赢单交接", "en": "Won deal hand-over"},
         "on": {"event": "stage_change", "to": ["赢单"]},
         "action": {"type": "task", "title": "安排实施启动会 / schedule the kick-off",
                    "due_hours": 48, "priority": "high"}},
        {"key": "stalled_deal_alert", "names": {"zh-CN": "重点商机停滞提醒",
                                                "en": "Stalled key deal alert"},
         "on": {"event": "enter", "segment": "stalled_key_deals"},
         "action": {"type": "task", "title": "推进停滞商机 / move the stalled deal on",
                    "due_hours": 24, "priority": "urgent"}}],
    "playbook": [{
        "key": "tier_a_care", "names": {"zh-CN": "A 类客户专属服务", "en": "Tier A care"},
        "applies_to": {"tier": "A"}, "priority": 10, "service_level": "premium",
        "sla_response_hours": 4, "ticket_priority": "high", "owner_role": "analyst",
        "cadence_days": 14, "channels": ["phone", "wechat"], "offers": ["专属顾问", "优先发货"]},
        {"key": "awaken_sequence", "names": {"zh-CN": "沉睡唤醒序列", "en": "Recall sequence"},
         "applies_to": {"segment": "to_be_awakened"}, "priority": 50,
         "service_level": "standard", "channels": ["email"], "offers": ["回归礼券"],
         "steps": [{"after": "0d", "action": {"type": "task", "title": "发送回归礼券"}},
                   {"after": "7d", "action": {"type": "task", "title": "电话回访"}}]}],
    "lead_scoring": [{
        "key": "default",
        "events": [{"when": "type = 'page_view' AND properties.page = '/pricing'", "points": 15},
                   {"when": "type = 'download'", "points": 20},
                   {"when": "type = 'email_open'", "points": 3}],
        "half_life_days": 30, "threshold": 15,
        "task": {"type": "task", "title": "合格线索：一天内联系 / qualified lead: call within a "
                 "day", "role": "sales", "due_hours": 24}}],
}


def _showcase_economics(ws: Workspace) -> None:
    """The demo's costs, the manager's hours for those of its tiers the workspace has."""
    from tierwise.models import compute as settings

    tiers = settings.load_settings(ws, for_compute=False).tiers.tiers
    hours = {t: h for t, h in SHOWCASE_ECONOMICS.manager_hours.items() if t in tiers}
    settings.save_setting(ws, "economics",
                          SHOWCASE_ECONOMICS.model_copy(update={"manager_hours": hours}))


def _showcase_automations(ws: Workspace) -> None:
    from tierwise.actions import catalog as automations
    from tierwise.segments.vocabulary import vocabulary

    words = vocabulary(ws)
    with ws.control.write() as conn:
        for kind, items in SHOWCASE_AUTOMATIONS.items():
            for item in items:
                automations.save(conn, kind, automations.parse_definition(
                    kind, item, f"showcase {kind} {item['key']}"), "demo showcase",
                    allowed_targets=ws.config.webhook_allowed_targets, vocabulary=words)
