"""The dashboard's pages. Each page checks the same permission as the API route it mirrors;
a browser without a session is sent to the sign-in form and back."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from tierwise.dashboard import charts
from tierwise.dashboard.data import VIEWS, View, value_history
from tierwise.definitions.json_values import jsonable
from tierwise.definitions.personal_data import rule_as_shown
from tierwise.definitions.roles import Principal
from tierwise.errors import NotFoundError, TierwiseError
from tierwise.models.tiers import METRICS as TIER_METRICS
from tierwise.services.customers import present_profile
from tierwise.web import i18n
from tierwise.web.auth import authenticate, require, workspace
from tierwise.web.problems import Problem
from tierwise.web.templating import ENV, number

HERE = Path(__file__).parent
STATIC = HERE / "static"
router = APIRouter(include_in_schema=False)
#: Words the browser script needs (the rest are rendered on the server).
SCRIPT_WORDS = ("counting", "customers", "ignore", "rows", "queued", "running", "done",
                "failed", "tier", "now", "after", "change", "moved", "saved", "new", "changed",
                "unchanged")
NAV = (("overview", "/"), ("rfm", "/rfm"), ("tiers", "/tiers"), ("lifecycle", "/lifecycle"),
       ("segments", "/segments"), ("customers", "/customers"), ("clv", "/clv"),
       ("actions", "/actions"), ("review", "/review"), ("imports", "/imports"))


RISK_ORDER = ("high", "medium", "low", "unknown")
#: Snapshot columns the customer list can be filtered by (?tier=A&lifecycle=at_risk).
VALUE_FILTERS = ("tier", "lifecycle", "rfm_segment", "churn_risk")
PAGE = 50
TIMELINE_ITEMS = 200
RISK_COLOURS = {"high": "#c92a2a", "medium": "#e67700", "low": "#2b8a3e", "unknown": "#868e96"}


class SignIn(Exception):
    """Raised by a page when nobody is signed in: answered with a redirect to /login."""

    def __init__(self, target: str) -> None:
        self.target = target


def viewer(request: Request, permission: str) -> Principal:
    """The signed-in principal; SignIn without a session, 403 without the permission."""
    try:
        principal = authenticate(request)
    except Problem as exc:
        if exc.status == 401:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignIn(target) from None
        raise
    if not principal.can(permission):
        raise Problem(403, f"role {principal.role} may not {permission}")
    return principal


def render(request: Request, principal: Principal, template: str, active: str,
           status_code: int = 200, **context: Any) -> HTMLResponse:
    ws = workspace(request)
    lang = i18n.language(request, ws.config.locale)
    words = i18n.table(lang)
    page = ENV.get_template(template).render(
        w=words, lang=lang, zone=ZoneInfo(ws.config.timezone), user=principal,
        csrf=principal.csrf_token or "", active=active, nav=NAV, path=request.url.path,
        query=request.url.query,
        script_words={k: words[k] for k in SCRIPT_WORDS}, **context)
    response = HTMLResponse(page, status_code=status_code)
    if request.query_params.get("lang") in i18n.LANGUAGES:
        response.set_cookie(i18n.LANG_COOKIE, request.query_params["lang"], samesite="strict",
                            secure=request.url.scheme == "https",
                            max_age=365 * 86400, path="/")
    return response


def _view(request: Request, snapshot_id: int | None = None) -> View | None:
    try:
        return VIEWS.get(workspace(request), snapshot_id)
    except NotFoundError:
        return None


def _lang(request: Request) -> str:
    return i18n.language(request, workspace(request).config.locale)


@dataclass
class ValuePage:
    """What every page over the latest snapshot starts with."""

    principal: Principal
    view: View
    lang: str
    w: dict[str, str]


def value_page(active: str) -> Callable[[Callable[[Request, ValuePage], HTMLResponse]],
                                        Callable[[Request], HTMLResponse]]:
    """A page over the latest snapshot: ``build(request, page)`` runs when there is one;
    without a snapshot the "compute first" page answers instead."""

    def wrap(build: Callable[[Request, ValuePage], HTMLResponse]
             ) -> Callable[[Request], HTMLResponse]:
        def route(request: Request) -> HTMLResponse:
            principal = viewer(request, "values:read")
            view, lang = _view(request), _lang(request)
            if view is None:
                return render(request, principal, "empty.html", active)
            return build(request, ValuePage(principal, view, lang, i18n.table(lang)))

        route.__name__ = build.__name__
        route.__doc__ = build.__doc__
        return route

    return wrap


# -- overview, RFM, tiers, lifecycle, CLV ------------------------------------------------


@router.get("/", response_class=HTMLResponse)
@value_page("overview")
def overview(request: Request, page: ValuePage) -> HTMLResponse:
    principal, view, lang, w = page.principal, page.view, page.lang, page.w
    tiers = view.breakdown("tier")
    stages = {r["value"]: r["customers"] for r in view.breakdown("lifecycle")}
    risk = sorted(view.breakdown("churn_risk"), key=lambda r: RISK_ORDER.index(
        r["value"] or "unknown"))
    monthly = view.monthly()
    figures = {
        "tier-mix": charts.donut(w["tier_mix"], [(view.tier_label(r["value"], lang),
                                                  r["customers"]) for r in tiers],
                                 [charts.TIER_COLOURS.get(r["value"], "#495057") for r in tiers]),
        "stages": charts.bars(w["lifecycle"], [view.stage_label(s, lang)
                                               for s in view.stage_order()],
                              [(w["customers"], [stages[s] for s in view.stage_order()])]),
        "risk": charts.donut(w["churn_risk"], [(w[f"risk_{r['value'] or 'unknown'}"],
                                                r["customers"]) for r in risk],
                             [RISK_COLOURS[r["value"] or "unknown"] for r in risk]),
        "trend": charts.trend(w["monthly_revenue"], [m["month"] for m in monthly], w["revenue"],
                              [round(m["revenue"], 2) for m in monthly], w["buyers"],
                              [m["buyers"] for m in monthly]),
    }
    return render(request, principal, "overview.html", "overview", view=view,
                  kpis=view.kpis(), figures=figures)


@router.get("/rfm", response_class=HTMLResponse)
@value_page("rfm")
def rfm(request: Request, page: ValuePage) -> HTMLResponse:
    principal, view, lang, w = page.principal, page.view, page.lang, page.w
    grid = view.rf_grid()
    segments = view.rfm_segments()
    figures = {
        "rf-count": charts.heatmap(w["rf_heatmap_count"], [(c["r"], c["f"], c["customers"])
                                                          for c in grid], "R", "F"),
        "rf-revenue": charts.heatmap(w["rf_heatmap_revenue"], [(c["r"], c["f"], c["revenue"])
                                                              for c in grid], "R", "F"),
        "rfm-tree": charts.treemap(w["rfm_treemap"], [(view.rfm_label(s["segment"], lang),
                                                       s["customers"]) for s in segments]),
    }
    return render(request, principal, "rfm.html", "rfm", view=view, segments=segments,
                  figures=figures, label=lambda s: view.rfm_label(s, lang))


def _snapshot_pair(request: Request, view: View) -> tuple[list[dict[str, Any]], int | None,
                                                          int | None]:
    from tierwise.models import compute

    found = compute.list_snapshots(workspace(request))
    ids = [s["snapshot_id"] for s in found]
    after = _int(request.query_params.get("after")) or view.snapshot.snapshot_id
    before = _int(request.query_params.get("before"))
    if before not in ids:
        earlier = [i for i in ids if after is not None and i < after]
        before = earlier[-1] if earlier else None
    return found, before, after


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


@router.get("/tiers", response_class=HTMLResponse)
@value_page("tiers")
def tiers(request: Request, page: ValuePage) -> HTMLResponse:
    principal, view, lang, w = page.principal, page.view, page.lang, page.w
    rows = view.breakdown("tier")
    snapshots, before, after = _snapshot_pair(request, view)
    figures = {
        "tier-dist": charts.bars(w["distribution"], [view.tier_label(r["value"], lang)
                                                     for r in rows],
                                 [(w["customer_share"], [round(100 * r["customer_share"], 2)
                                                         for r in rows]),
                                  (w["revenue_share"], [round(100 * r["revenue_share"], 2)
                                                        for r in rows])], percent=True),
        "pareto": charts.curve(w["pareto"], view.pareto(), w["top_customers_share"],
                               w["revenue_share"]),
    }
    if before is not None and after is not None and before != after:
        old, new = _view(request, before), _view(request, after)
        if old is not None and new is not None:
            flows = new.moves_from(old, "tier")
            figures["migration"] = charts.sankey(
                w["migration"], [(str(m["from"] or "—"), str(m["to"] or "—"), m["customers"])
                                 for m in flows if m["customers"]],
                f"#{before}", f"#{after}")
    spec = json.dumps(view.settings.tiers.model_dump(mode="json"), ensure_ascii=False, indent=2)
    return render(request, principal, "tiers.html", "tiers", view=view, rows=rows,
                  figures=figures, snapshots=snapshots, before=before, after=after, spec=spec,
                  can_write=principal.can("values:write"), metrics=TIER_METRICS,
                  label=lambda t: view.tier_label(t, lang))


@router.get("/lifecycle", response_class=HTMLResponse)
@value_page("lifecycle")
def lifecycle(request: Request, page: ValuePage) -> HTMLResponse:
    principal, view, lang, w = page.principal, page.view, page.lang, page.w
    rows = {r["value"]: r for r in view.breakdown("lifecycle")}
    order = view.stage_order()
    figures = {"funnel": charts.funnel(w["stage_funnel"], [
        (view.stage_label(s, lang), rows[s]["customers"]) for s in order])}
    snapshots, before, after = _snapshot_pair(request, view)
    if before is not None:
        old = _view(request, before)
        if old is not None:
            flows = view.moves_from(old, "lifecycle")
            figures["flows"] = charts.sankey(
                w["stage_flows"], [(view.stage_label(m["from"], lang),
                                    view.stage_label(m["to"], lang), m["customers"])
                                   for m in flows if m["customers"]],
                f"#{before}", f"#{after}")
    return render(request, principal, "lifecycle.html", "lifecycle", view=view,
                  rows=[rows[s] for s in order], figures=figures,
                  label=lambda s: view.stage_label(s, lang))


@router.get("/clv", response_class=HTMLResponse)
@value_page("clv")
def clv(request: Request, page: ValuePage) -> HTMLResponse:
    principal, view, lang, w = page.principal, page.view, page.lang, page.w
    by_tier = view.clv_by_tier()
    histogram = view.clv_histogram()
    figures = {
        "clv-tier": charts.bars(w["clv_distribution"], [view.tier_label(r["tier"], lang)
                                                        for r in by_tier],
                                [(w["mean"], [round(r["mean"] or 0, 2) for r in by_tier]),
                                 (w["median"], [round(r["median"] or 0, 2) for r in by_tier])]),
        "clv-hist": charts.bars("CLV", [f"{h['low']:,.0f}–{h['high']:,.0f}" for h in histogram],
                                [(w["customers"], [h["customers"] for h in histogram])]),
    }
    return render(request, principal, "clv.html", "clv", view=view, by_tier=by_tier,
                  at_risk=view.at_risk(lang), kpis=view.kpis(), figures=figures,
                  label=lambda t: view.tier_label(t, lang))


# -- segments ------------------------------------------------------------------------------


@router.get("/segments", response_class=HTMLResponse)
def segments(request: Request) -> HTMLResponse:
    from tierwise.segments import definitions as defs
    from tierwise.store import memberships, sizes

    principal = viewer(request, "segments:read")
    ws, lang = workspace(request), _lang(request)
    applied = defs.applied(ws)
    with ws.control.read() as conn:
        counts = sizes.of(conn)
        recent = memberships.recent_runs(conn, 30)
    trend = {key: [int(r["members"]) for r in found if r["members"] is not None]
             for key, found in recent.items()}
    last = {key: found[-1] for key, found in recent.items()}
    items = []
    for key, a in applied.items():
        d = a.definition
        items.append({"key": key, "name": d.names.get(lang) or d.names.get("en") or key,
                      "kind": d.kind, "status": d.status, "version": a.version,
                      "members": counts.get(key, 0),
                      "rule": rule_as_shown(principal, d.canonical().get("rule"),
                                            ws.personal_data) or "",
                      "last": last.get(key), "spark": charts.sparkline(trend.get(key, []))
                      if len(trend.get(key, [])) > 1 else None})
    return render(request, principal, "segments.html", "segments", items=items,
                  can_write=principal.can("segments:write"))


def _builder(request: Request, principal: Principal, definition: Any | None) -> HTMLResponse:
    from tierwise.definitions import segment_fields as sf

    suggestions = sorted([*sf.CUSTOMER_FIELDS, *sf.COMPUTED_FIELDS, *sf.LEAD_FIELDS,
                          *sf.LIVE_FIELDS]) + [
        "COUNT(orders)", "COUNT(orders, LAST 30d)", "COUNT(orders, LAST 90d)",
        "SUM(orders.amount)", "SUM(orders.amount, LAST 365d)", "AVG(orders.amount)",
        "DAYS_SINCE_LAST(orders)", "COUNT(events, LAST 7d)", "COUNT(tickets, LAST 30d)",
        "AVG(feedback.score)", "IN_SEGMENT", "NOT IN_SEGMENT"]
    return render(request, principal, "builder.html", "segments", definition=definition,
                  suggestions=suggestions,
                  operators=["=", "!=", ">", ">=", "<", "<=", "IN", "NOT IN", "BETWEEN",
                             "NOT BETWEEN", "CONTAINS", "NOT CONTAINS", "IS NULL",
                             "IS NOT NULL"])


@router.get("/segments/new", response_class=HTMLResponse)
def new_segment(request: Request) -> HTMLResponse:
    return _builder(request, viewer(request, "segments:write"), None)


@router.get("/segments/{key}/edit", response_class=HTMLResponse)
def edit_segment(key: str, request: Request) -> HTMLResponse:
    from tierwise.segments import definitions as defs

    principal = viewer(request, "segments:write")
    found = defs.applied(workspace(request)).get(key)
    if found is None:
        raise Problem(404, f"no segment {key!r}")
    if found.definition.kind != "dynamic":
        raise Problem(409, f"segment {key!r} is a {found.definition.kind} list: change its "
                      "members instead (POST /v1/segments/{key}/members)")
    return _builder(request, principal, found.definition)


@router.get("/segments/{key}", response_class=HTMLResponse)
def segment(key: str, request: Request) -> HTMLResponse:
    from tierwise.segments import definitions as defs
    from tierwise.services.customers import search
    from tierwise.store import memberships, sizes

    principal = viewer(request, "segments:read")
    ws, lang = workspace(request), _lang(request)
    found = defs.applied(ws).get(key)
    if found is None:
        raise Problem(404, f"no segment {key!r}")
    q = request.query_params.get("q") or None
    after = request.query_params.get("after") or None
    members, next_after = search(ws, principal, q=q, segment=key, after=after, limit=50)
    with ws.control.read() as conn:
        total = sizes.of(conn, [key])[key]
        history = memberships.history(conn, key, limit=50)
        runs = memberships.runs(conn, key, 20)
    d = found.definition
    shown = d.model_copy(update={"rule": rule_as_shown(principal, d.canonical().get("rule"),
                                                       ws.personal_data)})
    return render(request, principal, "segment.html", "segments", key=key, definition=shown,
                  name=d.names.get(lang) or d.names.get("en") or key, version=found.version,
                  total=total, members=members, next_after=next_after, q=q or "",
                  history=history, runs=runs, can_write=principal.can("segments:write"))


# -- customers -----------------------------------------------------------------------------


@router.get("/customers", response_class=HTMLResponse)
def customers(request: Request) -> HTMLResponse:
    from tierwise.services.customers import search, searched_by

    principal = viewer(request, "customers:read")
    q = request.query_params.get("q") or None
    after = request.query_params.get("after") or None
    filters = {c: v for c in VALUE_FILTERS if (v := request.query_params.get(c))}
    view, lang = _view(request), _lang(request)
    matched = None
    if filters and view is not None:
        if not principal.can("values:read"):
            raise Problem(403, f"role {principal.role} may not read values")
        page_ids, matched = view.matching(filters, after, PAGE + 1)
        items, _ = search(workspace(request), principal, ids=page_ids[:PAGE], limit=PAGE)
        next_after = page_ids[PAGE - 1] if len(page_ids) > PAGE else None
    else:
        items, next_after = search(workspace(request), principal, q=q, after=after, limit=PAGE)
    labels = {"tier": view.tier_label, "lifecycle": View.stage_label,
              "rfm_segment": view.rfm_label} if view else {}
    shown = {c: (labels[c](v, lang) if c in labels else i18n.table(lang).get(f"risk_{v}", v))
             for c, v in filters.items()}
    base = "&".join(f"{c}={quote(v)}" for c, v in filters.items())
    return render(request, principal, "customers.html", "customers", items=items,
                  next_after=next_after, q=q or "", filters=shown, matched=matched,
                  filter_query=base, search_pii=len(searched_by(principal)) > 1)


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
def customer(customer_id: str, request: Request) -> HTMLResponse:
    from tierwise.actions import playbooks
    from tierwise.security import consent
    from tierwise.segments.membership import customer_segments
    from tierwise.services.customers import customer_profile
    from tierwise.store.preferences import CHANNELS

    principal = viewer(request, "customers:read")
    ws, lang = workspace(request), _lang(request)
    try:
        found = present_profile(ws, principal, customer_profile(ws, customer_id))
    except NotFoundError:
        raise Problem(404, f"no customer with id {customer_id!r}") from None
    values = request.app.state.latest_values.of(customer_id)
    history = customer_segments(ws, customer_id)
    view = _view(request)
    timeline = sorted(_timeline(found, history, lang)
                      + _value_changes(value_history(ws, customer_id), view, lang),
                      key=lambda i: str(jsonable(i["at"])), reverse=True)[:TIMELINE_ITEMS]
    playbook = playbooks.applying(ws, [customer_id]).get(customer_id)
    with ws.control.read() as conn:
        contact = {channel: {purpose: consent.decide(conn, customer_id, channel, purpose)
                             for purpose in consent.PURPOSES}
                   for channel in CHANNELS if channel != "all"}
    return render(request, principal, "customer.html", "customers",
                  customer=found.customer, profile=found, contact=contact,
                  values=values or {}, timeline=timeline, playbook=playbook,
                  segments=[h for h in history if h.get("exited_at") is None],
                  tier_label=(lambda t: view.tier_label(t, lang)) if view else str,
                  stage_label=lambda s: View.stage_label(s, lang))


def _timeline(found: Any, history: list[dict[str, Any]], lang: str) -> list[dict[str, Any]]:
    """Orders, events, tickets, feedback and segment entries/exits (unsorted), each placed
    at its table's time column."""
    from tierwise.definitions.schemas import table_schema

    w = i18n.table(lang)

    def at(table: str, row: dict[str, Any]) -> Any:
        return row.get(table_schema(table).time_column or "")

    def joined(row: dict[str, Any], names: tuple[str, ...]) -> str:
        return " · ".join(f"{n} {row[n]}" if n in ("nps", "csat") else str(row[n])
                          for n in names if row.get(n) is not None)

    items: list[dict[str, Any]] = []
    items += [{"at": at("orders", o), "kind": w["orders"],
               "text": f"{o.get('order_id')} · {number(o.get('amount'), 2)} · "
                       f"{o.get('status')}"} for o in found.recent_orders]
    items += [{"at": at("events", e), "kind": w["events"], "text": str(e.get("type") or "")}
              for e in found.recent_events]
    items += [{"at": at("tickets", t), "kind": w["tickets"],
               "text": joined(t, ("ticket_id", "category", "status", "priority"))}
              for t in found.tickets]
    items += [{"at": at("feedback", f), "kind": w["feedback"],
               "text": joined(f, ("nps", "csat", "comment"))} for f in found.feedback]
    for h in history:
        items.append({"at": h.get("entered_at"), "kind": w["segment_changes"],
                      "text": f"→ {h.get('segment_key')}"})
        if h.get("exited_at"):
            items.append({"at": h.get("exited_at"), "kind": w["segment_changes"],
                          "text": f"← {h.get('segment_key')}"})
    return [i for i in items if i["at"] is not None]


