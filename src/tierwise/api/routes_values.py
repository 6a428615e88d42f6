"""Customer value: snapshots, computations, RFM / tier / lifecycle / CLV summaries, settings."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError

from tierwise.definitions import invalid
from tierwise.definitions.json_values import jsonable
from tierwise.definitions.roles import Principal
from tierwise.errors import say
from tierwise.models import compute
from tierwise.models.summaries import breakdown, clv_by_tier, moves, rf_grid, value_at_risk
from tierwise.models.tiers import TierSpec
from tierwise.segments.vocabulary import vocabulary
from tierwise.services import breakdowns
from tierwise.services import economics as economy
from tierwise.services import funnel as funnels
from tierwise.services import pipeline as pipelines
from tierwise.services.customers import attribute_filters
from tierwise.services.tiers import tier_plan
from tierwise.web.auth import require, workspace
from tierwise.web.fields import Instant
from tierwise.web.i18n import language
from tierwise.web.jobs import runner
from tierwise.web.problems import ATTRIBUTE_FILTERS, MAX_ID, RESPONSES, Problem
from tierwise.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["values"], responses=RESPONSES)


def _snapshot(ws: Workspace, snapshot_id: int | None) -> compute.Snapshot:
    return compute.load_snapshot(ws, snapshot_id)


@router.get("/snapshots", summary="Saved computations, oldest first")
def snapshots(request: Request, principal: Principal = require("values:read")
              ) -> list[dict[str, Any]]:
    return [jsonable({k: v for k, v in s.items() if k != "path"})
            for s in compute.list_snapshots(workspace(request))]


@router.post("/compute", status_code=202, summary="Compute RFM, tiers, lifecycle and CLV "
             "for every customer (a job)")
def run_compute(request: Request, principal: Principal = require("values:write")
                ) -> dict[str, Any]:
    ws = workspace(request)

    def work(job_id: int, progress: Any) -> dict[str, Any]:
        snap = compute.compute(ws)
        return {"snapshot_id": snap.snapshot_id, "customers": snap.table.num_rows,
                "seconds": snap.seconds, "as_of": snap.as_of}

    job_id = runner(request).submit("compute", {}, principal.actor, work)
    return {"job_id": job_id, "status_url": f"/v1/jobs/{job_id}"}


@router.get("/values/summary", summary="Tier, lifecycle, RFM-segment and churn-band mix with "
            "revenue shares, and the expected value at risk of churn")
def summary(request: Request, snapshot_id: int | None = Query(None, ge=1, le=MAX_ID),
            principal: Principal = require("values:read")) -> dict[str, Any]:
    snap = _snapshot(workspace(request), snapshot_id)
    table = snap.table
    out: dict[str, Any] = {"snapshot_id": snap.snapshot_id, "as_of": jsonable(snap.as_of),
                           "customers": table.num_rows,
                           "value_at_risk": value_at_risk(table)}
    for column in ("tier", "lifecycle", "rfm_segment", "churn_risk"):
        if column in table.column_names:
            out[column] = breakdown(table, column)
    return out


@router.get("/values/breakdown", summary="Customers side by side by a dimension: the overview's "
            "figures per group, after any filters",
            description="Besides the parameters below, ``attributes.KEY=value`` narrows by one "
            "key of the customers' attributes (not a sensitive one).",
            openapi_extra=ATTRIBUTE_FILTERS)
def breakdown_of(request: Request,
                 by: str = Query("tier", max_length=80, pattern=(
                     r"^(tier|lifecycle|rfm_segment|churn_risk|owner|city|province|country|"
                     r"industry|company_size|channel|gender|tag|segment|attributes\.[\w\-]{1,64})$"),
                     description=("segment: each applied segment's current members; "
                                  "attributes.KEY: one key of the customers' attributes.")),
                 tier: str | None = Query(None, max_length=128),
                 lifecycle: str | None = Query(None, max_length=128),
                 rfm_segment: str | None = Query(None, max_length=128),
                 churn_risk: str | None = Query(None, max_length=128),
                 owner: str | None = Query(None, max_length=256),
                 city: str | None = Query(None, max_length=256),
                 province: str | None = Query(None, max_length=256),
                 country: str | None = Query(None, max_length=256),
                 industry: str | None = Query(None, max_length=256),
                 company_size: str | None = Query(None, max_length=256),
                 channel: str | None = Query(None, max_length=256),
                 gender: str | None = Query(None, max_length=64),
                 tag: str | None = Query(None, max_length=256),
                 segment: str | None = Query(None, max_length=128, description=(
                     "Only the current members of this segment.")),
                 period: str | None = Query(None, max_length=32, description=(
                     "2026, 2026H2, 2026Q3, 2026-07 or 2026-07-01..2026-08-15: add each "
                     "group's purchases in it "
                     "and in the period before (the periodic review's figures).")),
                 snapshot_id: int | None = Query(None, ge=1, le=MAX_ID),
                 principal: Principal = require("values:read")) -> dict[str, Any]:
    ws = workspace(request)
    given = {"tier": tier, "lifecycle": lifecycle, "rfm_segment": rfm_segment,
             "churn_risk": churn_risk, "owner": owner, "city": city, "province": province,
             "country": country, "industry": industry, "company_size": company_size,
             "channel": channel, "gender": gender, "tag": tag}
    values = {k: v for k, v in given.items() if v and k in breakdowns.VALUE_DIMENSIONS}
    fields = {k: v for k, v in given.items() if v and k in breakdowns.FIELD_DIMENSIONS}
    fields.update(attribute_filters(ws, request.query_params.items()))
    found = breakdowns.by_dimension(ws, _snapshot(ws, snapshot_id), by, values, fields,
                                    language(request, ws.config.locale), segment, period)
    return jsonable(found)  # type: ignore[no-any-return]


def _funnel_json(found: funnels.Funnel) -> dict[str, Any]:
    return jsonable({"period": found.period.name, "flow": found.flow,  # type: ignore[no-any-return]
                     "start": found.period.start,
                     "end": found.period.end, "as_of": found.as_of, "partial": found.partial,
                     "qualifying": found.qualifying, "steps": found.steps,
                     "bought_unqualified": found.bought_unqualified, "by": found.grouping,
                     "segment": found.segment, "groups": found.groups})


@router.get("/values/funnel", summary=(
    "The funnel of a period's leads: qualified, first order, repeat — or opportunity, won, "
    "renewal (services.funnel)"))
def funnel(request: Request,
           period: str = Query(..., max_length=32, description="2026, 2026H2, 2026Q3, "
                               "2026-07 or 2026-07-01..2026-08-15: the period the leads "
                               "came in."),
           by: Literal["tier", "industry", "owner", "channel"] | None = Query(
               None, description="Also per tier, industry, owner or acquisition channel."),
           segment: str | None = Query(None, max_length=128, description=(
               "Only the members of this segment.")),
           trend: int = Query(0, ge=0, le=12, description=(
               "Also the steps of this many periods up to this one (0: none).")),
           flow: Literal["orders", "opportunities"] = Query("orders", description=(
               "orders: leads, qualified, first_order, repeat; opportunities: leads, "
               "qualified, opportunity, won, renewal.")),
           principal: Principal = require("values:read")) -> dict[str, Any]:
    ws = workspace(request)
    found = _funnel_json(funnels.cached_funnel(ws, period, by, segment, flow))
    if trend:
        found["trend"] = jsonable(funnels.cached_trend(ws, period, trend, segment, flow))
    return found


@router.get("/values/funnel/customers", summary="The leads of a period who reached a step")
def funnel_customers(request: Request,
                     period: str = Query(..., max_length=32),
                     step: Literal["leads", "qualified", "first_order", "repeat",
                                   "opportunity", "won", "renewal"] = Query(...),
                     tier: str | None = Query(None, max_length=128),
                     segment: str | None = Query(None, max_length=128),
                     after: str | None = Query(None, max_length=128),
                     limit: int = Query(100, ge=1, le=1000),
                     flow: Literal["orders", "opportunities"] = Query("orders"),
                     by: Literal["tier", "industry", "owner", "channel"] | None = Query(
                         None, description="With group: only the leads of that group."),
                     group: str | None = Query(None, max_length=256),
                     principal: Principal = require("values:read")) -> dict[str, Any]:
    ws = workspace(request)
    words = vocabulary(ws, language(request, ws.config.locale))
    code = words.column_code("tier", tier) if tier else None
    if group is not None and by == "tier":
        group = words.column_code("tier", group)
    ids = funnels.cached_customers_at(ws, period, step, code, segment, flow=flow, by=by,
                                      group=group)
    start = bisect_right(ids, after) if after else 0
    chosen = ids[start:start + limit]
    return {"total": len(ids), "customer_ids": chosen,
            "next_after": chosen[-1] if start + limit < len(ids) else None}


def _economics_json(found: economy.Economics) -> dict[str, Any]:
    return jsonable({"period": found.period.name, "start": found.period.start,  # type: ignore[no-any-return]
                     "end": found.period.end, "as_of": found.as_of, "partial": found.partial,
                     "currency": found.currency, "by": found.by, "segment": found.segment,
                     "totals": found.totals, "groups": found.groups,
                     "notes": [str(n) for n in found.notes]})


Grouping = Literal["tier", "lifecycle", "industry", "owner", "channel"]
Measure = Literal["revenue", "gross_margin", "acquisition_cost", "ticket_cost", "manager_cost",
                  "service_message_cost", "cost_to_serve", "marketing_cost",
                  "profit_contribution", "referral_value"]


@router.get("/values/economics", summary=(
    "Customer economics over a period: revenue, gross margin, acquisition cost, cost to "
    "serve, marketing cost, profit contribution and referral value, in total and per group "
    "(services.economics)"))
def economics_of(request: Request,
                 period: str = Query(..., max_length=32, description=(
                     "2026, 2026H2, 2026Q3, 2026-07 or 2026-07-01..2026-08-15.")),
                 by: Grouping | None = Query(None, description=(
                     "Also per tier, lifecycle stage, industry, owner or channel.")),
                 segment: str | None = Query(None, max_length=128),
                 principal: Principal = require("values:read")) -> dict[str, Any]:
    return _economics_json(economy.cached_economics(workspace(request), period, by, segment))


@router.get("/values/economics/customers", summary=(
    "The customers with their economics in a period, ordered by one measure"))
def economics_customers(request: Request,
                        period: str = Query(..., max_length=32),
                        order: Measure = Query("profit_contribution"),
                        ascending: bool = Query(False, description="Lowest first."),
                        by: Grouping | None = Query(None),
                        group: str | None = Query(None, max_length=256),
                        segment: str | None = Query(None, max_length=128),
                        limit: int = Query(50, ge=1, le=1000),
                        principal: Principal = require("values:read")) -> dict[str, Any]:
    ws = workspace(request)
    if group is not None and by == "tier":
        group = vocabulary(ws, language(request, ws.config.locale)).column_code("tier", group)
    total, rows = economy.cached_customers(ws, period, order, not ascending, by, group,
                                           segment, limit)
    return {"total": total, "customers": jsonable(rows)}


@router.get("/values/pipeline", summary=(
    "The sales pipeline: open opportunities per stage (amount, weighted amount, days in "
    "stage) and those won and lost in a period, per owner, tier or industry"))
def pipeline_of(request: Request,
                period: str = Query(..., max_length=32, description=(
                    "2026, 2026H2, 2026Q3, 2026-07 or 2026-07-01..2026-08-15: when the won "
                    "and lost ones closed.")),
                by: Literal["owner", "tier", "industry"] | None = Query(None),
                principal: Principal = require("values:read")) -> dict[str, Any]:
    found = pipelines.pipeline(workspace(request), period, by)
    return jsonable({"period": found.period.name, "as_of": found.as_of,  # type: ignore[no-any-return]
                     "stages": found.stages, "closed": found.closed, "by": found.by,
                     "groups": found.groups, "notes": [str(n) for n in found.notes]})


@router.get("/values/pipeline/opportunities", summary=(
    "The opportunities behind a number of the pipeline: open in a stage, or won / lost in "
    "the period"))
def pipeline_opportunities(request: Request,
                           period: str = Query(..., max_length=32),
                           stage: str = Query(..., max_length=64, description=(
                               "An open stage (its name or label), or won / lost.")),
                           by: Literal["owner", "tier", "industry"] | None = Query(None),
                           group: str | None = Query(None, max_length=256),
                           after: str | None = Query(None, max_length=128),
                           limit: int = Query(100, ge=1, le=1000),
                           principal: Principal = require("values:read")) -> dict[str, Any]:
    total, rows = pipelines.opportunities(workspace(request), period, stage, by, group, limit,
                                          after)
    return {"total": total, "opportunities": jsonable(rows),
            "next_after": rows[-1]["opportunity_id"] if rows and len(rows) == limit else None}


@router.get("/values/rfm/grid", summary="R × F grid: customers and revenue per cell")
def rfm_grid(request: Request, snapshot_id: int | None = Query(None, ge=1, le=MAX_ID),
             principal: Principal = require("values:read")) -> dict[str, Any]:
    snap = _snapshot(workspace(request), snapshot_id)
    return {"snapshot_id": snap.snapshot_id, "cells": rf_grid(snap.table)}


@router.get("/values/clv", summary="CLV distribution: total, mean and quantiles per tier")
def clv(request: Request, snapshot_id: int | None = Query(None, ge=1, le=MAX_ID),
        principal: Principal = require("values:read")) -> dict[str, Any]:
    snap = _snapshot(workspace(request), snapshot_id)
    t = snap.table
    if "clv" not in t.column_names:
        raise Problem(404, say("this snapshot has no CLV values", "这个快照没有 CLV 值"))
    out = clv_by_tier(t)
    return {"snapshot_id": snap.snapshot_id, "by_tier": jsonable(out)}


@router.get("/values/migration", summary="Tier migration between two snapshots")
def migration(request: Request, before: int = Query(..., ge=1, le=MAX_ID),
              after: int | None = Query(None, ge=1, le=MAX_ID),
              principal: Principal = require("values:read")) -> dict[str, Any]:
    ws = workspace(request)
    old, new = _snapshot(ws, before), _snapshot(ws, after)
    found = moves(old.table, new.table, "tier")
    return {"before": old.snapshot_id, "after": new.snapshot_id,
            "moves": found}


@router.get("/settings", summary="Current value settings (RFM, tiers, lifecycle, CLV, churn)")
def settings(request: Request, principal: Principal = require("values:read")
             ) -> dict[str, Any]:
    loaded = compute.load_settings(workspace(request))
    return {name: {"version": loaded.versions.get(name, 0),
                   "spec": getattr(loaded, name).model_dump(mode="json")}
            for name in compute.SETTINGS}


@router.put("/settings/{name}", summary="Save a new version of one value setting")
def save_settings(name: str, body: dict[str, Any], request: Request,
                  note: str | None = Query(None, max_length=500),
                  principal: Principal = require("values:write")) -> dict[str, Any]:
    if name not in compute.SETTINGS:
        raise Problem(404, say(f"no setting {name!r}; expected one of "
                               f"{', '.join(compute.SETTINGS)}",
                               f"没有设置 {name!r}：应为 {', '.join(compute.SETTINGS)} 之一"))
    model = compute.SETTINGS[name][2]
    try:
        spec = model.model_validate(body)
    except ValidationError as exc:
        raise Problem(422, str(invalid.problems(exc))) from None
    version = compute.save_setting(workspace(request), name, spec, note)
    return {"name": name, "version": version}


@router.post("/tiers/plan", summary="How many customers each tier would hold under a tier "
             "definition, and who moves (nothing saved)")
def tiers_plan(spec: TierSpec, request: Request,
               as_of: Instant | None = Query(None, description=(
                   "Plan on a computation for this instant instead of the latest snapshot.")),
               principal: Principal = require("values:read")) -> dict[str, Any]:
    ws = workspace(request)
    return jsonable(asdict(tier_plan(ws, spec, as_of=as_of)))  # type: ignore[no-any-return]
