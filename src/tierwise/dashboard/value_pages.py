"""The pages over the latest snapshot: overview, RFM, tiers, lifecycle, CLV."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tierwise.dashboard import charts
from tierwise.dashboard.data import View
from tierwise.dashboard.page import (
    ValuePage,
    customers_url,
    flow_links,
    int_param,
    render,
    value_page,
    view_of,
)
from tierwise.models import compute
from tierwise.models.tiers import METRICS as TIER_METRICS
from tierwise.web.auth import workspace

router = APIRouter(include_in_schema=False)
RISK_ORDER = ("high", "medium", "low", "unknown")
RISK_COLOURS = {"high": "#c92a2a", "medium": "#e67700", "low": "#2b8a3e", "unknown": "#868e96"}


# -- overview, RFM, tiers, lifecycle, CLV ------------------------------------------------


#: Promoters, passives, detractors.
NPS_COLOURS = ("#2b8a3e", "#868e96", "#c92a2a")


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
    happy = view.satisfaction("tier")
    groups = sorted(happy["groups"], key=lambda g: str(g["value"]))  # the chart's order
    if happy["respondents"]:
        satisfied = charts.bars(w["nps_by_tier"], [view.tier_label(g["value"], lang)
                                                   for g in groups],
                                [(w[f"nps_{c}"], [g[f"{c}s"] for g in groups])
                                 for c in ("promoter", "passive", "detractor")])
        for series, colour in zip(satisfied["series"], NPS_COLOURS, strict=True):
            series.update(stack="nps", itemStyle={"color": colour})
        figures["nps"] = satisfied
    months = view.satisfaction_trend()
    if any(m["respondents"] or m["rated"] for m in months):
        figures["nps-trend"] = charts.satisfaction_trend(w["nps_trend"], months, w)
    links = {  # each chart element opens the customers behind it
        "tier-mix": [customers_url({"tier": r["value"]}) for r in tiers],
        "risk": [customers_url({"churn_risk": r["value"]}) for r in risk],
        "stages": [customers_url({"lifecycle": s}) for s in view.stage_order()],
        "nps": [customers_url({"tier": g["value"]}) for g in groups],
        "trend": [customers_url({"bought": m["month"]}) for m in monthly],
        "nps-trend": [customers_url({"answered": m["month"]}) if m["respondents"] else None
                      for m in months],  # a month's NPS: the customers who gave a score
    }
    return render(request, principal, "overview.html", "overview", view=view,
                  kpis=view.kpis(), figures=figures, happy=happy, links=links)



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
    cells = [customers_url({"rfm_r": c["r"], "rfm_f": c["f"]}) for c in grid]
    return render(request, principal, "rfm.html", "rfm", view=view, segments=segments,
                  figures=figures, label=lambda s: view.rfm_label(s, lang), cells=cells,
                  segment_links=[customers_url({"rfm_segment": s["segment"]})
                                 for s in segments])


def _snapshot_pair(request: Request, view: View) -> tuple[list[dict[str, Any]], int | None,
                                                          int | None]:

    found = compute.list_snapshots(workspace(request))
    ids = [s["snapshot_id"] for s in found]
    after = int_param(request.query_params.get("after")) or view.snapshot.snapshot_id
    before = int_param(request.query_params.get("before"))
    if before not in ids:
        earlier = [i for i in ids if after is not None and i < after]
        before = earlier[-1] if earlier else None
    return found, before, after



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
    flows_to: list[str | None] = []
    if before is not None and after is not None and before != after:
        old, new = view_of(request, before), view_of(request, after)
        if old is not None and new is not None:
            flows = [m for m in new.moves_from(old, "tier") if m["customers"]]
            figures["migration"] = charts.sankey(
                w["migration"], [(str(m["from"] or "—"), str(m["to"] or "—"), m["customers"])
                                 for m in flows], f"#{before}", f"#{after}")
            flows_to = flow_links(flows, "tier", before,
                                  after == view.snapshot.snapshot_id)
    spec = json.dumps(view.settings.tiers.model_dump(mode="json"), ensure_ascii=False, indent=2)
    happy = {g["value"]: g for g in view.satisfaction("tier")["groups"]}
    return render(request, principal, "tiers.html", "tiers", view=view, rows=rows, happy=happy,
                  figures=figures, snapshots=snapshots, before=before, after=after, spec=spec,
                  links=[customers_url({"tier": r["value"]}) for r in rows],
                  flow_links=flows_to, pareto_links=[
                      customers_url({"top": n}) if (n := round(x * view.table.num_rows))
                      else None for x, _ in view.pareto()],
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
    flows_to: list[str | None] = []
    if before is not None:
        old = view_of(request, before)
        if old is not None:
            flows = [m for m in view.moves_from(old, "lifecycle") if m["customers"]]
            figures["flows"] = charts.sankey(
                w["stage_flows"], [(view.stage_label(m["from"], lang),
                                    view.stage_label(m["to"], lang), m["customers"])
                                   for m in flows], f"#{before}", f"#{after}")
            flows_to = flow_links(flows, "lifecycle", before, True)
    happy = {g["value"]: g for g in view.satisfaction("lifecycle")["groups"]}
    return render(request, principal, "lifecycle.html", "lifecycle", view=view, happy=happy,
                  flow_links=flows_to,
                  rows=[rows[s] for s in order], figures=figures,
                  links=[customers_url({"lifecycle": s}) for s in order],
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
                  tier_links=[customers_url({"tier": r["tier"]}) for r in by_tier],
                  band_links=[customers_url({"clv_band": i}) for i in range(len(histogram))],
                  at_risk=view.at_risk(lang), kpis=view.kpis(), figures=figures,
                  label=lambda t: view.tier_label(t, lang))