def _value_changes(history: list[dict[str, Any]], view: View | None,
                   lang: str) -> list[dict[str, Any]]:
    """Timeline items for tier and lifecycle changes between consecutive snapshots."""
    w = i18n.table(lang)
    items = []
    for before, after in zip(history, history[1:], strict=False):
        if before["tier"] != after["tier"]:
            name = view.tier_label if view else (lambda t, _lang: str(t))
            items.append({"at": after["as_of"], "kind": w["tier_change"],
                          "text": f"{name(before['tier'], lang)} → {name(after['tier'], lang)}"})
        if before["lifecycle"] != after["lifecycle"]:
            items.append({"at": after["as_of"], "kind": w["stage_change"],
                          "text": f"{View.stage_label(before['lifecycle'], lang)} → "
                                  f"{View.stage_label(after['lifecycle'], lang)}"})
    return items


# -- actions, review, imports --------------------------------------------------------------


@router.get("/actions", response_class=HTMLResponse)
def actions(request: Request) -> HTMLResponse:
    from tierwise.actions import definitions as automations
    from tierwise.actions import dispatch, tasks

    principal = viewer(request, "segments:read")
    ws = workspace(request)
    status = request.query_params.get("status") or None
    if status not in (None, "pending", "delivered", "dead", "held_out", "suppressed"):
        status = None
    with ws.control.read() as conn:
        triggers = list(automations.all_of(conn, "trigger").values())
        playbooks = list(automations.all_of(conn, "playbook").values())
    deliveries = dispatch.deliveries(ws, status=status, limit=100, newest=True,
                                     replies=principal.can("users:admin"))[::-1]
    open_tasks = tasks.listing(ws, status="open", limit=500) if principal.can(
        "customers:read") else []
    by_owner: dict[str, list[dict[str, Any]]] = {}
    for t in open_tasks:
        by_owner.setdefault(t.get("owner") or "—", []).append(t)
    return render(request, principal, "actions.html", "actions", triggers=triggers,
                  playbooks=playbooks, deliveries=deliveries,
                  summary=dispatch.summary(ws), status=status or "", tasks_by_owner=by_owner,
                  can_run=principal.can("actions:run"))


