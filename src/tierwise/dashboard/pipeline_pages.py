"""The sales pipeline (``services.pipeline``): open opportunities per stage and those closed
in a period, per owner, tier or industry, and the opportunities behind every number."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tierwise.dashboard.page import language_of, render, view_of, viewer
from tierwise.errors import TierwiseError
from tierwise.segments.vocabulary import vocabulary
from tierwise.services import pipeline as pipelines
from tierwise.services.review import last_full_quarter
from tierwise.web.auth import workspace
from tierwise.web.problems import Problem

router = APIRouter(include_in_schema=False)
PAGE = 50


def list_url(period: str, stage: str, by: str | None = None, group: str | None = None) -> str:
    """The page listing the opportunities behind one number."""
    query = {"period": period, "stage": stage, "by": by if group else None, "group": group}
    return "/pipeline/opportunities?" + urlencode({k: v for k, v in query.items() if v})


def _period(request: Request) -> str:
    view = view_of(request)
    return request.query_params.get("period") or last_full_quarter(view.as_of if view else None)


@router.get("/pipeline", response_class=HTMLResponse)
def pipeline_page(request: Request) -> HTMLResponse:
    principal = viewer(request, "values:read")
    ws, lang = workspace(request), language_of(request)
    by = request.query_params.get("by") or None
    try:
        found = pipelines.pipeline(ws, _period(request), by)
    except TierwiseError as exc:
        raise Problem(400, str(exc)) from None
    words = vocabulary(ws, lang)
    view = view_of(request)
    label = (lambda t: view.tier_label(t, lang)) if view and by == "tier" else str
    return render(request, principal, "pipeline.html", "pipeline", found=found,
                  period=found.period.name, by=by or "", groupings=pipelines.GROUPINGS,
                  stage_name=lambda s: words.column_label("opportunities.stage", s, lang),
                  group_label=label, list_url=list_url, currency=ws.config.currency,
                  notes=[str(n) for n in found.notes])


@router.get("/pipeline/opportunities", response_class=HTMLResponse)
def pipeline_opportunities(request: Request) -> HTMLResponse:
    principal = viewer(request, "values:read")
    ws, lang = workspace(request), language_of(request)
    params = request.query_params
    stage = params.get("stage")
    if not stage:
        raise Problem(400, "stage: an open stage, won or lost")
    by, group, after = params.get("by") or None, params.get("group") or None, \
        params.get("after") or None
    period = _period(request)
    try:
        total, rows = pipelines.opportunities(ws, period, stage, by, group, PAGE, after)
    except TierwiseError as exc:
        raise Problem(400, str(exc)) from None
    words = vocabulary(ws, lang)
    kept = {k: v for k, v in {"period": period, "stage": stage, "by": by,
                              "group": group}.items() if v}
    return render(request, principal, "pipeline_opportunities.html", "pipeline", rows=rows,
                  total=total, stage=stage, period=period, group=group, by=by, kept=kept,
                  stage_name=lambda s: words.column_label("opportunities.stage", s, lang),
                  next_after=rows[-1]["opportunity_id"] if len(rows) == PAGE else None)
