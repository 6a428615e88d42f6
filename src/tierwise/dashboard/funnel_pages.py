"""The funnel from marketing to sales to service (``services.funnel``): leads of a period,
qualified, first order, repeat — or opportunity, won, renewal — overall, per tier,
industry, owner or channel, over recent periods, and the customers behind every number."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tierwise.dashboard import charts
from tierwise.dashboard.page import language_of, render, view_of, viewer
from tierwise.errors import TierwiseError
from tierwise.segments import catalog as defs
from tierwise.segments.vocabulary import vocabulary
from tierwise.services import funnel as funnels
from tierwise.services.customers import search
from tierwise.services.review import last_full_quarter
from tierwise.web import i18n
from tierwise.web.auth import workspace
from tierwise.web.problems import Problem

router = APIRouter(include_in_schema=False)
PAGE = 50


def step_url(period: str, step: str, tier: str | None = None,
             segment: str | None = None, flow: str | None = None, by: str | None = None,
             group: str | None = None) -> str:
    """The page listing the leads of ``period`` who reached ``step`` (of ``flow``; with
    ``by`` and ``group``, of that group only — ``tier`` is a tier's)."""
    query = {"period": period, "step": step, "tier": tier, "segment": segment,
             "flow": None if flow == "orders" else flow, "by": by if group else None,
             "group": group}
    return "/funnel/customers?" + urlencode({k: v for k, v in query.items() if v})


def _asked(request: Request, extra: tuple[str, ...]) -> dict[str, str | None]:
    """The page's query (its parameters are checked by ``viewer``, ``PAGE_QUERY``)."""
    params = request.query_params
    view = view_of(request)
    return {"period": params.get("period") or last_full_quarter(view.as_of if view else None),
            "by": params.get("by") or None, "segment": params.get("segment") or None,
            "flow": params.get("flow") or "orders",
            **{k: params.get(k) or None for k in extra}}


@router.get("/funnel", response_class=HTMLResponse)
def funnel_page(request: Request) -> HTMLResponse:
    principal = viewer(request, "values:read")
    asked = _asked(request, ())
    period, segment, flow = str(asked["period"]), asked["segment"], str(asked["flow"])
    ws, lang = workspace(request), language_of(request)
    try:
        found = funnels.cached_funnel(ws, period, asked["by"], segment, flow)
        recent = funnels.cached_trend(ws, found.period.name, segment=segment, flow=flow)
    except TierwiseError as exc:
        raise Problem(400, str(exc)) from None
    w = i18n.table(lang)
    name = found.period.name
    view = view_of(request)
    by = found.grouping
    label = (lambda t: view.tier_label(t, lang)) if view and by == "tier" else str
    figures = {"funnel": charts.funnel(w["funnel"], [(w[f"step_{s['step']}"], s["customers"])
                                                    for s in found.steps])}
    links = [step_url(name, s["step"], segment=segment, flow=flow) for s in found.steps]
    groups = [{**g, "label": label(g["group"]),
               "links": [step_url(name, s["step"], segment=segment, flow=flow, by=by,
                                  group=g["group"]) for s in g["steps"]]}
              for g in found.groups if g["group"] is not None]
    notes = []
    if found.partial:
        notes.append(w["funnel_partial"].format(until=f"{found.as_of:%Y-%m-%d %H:%M} UTC"))
    if not found.qualifying:
        notes.append(w["no_lead_scoring"])
    elif found.bought_unqualified and flow == "orders":
        notes.append(w["bought_unqualified"].format(n=f"{found.bought_unqualified:,}"))
    return render(request, principal, "funnel.html", "funnel", found=found, figures=figures,
                  links=links, groups=groups, recent=recent, notes=notes, period=name,
                  by=by or "", segment=segment or "", flow=flow, flows=funnels.FLOWS,
                  groupings=funnels.GROUPINGS, segment_names=defs.names_in(ws, lang),
                  step_url=step_url)


@router.get("/funnel/customers", response_class=HTMLResponse)
def funnel_customers(request: Request) -> HTMLResponse:
    """The leads of a period who reached a step (and, with ``tier``, are in that tier)."""
    principal = viewer(request, "values:read")
    asked = _asked(request, ("step", "tier", "after", "group"))
    step, after, flow = asked["step"], asked["after"], str(asked["flow"])
    if step is None:
        raise Problem(400, i18n.table(language_of(request))["funnel_step_needed"].format(
            steps=", ".join(funnels.FLOWS.get(flow, funnels.STEPS))))
    ws = workspace(request)
    try:
        words = vocabulary(ws, language_of(request))
        # a tier by its code or a label, in either language
        tier = asked["tier"] and words.column_code("tier", asked["tier"])
        group = asked["group"]
        if group is not None and asked["by"] == "tier":
            group = words.column_code("tier", group)
        ids = funnels.cached_customers_at(ws, str(asked["period"]), step, tier, asked["segment"],
                                          flow=flow, by=asked["by"], group=group)
    except TierwiseError as exc:
        raise Problem(400, str(exc)) from None
    start = 0
    if after:
        from bisect import bisect_right

        start = bisect_right(ids, after)
    chosen = ids[start:start + PAGE]
    rows, _ = search(ws, principal, ids=chosen, limit=PAGE) if chosen else ([], None)
    kept: dict[str, Any] = {k: v for k, v in asked.items() if v and k != "after"
                            and (k != "by" or asked["group"])}
    return render(request, principal, "funnel_customers.html", "funnel", items=rows,
                  total=len(ids), step=step, tier=asked["tier"], period=asked["period"],
                  segment=asked["segment"], kept=kept, flow=flow, by=asked["by"],
                  group=asked["group"],
                  next_after=chosen[-1] if start + PAGE < len(ids) else None)