@router.get("/review", response_class=HTMLResponse)
def review_page(request: Request) -> HTMLResponse:
    from tierwise.segments import definitions as defs
    from tierwise.services import review

    principal = viewer(request, "values:read")
    view = _view(request)
    period = request.query_params.get("period") or review.last_full_quarter(
        view.as_of if view else None)
    segment_key = request.query_params.get("segment") or None
    lang = _lang(request)
    keys = sorted(defs.applied(workspace(request)))
    try:
        found = review.cached_review(workspace(request), period, segment_key)
    except TierwiseError as exc:
        return render(request, principal, "review.html", "review", period=period, error=str(exc),
                      result=None, figures={}, segment=segment_key or "", segment_keys=keys)
    w = i18n.table(lang)
    label = (lambda t: view.tier_label(t, lang)) if view and found.grouping == "tier" else str
    figures = {"kpi": charts.bars(w["revenue"], [label(g["group"]) for g in found.groups], [
        (found.previous.name, [round(g["before"]["revenue"], 2) for g in found.groups]),
        (found.period.name, [round(g["now"]["revenue"], 2) for g in found.groups])])}
    if found.migration:
        figures["migration"] = charts.sankey(
            w["migration"], [(str(m["from"] or "—"), str(m["to"] or "—"), m["customers"])
                             for m in found.migration if m["customers"]],
            found.previous.name, found.period.name)
    return render(request, principal, "review.html", "review", period=period, error=None,
                  result=found, figures=figures, label=label, segment=segment_key or "",
                  segment_keys=keys)


