"""Insights: clustering, the churn model and lookalikes as jobs; patterns and uplift."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, StrictBool, StrictInt

from tierwise.definitions.json_values import jsonable
from tierwise.definitions.roles import Principal
from tierwise.insights import patterns, satisfaction
from tierwise.web.auth import require, workspace
from tierwise.web.fields import Instant
from tierwise.web.i18n import language
from tierwise.web.jobs import runner
from tierwise.web.problems import RESPONSES

router = APIRouter(prefix="/v1/insights", tags=["insights"], responses=RESPONSES)


Group = Literal["rfm", "value", "engagement", "categories", "firmographics"]
DEFAULT_GROUPS: list[Group] = ["rfm", "value", "engagement"]


class ClustersIn(BaseModel):
    features: list[Group] = Field(default_factory=lambda: list(DEFAULT_GROUPS), min_length=1)
    k: StrictInt | None = Field(None, ge=2, le=20)
    method: Literal["kmeans", "minibatch", "gmm"] = "kmeans"
    criterion: Literal["silhouette", "bic"] = "silhouette"
    save_prefix: str | None = Field(None, pattern="^[a-z][a-z0-9_]{0,40}$")


class ChurnIn(BaseModel):
    horizon_days: StrictInt = Field(90, ge=7, le=730)
    test_horizon_days: StrictInt | None = Field(None, ge=7, le=730)
    save: StrictBool = False


class LookalikesIn(BaseModel):
    seed: str = Field("tier:A", pattern="^(tier|segment):[A-Za-z0-9_]{1,64}$")
    top: StrictInt = Field(100, ge=1, le=10_000)
    save: StrictBool = False


def _job(request: Request, principal: Principal, kind: str, params: dict[str, Any],
         work: Any) -> dict[str, Any]:
    job_id = runner(request).submit(kind, params, principal.actor, work)
    return {"job_id": job_id, "status_url": f"/v1/jobs/{job_id}"}


@router.post("/clusters", status_code=202, summary="Cluster the buyers (a job); optionally "
             "save each cluster's rule as a segment")
def clusters(body: ClustersIn, request: Request,
             principal: Principal = require("values:write")) -> dict[str, Any]:
    from tierwise.insights.clustering import cluster_workspace, save_as_segments

    ws = workspace(request)

    def work(job_id: int, progress: Any) -> dict[str, Any]:
        result = cluster_workspace(ws, list(body.features), body.k, body.method,
                                   criterion=body.criterion)
        saved = save_as_segments(ws, result, body.save_prefix) if body.save_prefix else []
        return {"algorithm": result.algorithm, "k": result.k, "curve": result.curve,
                "clusters": [asdict(c) for c in result.clusters], "saved_segments": saved}

    return _job(request, principal, "clusters", body.model_dump(), work)


@router.post("/churn", status_code=202, summary="Train and test the churn model (a job)")
def churn_model(body: ChurnIn, request: Request,
                principal: Principal = require("values:write")) -> dict[str, Any]:
    from tierwise.insights import churn

    ws = workspace(request)

    def work(job_id: int, progress: Any) -> dict[str, Any]:
        report, _ = churn.evaluate(ws, body.horizon_days,
                                   test_horizon_days=body.test_horizon_days)
        out = vars(report)
        if body.save:
            now, risk, _ = churn.score_now(ws, body.horizon_days)
            out["saved"] = churn.save_to_snapshot(ws, now.customer_ids, risk)
        return out

    return _job(request, principal, "churn", body.model_dump(), work)


@router.post("/lookalikes", status_code=202, summary="Score prospects by resemblance to a "
             "seed group (a job)")
def lookalikes(body: LookalikesIn, request: Request,
               principal: Principal = require("values:write")) -> dict[str, Any]:
    from tierwise.insights.lookalike import score

    ws = workspace(request)

    def work(job_id: int, progress: Any) -> dict[str, Any]:
        result = score(ws, body.seed)
        saved = None
        if body.save:
            from tierwise.models.compute import set_snapshot_column

            saved = set_snapshot_column(ws, "lookalike_score", result.customer_ids,
                                        result.scores.tolist())
        return {"saved": saved, "seed": result.seed, "seed_size": result.seed_size,
                "buyers": result.buyers,
                "cv_auc": result.cv_auc, "prospects": len(result.customer_ids),
                "top": [{"customer_id": c, "lookalike_score": float(v)} for c, v in
                        list(zip(result.customer_ids, result.scores, strict=True))[:body.top]]}

    return _job(request, principal, "lookalikes", body.model_dump(), work)


@router.get("/patterns", summary="Category affinity, purchase times and association rules")
def behaviour(request: Request, segment: str | None = Query(None, max_length=128),
              item: Literal["category", "product_id"] = Query("category"),
              min_support: float = Query(0.02, gt=0, le=1),
              principal: Principal = require("values:read")) -> dict[str, Any]:
    ws = workspace(request)
    return jsonable({"category_affinity": patterns.category_affinity(ws, segment),
                     "purchase_times": patterns.purchase_times(ws, segment),
                     "association_rules": patterns.association_rules(
                         ws, segment, item, min_support)[:100]})  # type: ignore[no-any-return]


@router.get("/satisfaction", summary="NPS and CSAT from feedback, overall and by a dimension")
def satisfaction_of(request: Request,
                    by: Literal["tier", "lifecycle", "rfm_segment", "churn_risk", "city",
                                "province", "country", "industry", "company_size", "channel",
                                "owner", "gender"] | None = Query(None, description=(
                                    "Break the figures down by this dimension.")),
                    segment: str | None = Query(None, description=(
                        "Only the members of this segment at that instant.")),
                    as_of: Instant | None = Query(None, description=(
                        "Default: the latest snapshot's instant (as the dashboard).")),
                    principal: Principal = require("values:read")) -> dict[str, Any]:
    ws = workspace(request)
    found = satisfaction.satisfaction(ws, as_of or satisfaction.default_as_of(ws), by, segment)
    return jsonable(satisfaction.labelled(ws, found, language(request, ws.config.locale)))  # type: ignore[no-any-return]


@router.get("/satisfaction/trend",
            summary="NPS and CSAT of the answers given in each month (the last one partial)")
def satisfaction_trend(request: Request,
                       months: int = Query(satisfaction.MONTHS, ge=1, le=120),
                       segment: str | None = Query(None, description=(
                           "Only the members of this segment at the end.")),
                       until: Instant | None = Query(None, description=(
                           "The end of the last month counted (default: the latest "
                           "snapshot's instant, as the dashboard).")),
                       principal: Principal = require("values:read")) -> dict[str, Any]:
    ws = workspace(request)
    end = until or satisfaction.default_as_of(ws)
    return jsonable({"until": end, "segment": segment,  # type: ignore[no-any-return]
                     "months": satisfaction.trend(ws, end, months, segment)})


@router.get("/affinity/{customer_id}",
            summary="One customer's category affinity: share of spend and lift vs all buyers")
def customer_affinity(customer_id: str, request: Request,
                      principal: Principal = require("values:read")) -> list[dict[str, Any]]:
    rows = patterns.category_affinity(workspace(request), customer_id=customer_id)
    return [jsonable(r) for r in rows]


@router.get("/uplift", summary="Treated vs holdout: repurchase, retention, revenue (95% CI)")
def uplift(request: Request, treated: str = Query(..., max_length=128),
           holdout: str = Query(..., max_length=128), since: Instant = Query(...),
           days: int = Query(30, ge=1, le=730),
           principal: Principal = require("values:read")) -> list[dict[str, Any]]:
    from tierwise.insights.effectiveness import uplift as measure
    from tierwise.segments.membership import members_at

    ws = workspace(request)
    effects = measure(ws, members_at(ws, treated), members_at(ws, holdout), since, days)
    return [jsonable({**asdict(e), "significant": e.significant}) for e in effects]


@router.get("/uplift/action", summary="A trigger's or playbook's actions vs its holdout group")
def action_uplift(request: Request,
                  source: str = Query(..., max_length=160, pattern="^(trigger|playbook):",
                                      description="trigger:KEY or playbook:KEY"),
                  days: int = Query(30, ge=1, le=730),
                  principal: Principal = require("values:read")) -> dict[str, Any]:
    from tierwise.insights.effectiveness import action_uplift as measure

    found = measure(workspace(request), source, days)
    return {**{k: v for k, v in asdict(found).items() if k != "effects"},
            "effects": [jsonable({**asdict(e), "significant": e.significant})
                        for e in found.effects]}
