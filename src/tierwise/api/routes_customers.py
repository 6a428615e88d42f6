"""Customers: search, create and update, the 360° profile, segments, contact preferences."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, StrictBool

from tierwise.definitions.json_values import jsonable
from tierwise.definitions.roles import Principal
from tierwise.errors import say, spoken
from tierwise.identity.arrivals import match_arrivals
from tierwise.ingest import imports
from tierwise.ingest.readers import RecordsSource
from tierwise.ingest.report import reject_report_path
from tierwise.security.consent import may_contact, set_preference
from tierwise.segments.membership import customer_segments
from tierwise.segments.vocabulary import vocabulary
from tierwise.services.customers import (
    attribute_filters,
    check_values,
    customer_profile,
    present_customer,
    present_profile,
    search,
    searched_by,
)
from tierwise.store import customers as customer_store
from tierwise.store import memberships
from tierwise.store.preferences import CHANNELS
from tierwise.web import i18n
from tierwise.web.auth import require, workspace
from tierwise.web.problems import ATTRIBUTE_FILTERS, RESPONSES, Problem
from tierwise.web.views import LatestValues, json_response

router = APIRouter(prefix="/v1/customers", tags=["customers"], responses=RESPONSES)
MAX_BATCH = 1_000


class CustomerPage(BaseModel):
    items: list[dict[str, Any]]
    next_after: str | None = Field(None, description="Pass as `after` for the next page.")
    searched_by: list[str] = Field(default_factory=list, description=(
        "What `q` was compared with: the id prefix always; name, e-mail and phone only for "
        "callers who may read PII (pii:read or pii:own)."))


class CustomerBatch(BaseModel):
    customers: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class ImportSummary(BaseModel):
    table: str
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    import_id: int | None = None
    cleaned: dict[str, int] = Field(default_factory=dict)
    extras: list[str] = Field(default_factory=list)
    #: What matching the written customers against the others did (customers only).
    matching: dict[str, Any] | None = None


class Preference(BaseModel):
    channel: str = Field("all", description=f"one of {', '.join(CHANNELS)}")
    consent: StrictBool | None = None
    unsubscribed: StrictBool | None = None


def _values(request: Request) -> LatestValues:
    cache: LatestValues = request.app.state.latest_values
    return cache


@router.get("", response_model=CustomerPage, summary="List and search customers",
            description="Besides the parameters below, ``attributes.KEY=value`` narrows by one "
            "key of the customers' attributes (not a sensitive one).",
            openapi_extra=ATTRIBUTE_FILTERS)
def list_customers(
    request: Request,
    q: str | None = Query(None, max_length=320, description=(
        "Customer id prefix, or an exact name, e-mail or phone (in any common format; only for "
    "callers who may read PII).")),
    owner: str | None = Query(None, max_length=200),
    city: str | None = Query(None, max_length=200),
    province: str | None = Query(None, max_length=200),
    country: str | None = Query(None, max_length=200),
    industry: str | None = Query(None, max_length=200),
    company_size: str | None = Query(None, max_length=200),
    channel: str | None = Query(None, max_length=200),
    gender: str | None = Query(None, max_length=32),
    account_id: str | None = Query(None, max_length=128, description=(
        "The contacts (people) of this account.")),
    role: str | None = Query(None, max_length=64, description=(
        "Contacts with this role: a code (decision_maker, influencer, user, purchasing, "
        "finance, technical, other) or its label (决策者, Decision maker…).")),
    tag: str | None = Query(None, max_length=200, description="Customers with this tag."),
    segment: str | None = Query(None, max_length=128, description="Current members only."),
    after: str | None = Query(None, max_length=128, description="Cursor: the last id seen."),
    limit: int = Query(50, ge=1, le=500),
    principal: Principal = require("customers:read"),
) -> Response:
    given = {"province": province, "country": country, "industry": industry,
             "company_size": company_size, "channel": channel, "gender": gender, "tag": tag,
             "account_id": account_id, "role": role}
    where = {k: v for k, v in given.items() if v}
    where.update(attribute_filters(workspace(request), request.query_params.items()))
    for name in customer_store.ENUMERATED_FILTERS:  # labels are taken too, others refused
        if where.get(name):
            where[name] = vocabulary(workspace(request), spoken()).code(name, where[name])
    if after is None:  # a value nobody has is refused, not an empty list
        check_values(workspace(request), {**where, **({"owner": owner} if owner else {}),
                                          **({"city": city} if city else {})})
    items, next_after = search(workspace(request), principal, q=q, owner=owner, city=city,
                               segment=segment, after=after, limit=limit, where=where)
    return json_response({"items": items, "next_after": next_after,
                          "searched_by": searched_by(principal) if q else []})


def _import_records(request: Request, records: list[dict[str, Any]],
                    actor: str) -> ImportSummary:
    ws = workspace(request)
    report = reject_report_path(ws.root, f"api-{uuid.uuid4().hex[:12]}.rejected.csv")
    result = imports.import_source(ws, "customers",
                                   RecordsSource.from_dicts("api request", records),
                                   report_path=report)
    matching = None
    if result.import_id is not None and (result.inserted or result.updated):
        with ws.control.read() as conn:
            written = customer_store.ids_of_import(conn, result.import_id)
        found = match_arrivals(ws, written, actor=actor)
        matching = {"checked": found.checked, "pairs_scored": found.pairs,
                    "merged": [{"survivor_id": m.survivor_id, "merged_ids": m.merged_ids,
                                "merge_id": m.merge_id} for m in found.merged],
                    "queued_for_review": found.queued, "model_trained": found.trained}
    return ImportSummary(table=result.table, rows_read=result.rows_read,
                         inserted=result.inserted, updated=result.updated,
                         unchanged=result.unchanged, import_id=result.import_id,
                         cleaned=result.cleaned, extras=result.extras, matching=matching)


@router.post("", response_model=ImportSummary, summary="Create or update customers (a batch)")
def upsert_customers(body: CustomerBatch, request: Request,
                     principal: Principal = require("customers:write")) -> ImportSummary:
    """Rows are validated and cleaned like an import; any bad row rejects the whole batch.
    The written customers are then matched against the others with the saved model (see
    ``matching``): sure duplicates merge into the older record, likely ones are queued for
    review."""
    return _import_records(request, body.customers, principal.actor)


@router.get("/{customer_id}", summary="A customer with computed values and segments",
            response_model=dict[str, Any])
def get_customer(customer_id: str, request: Request,
                 principal: Principal = require("customers:read")) -> Response:
    ws = workspace(request)
    with ws.control.read() as conn:
        row = customer_store.get(conn, customer_id)
        if row is None:
            raise Problem(404, say(f"no customer with id {customer_id!r}",
                                   f"没有编号为 {customer_id!r} 的客户"))
        segments = memberships.segments_of(conn, customer_id)
    return json_response({"customer": present_customer(ws, principal, row),
                          "values": _values(request).of(customer_id), "segments": segments})


@router.patch("/{customer_id}", response_model=ImportSummary, summary="Update a customer")
def update_customer(customer_id: str, body: dict[str, Any], request: Request,
                    principal: Principal = require("customers:write")) -> ImportSummary:
    ws = workspace(request)
    if "customer_id" in body and body["customer_id"] != customer_id:
        raise Problem(422, say("customer_id in the body differs from the path; ids cannot change",
                               "请求体中的 customer_id 与路径不一致；客户编号不能修改"))
    with ws.control.read() as conn:
        if customer_store.get(conn, customer_id) is None:
            raise Problem(404, say(f"no customer with id {customer_id!r}",
                                   f"没有编号为 {customer_id!r} 的客户"))
    if not body:
        raise Problem(422, say("give at least one field to change", "请至少给出一个要修改的字段"))
    return _import_records(request, [{**body, "customer_id": customer_id}], principal.actor)


@router.get("/{customer_id}/profile", summary="The 360° profile: orders, events, tickets, "
            "feedback, opportunities, values and segment history")
def profile(customer_id: str, request: Request,
            principal: Principal = require("customers:read")) -> dict[str, Any]:
    ws = workspace(request)
    found = present_profile(ws, principal, customer_profile(ws, customer_id))
    out = {k: jsonable(v) for k, v in vars(found).items()}
    out["values"] = _values(request).of(customer_id)
    out["segment_history"] = jsonable(i18n.with_reason_labels(
        customer_segments(ws, customer_id), spoken()))
    return out


@router.get("/{customer_id}/economics", summary="One customer's economics in a period "
            "(services.economics)")
def economics_of(customer_id: str, request: Request,
                 period: str = Query(..., max_length=32, description=(
                     "2026, 2026H2, 2026Q3, 2026-07 or 2026-07-01..2026-08-15.")),
                 principal: Principal = require("values:read")) -> dict[str, Any]:
    from tierwise.services import economics

    return jsonable(economics.of_customer(workspace(request), customer_id, period))  # type: ignore[no-any-return]


@router.get("/{customer_id}/segments", summary="Segments a customer is in and has been in",
            response_model=list[dict[str, Any]])
def segments_of(customer_id: str, request: Request,
                principal: Principal = require("segments:read")) -> Response:
    ws = workspace(request)
    with ws.control.read() as conn:
        if customer_store.get(conn, customer_id) is None:
            raise Problem(404, say(f"no customer with id {customer_id!r}",
                                   f"没有编号为 {customer_id!r} 的客户"))
    return json_response(jsonable(customer_segments(ws, customer_id)))


@router.put("/{customer_id}/preferences", status_code=204,
            summary="Set consent or unsubscribe for a channel")
def preferences(customer_id: str, body: Preference, request: Request,
                principal: Principal = require("customers:write")) -> None:
    if body.channel not in CHANNELS:
        raise Problem(422, say(f"unknown channel {body.channel!r}; expected one of "
                               f"{', '.join(CHANNELS)}",
                               f"未知渠道 {body.channel!r}：应为 {', '.join(CHANNELS)} 之一"))
    set_preference(workspace(request), customer_id, body.channel, consent=body.consent,
                   unsubscribed=body.unsubscribed)


@router.get("/{customer_id}/consent", summary="Whether an action may reach the customer on a "
            "channel for a purpose, and why")
def consent_of(customer_id: str, request: Request,
               channel: str = Query(..., description="email, sms, phone, webhook or wechat"),
               purpose: Literal["marketing", "service"] = Query("marketing"),
               principal: Principal = require("customers:read")) -> dict[str, Any]:
    found = may_contact(workspace(request), customer_id, channel, purpose)
    return {"customer_id": customer_id, "channel": channel, "purpose": purpose,
            "allowed": found.allowed, "reason": str(found.reason)}