@router.get("/review/report.{fmt}")
def review_report(fmt: str, request: Request) -> Response:
    from tierwise.services import review
    from tierwise.web import report

    viewer(request, "values:read")
    if fmt not in ("html", "pdf"):
        raise Problem(404, "reports are html or pdf")
    view = _view(request)
    period = request.query_params.get("period") or review.last_full_quarter(
        view.as_of if view else None)
    ws, lang = workspace(request), _lang(request)
    try:
        found = review.cached_review(ws, period, request.query_params.get("segment") or None)
    except TierwiseError as exc:
        raise Problem(422, str(exc)) from None
    name = f"tierwise-review-{found.period.name}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if fmt == "html":
        return HTMLResponse(report.html(ws, found, lang), headers=headers)
    return Response(report.pdf(ws, found, lang), media_type="application/pdf", headers=headers)


@router.get("/imports", response_class=HTMLResponse)
def imports_page(request: Request) -> HTMLResponse:
    from tierwise.definitions.schemas import TABLES
    from tierwise.store import import_log
    from tierwise.store import jobs as job_store

    principal = viewer(request, "customers:read")
    ws = workspace(request)
    with ws.control.read() as conn:
        past = import_log.recent(conn, 30)
        recent_jobs = job_store.recent(conn, 10, kind="import")
        asked = _int(request.query_params.get("job"))
        job = job_store.get(conn, asked, kind="import") if asked else None
    finished = None
    if job is not None:
        from tierwise.web.jobs import rejects_path

        finished = {**job, "rejects": rejects_path(ws, job["job_id"]).exists()}
    return render(request, principal, "imports.html", "imports", tables=list(TABLES),
                  past=past, jobs=recent_jobs, finished=finished,
                  can_write=principal.can("imports:write"))


