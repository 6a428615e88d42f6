"""Customer economics (``services.economics``): the period's revenue, margin, costs, profit
contribution and referral value in total and per group, with the customers behind them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tierwise.dashboard.page import language_of, render, view_of, viewer
from tierwise.errors import TierwiseError
from tierwise.models.economics import MEASURES
from tierwise.segments import catalog as defs
from tierwise.services import economics as economy
from tierwise.services.customers import search
from tierwise.services.review import last_full_quarter
from tierwise.web.auth import workspace
from tierwise.web.problems import Problem

router = APIRouter(include_in_schema=False)
LISTED = 20


@router.get("/economics", response_class=HTMLResponse)
def economics_page(request: Request) -> HTMLResponse:
    principal = viewer(request, "values:read")
    params = request.query_params
    view = view_of(request)
    period = params.get("period") or last_full_quarter(view.as_of if view else None)
    by, segment = params.get("by") or None, params.get("segment") or None
    order = params.get("order") or "profit_contribution"
    ascending = params.get("ascending") in ("1", "true", "on")
    ws, lang = workspace(request), language_of(request)
    try:
        found = economy.cached_economics(ws, period, by, segment)
        total, rows = economy.cached_customers(ws, period, order, not ascending, None, None,
                                               segment, LISTED)
    except TierwiseError as exc:
        raise Problem(400, str(exc)) from None
    names = {c["customer_id"]: c for c in search(
        ws, principal, ids=[r["customer_id"] for r in rows], limit=LISTED)[0]} if rows else {}
    label = (lambda t: view.tier_label(t, lang)) if view and by == "tier" else (
        (lambda s: view.stage_label(s, lang)) if view and by == "lifecycle" else str)
    return render(request, principal, "economics.html", "economics", found=found,
                  measures=MEASURES, period=found.period.name, by=by or "",
                  segment=segment or "", order=order, ascending=ascending, rows=rows,
                  listed_total=total, names=names, groupings=economy.GROUPINGS,
                  group_label=label, notes=[str(n) for n in found.notes],
                  segment_names=defs.names_in(ws, lang))
