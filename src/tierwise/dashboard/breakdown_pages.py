"""Customers side by side by a dimension (分组对比): the overview's figures per tier,
lifecycle stage, RFM segment, churn risk, city, province, country, industry, company size,
channel, owner, gender or tag, narrowed by any of the same; every bar and every row links
to the customers behind it (``services.breakdowns``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tierwise.dashboard import charts
from tierwise.dashboard.customer_pages import customer_filters
from tierwise.dashboard.page import customers_url, language_of, render, view_of, viewer
from tierwise.errors import TierwiseError, say
from tierwise.segments import catalog as defs
from tierwise.segments.vocabulary import vocabulary
from tierwise.services.breakdowns import (
    DIMENSIONS,
    SEGMENT_DIMENSION,
    attribute_keys,
    by_dimension,
)
from tierwise.store.customers import attribute_key
from tierwise.web import i18n
from tierwise.web.auth import workspace
from tierwise.web.problems import Problem

router = APIRouter(include_in_schema=False)
#: Groups drawn in the charts (the table lists them all).
CHART_GROUPS = 20


@router.get("/breakdown", response_class=HTMLResponse)
def breakdown(request: Request) -> HTMLResponse:
    principal = viewer(request, "values:read")
    lang = language_of(request)
    values, fields = customer_filters(request, lang, "/breakdown", ("by", "period", "lang"))
    period = request.query_params.get("period") or None
    by = request.query_params.get("by") or "tier"
    attributes = attribute_keys(workspace(request))
    if by not in DIMENSIONS and by not in attributes:
        listed = ", ".join([*DIMENSIONS, *attributes])
        raise Problem(400, say(f"by={by!r}: expected one of {listed}",
                               f"by={by!r}：应为 {listed} 之一"))
    view = view_of(request)
    if view is None:
        return render(request, principal, "empty.html", "breakdown")
    try:
        found = by_dimension(workspace(request), view.snapshot, by, values,
                             {k: v for k, v in fields.items() if k != "segment"}, lang,
                             fields.get("segment"), period)
    except TierwiseError as exc:
        raise Problem(400, str(exc)) from None
    words = vocabulary(workspace(request), lang)
    w = i18n.table(lang)
    kept = {**values, **fields}

    segment_names = defs.names_in(workspace(request), lang) if by == SEGMENT_DIMENSION \
        else {}

    def label(value: Any) -> str:
        if value is None:
            return w["no_value"]
        if by == SEGMENT_DIMENSION:
            return segment_names.get(value, value)
        return str(value) if attribute_key(by) else words.column_label(by, value, lang)

    def link(value: Any) -> str | None:
        if by == SEGMENT_DIMENSION and value is None:
            return None  # "in no segment" is no filter of the customer list
        return customers_url({**kept, by: value})

    groups = [{**g, "label": label(g["value"]), "link": link(g["value"])}
              for g in found["groups"]]
    shown = groups[:CHART_GROUPS]
    names = [g["label"] for g in shown]
    figures = {
        "customers": charts.bars(w["customers"], names,
                                 [(w["customers"], [g["customers"] for g in shown])]),
        "revenue": charts.bars(w["revenue"], names,
                               [(w["revenue"], [round(g["revenue"], 2) for g in shown])]),
    }
    return render(request, principal, "breakdown.html", "breakdown", view=view, by=by,
                  dimensions=[*DIMENSIONS, *attributes], groups=groups, total=found["total"],
                  figures=figures, links=[g["link"] for g in shown],
                  filters={k: v if attribute_key(k) else words.column_label(k, v, lang)
                           for k, v in kept.items()},
                  kept=kept, more=len(groups) > CHART_GROUPS, period=period or "",
                  with_period={**kept, "period": period} if period else kept)
