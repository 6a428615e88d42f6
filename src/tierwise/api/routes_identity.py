"""Identity resolution: match records against customers, the duplicate review queue,
merges and their undo."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field, StrictBool, StrictFloat

from tierwise.definitions.json_values import jsonable
from tierwise.definitions.roles import Principal
from tierwise.errors import say
from tierwise.identity import review
from tierwise.identity.arrivals import score_records
from tierwise.identity.match import explain, find_duplicates
from tierwise.identity.merge import merge, merges_of, undo
from tierwise.web.auth import record, require, workspace
from tierwise.web.jobs import runner
from tierwise.web.problems import MAX_ID, RESPONSES, Problem

router = APIRouter(prefix="/v1", tags=["identity"], responses=RESPONSES)
Id = Annotated[int, Path(ge=1, le=MAX_ID)]


class Records(BaseModel):
    customers: list[dict[str, Any]] = Field(min_length=1, max_length=100)


class ScanIn(BaseModel):
    lower: StrictFloat = Field(review.LOWER, gt=0, le=1)
    upper: StrictFloat = Field(review.UPPER, gt=0, le=1)
    retrain: StrictBool = False


class MergeIn(BaseModel):
    survivor_id: str = Field(min_length=1, max_length=128)
    merged_ids: list[str] = Field(min_length=1, max_length=100)


class AcceptIn(BaseModel):
    survivor_id: str | None = Field(None, max_length=128)


@router.post("/customers/match", summary="Which existing customers each record may be")
def match_records(body: Records, request: Request,
                  principal: Principal = require("pii:read")) -> list[list[dict[str, Any]]]:
    """Nothing is saved. Candidates share an e-mail, phone or name; the saved model (trained
    by the first duplicate scan) scores them. Needs ``pii:read``: an answer tells whether a
    person with that e-mail or phone is a customer."""
    return score_records(workspace(request), body.customers)


@router.post("/duplicates/scan", status_code=202, summary="Find duplicates (a job): merge "
             "pairs ≥ upper, queue pairs ≥ lower for review")
def scan(body: ScanIn, request: Request,
         principal: Principal = require("customers:write")) -> dict[str, Any]:
    ws = workspace(request)
    if body.lower > body.upper:
        raise Problem(422, say(f"lower ({body.lower}) must not exceed upper ({body.upper})",
                               f"lower（{body.lower}）不能大于 upper（{body.upper}）"))

    def work(job_id: int, progress: Any) -> dict[str, Any]:
        pairs, reused = find_duplicates(ws, body.lower, body.retrain)
        result = review.queue(ws, pairs, actor=principal.actor, upper=body.upper,
                              lower=body.lower)
        return {"pairs": pairs.num_rows, "merged": len(result.merged),
                "queued": result.queued, "seen_before": result.known, "model_reused": reused}

    job_id = runner(request).submit("duplicates", body.model_dump(), principal.actor, work)
    return {"job_id": job_id, "status_url": f"/v1/jobs/{job_id}"}


@router.get("/duplicates", summary="The review queue (or decided pairs)")
def pairs(request: Request, status: str = Query("pending", pattern="^(pending|merged|"
                                                  "rejected)$"),
          limit: int = Query(100, ge=1, le=1000),
          principal: Principal = require("customers:read")) -> list[dict[str, Any]]:
    return [jsonable(p) for p in review.pending(workspace(request), limit, status)]


@router.get("/duplicates/explain", summary="Why two customers may or may not be the same")
def explain_pair(request: Request,
                 left: str = Query(min_length=1, max_length=128),
                 right: str = Query(min_length=1, max_length=128),
                 principal: Principal = require("customers:read")) -> dict[str, Any]:
    """The saved model's verdict on two customers: the prior, each field's match weight
    (log2 Bayes factor; > 0 speaks for the same customer) with the level of agreement it
    reached and the part that comes from how rare the agreeing value is, the total and the
    probability. No field values are returned: read the records through
    ``/v1/customers/{id}``, masked for your role."""
    return jsonable(explain(workspace(request), left, right))  # type: ignore[no-any-return]


@router.post("/duplicates/{pair_id}/accept", summary="Merge a pending pair")
def accept(pair_id: Id, body: AcceptIn, request: Request,
           principal: Principal = require("customers:write")) -> dict[str, Any]:
    m = review.accept(workspace(request), pair_id, actor=principal.actor,
                      survivor=body.survivor_id)
    record(request, principal, "merge", f"customer:{m.survivor_id}",
         {"merge_id": m.merge_id, "merged": m.merged_ids, "pair": pair_id})
    return jsonable(vars(m))  # type: ignore[no-any-return]


@router.post("/duplicates/{pair_id}/reject", status_code=204,
             summary="Not the same customer (not proposed again)")
def reject(pair_id: Id, request: Request,
           principal: Principal = require("customers:write")) -> None:
    review.reject(workspace(request), pair_id, actor=principal.actor)


@router.get("/merges", summary="Recent merges")
def list_merges(request: Request, limit: int = Query(100, ge=1, le=1000),
                principal: Principal = require("customers:read")) -> list[dict[str, Any]]:
    return [jsonable(m) for m in merges_of(workspace(request), limit)]


@router.post("/merges", status_code=201, summary="Merge customers into a survivor")
def create_merge(body: MergeIn, request: Request,
                 principal: Principal = require("customers:write")) -> dict[str, Any]:
    m = merge(workspace(request), body.survivor_id, body.merged_ids, actor=principal.actor)
    record(request, principal, "merge", f"customer:{m.survivor_id}",
         {"merge_id": m.merge_id, "merged": m.merged_ids, "reason": "manual"})
    return jsonable(vars(m))  # type: ignore[no-any-return]


@router.delete("/merges/{merge_id}", summary="Undo a merge")
def undo_merge(merge_id: Id, request: Request,
               principal: Principal = require("customers:write")) -> dict[str, Any]:
    m = undo(workspace(request), merge_id, actor=principal.actor)
    record(request, principal, "merge_undo", f"customer:{m.survivor_id}",
         {"merge_id": merge_id})
    return jsonable(vars(m))  # type: ignore[no-any-return]