@router.post("/dashboard/imports/inspect")
async def inspect_upload(request: Request, file: UploadFile | None = File(None),
                         upload_id: str | None = Form(None), table: str = Form(...),
                         principal: Principal = require("imports:write")) -> dict[str, Any]:
    """The columns of an uploaded file, a sample of rows and the suggested mapping. The
    file is held (``api.uploads``): the answer's ``upload_id`` stands for it in a second
    inspection (another table) and in the import, so the browser sends it once."""
    from tierwise.dashboard.plans import inspect_file
    from tierwise.web import uploads
    from tierwise.web.uploads import save_upload

    root = workspace(request).root
    uploads.one_of(file, upload_id)
    if file is not None:
        saved = await save_upload(file)
        upload_id = uploads.hold(root, principal.actor, saved, file.filename or saved.name)
    assert upload_id is not None
    path, sent_as = uploads.find(root, principal.actor, upload_id)
    try:
        found = inspect_file(path, sent_as, table)
    except TierwiseError as exc:
        raise Problem(422, str(exc)) from None
    return {**found, "upload_id": upload_id}


@router.get("/lang/{code}")
def switch_language(code: str, request: Request, next: str = "/") -> RedirectResponse:  # noqa: A002
    from tierwise.web.auth import safe_next

    target = safe_next(next if next != "/docs" else "/")
    response = RedirectResponse(target, status_code=303)
    if code in i18n.LANGUAGES:
        response.set_cookie(i18n.LANG_COOKIE, code, samesite="strict", max_age=365 * 86400,
                            secure=request.url.scheme == "https",
                            path="/")
    return response


def install(app: FastAPI) -> None:
    """Add the pages, the static files and the sign-in redirect to an app."""

    async def to_sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignIn)
        return RedirectResponse(f"/login?next={quote(exc.target, safe='/')}", status_code=303)

    app.add_exception_handler(SignIn, to_sign_in)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return RedirectResponse("/static/favicon.svg", status_code=308)

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    app.include_router(router)
