"""The segment pages: the list, the builder (new and edit) and one segment with its members
and runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tierwise.dashboard import charts
from tierwise.dashboard.page import language_of, render, viewer
from tierwise.definitions import segment_fields as sf
from tierwise.definitions.personal_data import rule_as_shown
from tierwise.definitions.roles import Principal
from tierwise.errors import say
from tierwise.insights import satisfaction
from tierwise.segments import catalog as defs
from tierwise.segments.templates import described
from tierwise.services.customers import search
from tierwise.store import memberships, sizes
from tierwise.store.control import utcnow
from tierwise.web import i18n
from tierwise.web.auth import workspace
from tierwise.web.problems import Problem

router = APIRouter(include_in_schema=False)


# -- segments ------------------------------------------------------------------------------


@router.get("/segments", response_class=HTMLResponse)
def segments(request: Request) -> HTMLResponse:
    principal = viewer(request, "segments:read")
    ws, lang = workspace(request), language_of(request)
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
        items.append({"key": key, "name": d.name(lang),
                      "kind": d.kind, "status": d.status, "version": a.version,
                      "members": counts.get(key, 0),
                      "rule": rule_as_shown(principal, d.canonical().get("rule"),
                                            ws.personal_data) or "",
                      "last": last.get(key), "spark": charts.sparkline(trend.get(key, []))
                      if len(trend.get(key, [])) > 1 else None})
    return render(request, principal, "segments.html", "segments", items=items,
                  can_write=principal.can("segments:write"))


#: What the builder offers on the left of a condition (each one a valid operand: tested).
SUGGESTIONS = sorted([*sf.CUSTOMER_FIELDS, *sf.COMPUTED_FIELDS, *sf.LEAD_FIELDS,
                      *sf.LIVE_FIELDS]) + [
    "COUNT(orders)", "COUNT(orders, LAST 30d)", "COUNT(orders, LAST 90d)",
    "SUM(orders.amount)", "SUM(orders.amount, LAST 365d)", "AVG(orders.amount)",
    "DAYS_SINCE_LAST(orders)", "COUNT(events, LAST 7d)", "COUNT(tickets, LAST 30d)",
    "AVG(feedback.csat)", "LATEST(feedback.nps)", "MONTH(birth_date)",
    "DAYS_UNTIL_ANNIVERSARY(birth_date)", "DAYS_UNTIL_ANNIVERSARY(signup_at)",
    "DAYS_UNTIL_HOLIDAY('春节')", "IN_SEGMENT", "NOT IN_SEGMENT"]


def _builder(request: Request, principal: Principal, definition: Any | None) -> HTMLResponse:
    return render(request, principal, "builder.html", "segments", definition=definition,
                  suggestions=SUGGESTIONS,
                  operators=["=", "!=", ">", ">=", "<", "<=", "IN", "NOT IN", "BETWEEN",
                             "NOT BETWEEN", "CONTAINS", "NOT CONTAINS", "IS NULL",
                             "IS NOT NULL"])


@router.get("/segments/new", response_class=HTMLResponse)
def new_segment(request: Request) -> HTMLResponse:
    return _builder(request, viewer(request, "segments:write"), None)


@router.get("/segments/{key}/edit", response_class=HTMLResponse)
def edit_segment(key: str, request: Request) -> HTMLResponse:
    principal = viewer(request, "segments:write")
    found = defs.applied(workspace(request)).get(key)
    if found is None:
        raise Problem(404, say(f"no segment {key!r}", f"没有分群 {key!r}"))
    if found.definition.kind != "dynamic":
        raise Problem(409, say(f"segment {key!r} is a {found.definition.kind} list: change its "
                               f"members instead (POST /v1/segments/{key}/members)",
                               f"分群 {key!r} 是{found.definition.kind}名单：请改为修改它的成员"
                               f"（POST /v1/segments/{key}/members）"))
    return _builder(request, principal, found.definition)


@router.get("/segments/{key}", response_class=HTMLResponse)
def segment(key: str, request: Request) -> HTMLResponse:
    principal = viewer(request, "segments:read")
    ws, lang = workspace(request), language_of(request)
    found = defs.applied(ws).get(key)
    if found is None:
        raise Problem(404, say(f"no segment {key!r}", f"没有分群 {key!r}"))
    q = request.query_params.get("q") or None
    after = request.query_params.get("after") or None
    members, next_after = search(ws, principal, q=q, segment=key, after=after, limit=50)
    with ws.control.read() as conn:
        total = sizes.of(conn, [key])[key]
        history = memberships.history(conn, key, limit=50)
        runs = memberships.runs(conn, key, 20)
    d = found.definition
    shown = d.model_copy(update={"rule": rule_as_shown(principal, d.canonical().get("rule"),
                                                       ws.personal_data),
                                 "description": described(d, lang)})
    happy, figures = None, {}
    if principal.can("values:read"):  # the members' satisfaction, now and by month
        now = utcnow()
        happy = satisfaction.satisfaction(ws, now, segment=key)
        months = satisfaction.trend(ws, now, segment=key)
        if any(m["respondents"] or m["rated"] for m in months):
            w = i18n.table(lang)
            figures["nps-trend"] = charts.satisfaction_trend(w["nps_trend"], months, w)
    return render(request, principal, "segment.html", "segments", key=key, definition=shown,
                  name=d.name(lang), version=found.version, happy=happy, figures=figures,
                  total=total, members=members, next_after=next_after, q=q or "",
                  history=history, runs=runs, can_write=principal.can("segments:write"))
