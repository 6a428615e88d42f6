"""Segments: definitions with plan-before-apply, preview, members (paged and exported),
history, runs and explanations."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field, StrictInt, ValidationError

from tierwise.definitions import invalid
from tierwise.definitions.json_values import jsonable
from tierwise.definitions.personal_data import require_unmasked, rule_as_shown
from tierwise.definitions.roles import Principal
from tierwise.definitions.schemas import CUSTOMERS
from tierwise.definitions.segment_ast import conditions_of, to_json, to_text
from tierwise.errors import say, spoken
from tierwise.ingest.report import safe_cell
from tierwise.segments import catalog as defs
from tierwise.segments import literals, membership, plan
from tierwise.segments.evaluate import evaluate_rule
from tierwise.segments.explain import explain
from tierwise.segments.plan import SAMPLE
from tierwise.segments.templates import DESCRIPTIONS, TEMPLATES
from tierwise.segments.vocabulary import vocabulary
from tierwise.services.customers import present_customer
from tierwise.store import customers as customer_store
from tierwise.store import memberships, sizes, versions
from tierwise.store.control import Connection, utcnow
from tierwise.web import i18n
from tierwise.web.auth import record, require, workspace
from tierwise.web.fields import Instant
from tierwise.web.i18n import language
from tierwise.web.problems import MAX_ID, RESPONSES, Problem
from tierwise.web.views import json_response
from tierwise.workspace import Workspace

router = APIRouter(prefix="/v1/segments", tags=["segments"], responses=RESPONSES)
EXPORT_COLUMNS = [c for c in CUSTOMERS.names if c not in ("attributes",)]


class RuleIn(BaseModel):
    rule: str = Field(min_length=1, max_length=20_000)


class PreviewIn(RuleIn):
    as_of: Instant | None = None
    sample: StrictInt = Field(10, ge=0, le=100)


class EvaluateIn(BaseModel):
    keys: list[str] | None = None
    as_of: Instant | None = None


class StaticEdit(BaseModel):
    add: list[str] = Field(default_factory=list, max_length=100_000)
    remove: list[str] = Field(default_factory=list, max_length=100_000)


def _applied(ws: Workspace, key: str) -> defs.Applied:
    found = defs.applied(ws).get(key)
    if found is None:
        raise Problem(404, say(f"no segment {key!r}", f"没有分群 {key!r}"))
    return found


def _as_shown(ws: Workspace, principal: Principal, spec: dict[str, Any]) -> dict[str, Any]:
    """A stored definition as this caller may see it (literals on PII masked)."""
    if not spec.get("rule"):
        return spec
    return {**spec, "rule": rule_as_shown(principal, spec["rule"], ws.personal_data)}


def _last_run(conn: Connection, key: str) -> dict[str, Any] | None:
    return jsonable(memberships.last_run(conn, key))  # type: ignore[no-any-return]


@router.get("", summary="Applied segments with size and last run")
def list_segments(request: Request, principal: Principal = require("segments:read")
                  ) -> list[dict[str, Any]]:
    ws = workspace(request)
    applied = defs.applied(ws)
    with ws.control.read() as conn:
        counts = sizes.of(conn)
        return [{"key": key, "version": a.version, "members": counts.get(key, 0),
                 "definition": _as_shown(ws, principal, a.definition.canonical()),
                 "last_run": _last_run(conn, key)}
                for key, a in applied.items()]


@router.get("/templates", summary="Built-in segment templates")
def templates(principal: Principal = require("segments:read")) -> list[dict[str, Any]]:
    return [{"template": k, **t.canonical(), "descriptions": DESCRIPTIONS[k]}
            for k, t in TEMPLATES.items()]


@router.post("/check", summary="Parse and validate a rule; canonical text and JSON")
def check(body: RuleIn, request: Request,
          principal: Principal = require("segments:read")) -> dict[str, Any]:
    """Labels of enumerated values come back as their codes; ``warnings`` name free-text
    literals no customer or row carries."""
    ws = workspace(request)
    checked = literals.check(ws, body.rule, lang=language(request, ws.config.locale))
    tree = checked.rule
    return {"rule": to_text(tree), "rule_json": to_json(tree),
            "conditions": conditions_of(tree), "warnings": checked.warnings}


@router.post("/preview", summary="Count and sample who a rule selects (nothing saved)")
def preview(body: PreviewIn, request: Request,
            principal: Principal = require("segments:read")) -> dict[str, Any]:
    ws = workspace(request)
    when = body.as_of or utcnow()
    resolve = membership.applied_resolver(ws)
    lang = language(request, ws.config.locale)
    tree = literals.check(ws, body.rule, look_up=False, lang=lang).rule
    require_unmasked(principal, tree, ws.personal_data, resolve, "preview")
    found = evaluate_rule(ws, tree, when, resolve)
    ids = found["customer_id"].to_pylist()
    return {"count": len(ids), "customers": ws.count("customers"), "as_of": jsonable(when),
            "sample": ids[:body.sample], "rule": to_text(tree),
            "warnings": literals.unseen(ws, tree, when, lang)}


@router.post("/evaluate", summary="Evaluate segments now (all active, or some)")
def evaluate(body: EvaluateIn, request: Request,
             principal: Principal = require("segments:write")) -> list[dict[str, Any]]:
    runs = membership.evaluate_all(workspace(request), body.as_of, body.keys)
    return [jsonable(asdict(r)) for r in runs]


@router.get("/{key}", summary="A segment's applied definition and its versions")
def get_segment(key: str, request: Request,
                principal: Principal = require("segments:read")) -> dict[str, Any]:
    ws = workspace(request)
    applied = _applied(ws, key)
    with ws.control.read() as conn:
        history = versions.history(conn, defs.KIND, key)
        size = sizes.of(conn, [key])[key]
        last = _last_run(conn, key)
    return {"key": key, "version": applied.version,
            "definition": _as_shown(ws, principal, applied.definition.canonical()),
            "members": size, "last_run": last,
            "versions": [{"version": v.version, "note": v.note, "created_at": jsonable(
                v.created_at), "spec": _as_shown(ws, principal, v.spec)} for v in history]}


@router.put("/{key}", summary="Plan (dry_run) or apply a new version of a segment")
def put_segment(key: str, body: dict[str, Any], request: Request,
                dry_run: bool = Query(True, description="Only show who would enter and leave."),
                evaluate_after: bool = Query(False, alias="evaluate"),
                note: str | None = Query(None, max_length=500),
                principal: Principal = require("segments:write")) -> dict[str, Any]:
    ws = workspace(request)
    body = {**body, "key": body.get("key", key)}
    if body["key"] != key:
        raise Problem(422, say(f"the body's key {body['key']!r} differs from the path's {key!r}",
                               f"请求体中的 key {body['key']!r} 与路径中的 {key!r} 不一致"))
    try:
        definition = defs.SegmentDefinition.model_validate(body)
    except ValidationError as exc:
        raise Problem(422, str(invalid.problems(exc))) from None
    definition = plan.in_codes(definition,
                               vocabulary(ws, language(request, ws.config.locale)))
    merged = plan.definitions_with(ws, definition)
    tree = definition.condition()
    if tree is not None:
        require_unmasked(principal, tree, ws.personal_data, membership.resolver(merged),
                         "plan or save")
    item = plan.plan_definition(ws, definition, utcnow())
    shown = {**asdict(item), "entering": item.entering[:SAMPLE],
             "leaving": item.leaving[:SAMPLE], "entering_count": len(item.entering),
             "leaving_count": len(item.leaving)}
    out: dict[str, Any] = {"plan": jsonable(shown), "applied": False}
    if dry_run or item.change == "unchanged":
        return out
    version = plan.apply_definition(ws, definition, note)
    out.update(applied=True, version=version)
    if evaluate_after and definition.kind == "dynamic":
        out["runs"] = [jsonable(asdict(r)) for r in membership.evaluate_all(ws, keys=[key])]
    return out


@router.delete("/{key}", summary="Retire a segment: pause it and record every member's exit")
def retire_segment(key: str, request: Request,
                   note: str | None = Query(None, max_length=500),
                   principal: Principal = require("segments:write")) -> dict[str, Any]:
    """Versions and history stay (past memberships remain explainable)."""
    left = membership.retire(workspace(request), key, note)
    return {"key": key, "status": "paused", "members_left": left}


def _customers_by_id(ws: Workspace, ids: list[str]) -> dict[str, dict[str, Any]]:
    with ws.control.read() as conn:
        rows = customer_store.page(conn, ids=ids, limit=len(ids))
    return {row["customer_id"]: row for row in rows}


@router.get("/{key}/members", summary="Current members, a page at a time")
def members(key: str, request: Request,
            after: str | None = Query(None, max_length=128, description="The last id seen."),
            limit: int = Query(100, ge=1, le=1000),
            details: bool = Query(True, description="Include each member's customer record."),
            principal: Principal = require("segments:read")) -> Response:
    ws = workspace(request)
    _applied(ws, key)
    with ws.control.read() as conn:
        total = None if after else sizes.of(conn, [key])[key]  # on the first page
        rows = memberships.members_page(conn, key, after, limit + 1)
    page = rows[:limit]
    people = _customers_by_id(ws, [r["customer_id"] for r in page]) if details else {}
    items = []
    for r in page:
        item: dict[str, Any] = jsonable(r)
        if r["customer_id"] in people:
            item["customer"] = present_customer(ws, principal, people[r["customer_id"]])
        items.append(item)
    return json_response({"total": None if total is None else int(total), "items": items,
                          "next_after": page[-1]["customer_id"] if len(rows) > limit else None})


@router.get("/{key}/members/export", summary="Export members as CSV or XLSX",
            response_class=StreamingResponse)
def export_members(key: str, request: Request,
                   format: Literal["csv", "xlsx"] = Query("csv"),
                   include_pii: bool = Query(False, description="Needs pii:export; audited."),
                   principal: Principal = require("segments:read")) -> StreamingResponse:
    ws = workspace(request)
    _applied(ws, key)
    if include_pii and not principal.can("pii:export"):
        raise Problem(403, say(f"role {principal.role} may not export PII (needs pii:export)",
                               f"角色 {principal.role} 不能导出个人数据（需要 pii:export 权限）"))
    with ws.control.read() as conn:
        ids = sorted(memberships.current(conn, key))
    if include_pii:
        record(request, principal, "export_pii", f"segment:{key}",
               {"members": len(ids), "format": format})

    def rows() -> Iterator[list[Any]]:
        for start in range(0, len(ids), 2_000):
            chunk = _customers_by_id(ws, ids[start:start + 2_000])
            for cid in ids[start:start + 2_000]:
                row = chunk.get(cid)
                if row is None:
                    continue
                # Without include_pii an export is masked for everyone, even for roles that
                # may read PII on screen: files travel.
                shown = row if include_pii else ws.personal_data.mask_customer(dict(row))
                yield [jsonable(shown.get(c)) for c in EXPORT_COLUMNS]

    name = f"{key}-members-{utcnow():%Y%m%dT%H%M%S}"
    if format == "xlsx":
        data = _xlsx(rows())
        return StreamingResponse(iter([data]), media_type=(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})

    def csv_lines() -> Iterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_COLUMNS)
        yield ("\ufeff" + buffer.getvalue()).encode()
        for row in rows():
            buffer.seek(0)
            buffer.truncate()
            writer.writerow([safe_cell(v) if v is not None else "" for v in row])
            yield buffer.getvalue().encode()

    return StreamingResponse(csv_lines(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


def _xlsx(rows: Iterator[list[Any]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("members")
    sheet.append(EXPORT_COLUMNS)
    for row in rows:
        sheet.append([safe_cell(v) if isinstance(v, str) else v for v in row])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


@router.post("/{key}/members", summary="Add or remove members of a static list")
def edit_members(key: str, body: StaticEdit, request: Request,
                 principal: Principal = require("segments:write")) -> dict[str, int]:
    entered, exited = membership.edit_static(workspace(request), key, body.add, body.remove)
    return {"added": entered, "removed": exited}


@router.get("/{key}/history", summary="Entries and exits, newest first")
def history(key: str, request: Request,
            customer_id: str | None = Query(None, max_length=128),
            before: int | None = Query(None, ge=1, le=MAX_ID,
                                       description="Cursor: history_id of the last row."),
            limit: int = Query(100, ge=1, le=1000),
            principal: Principal = require("segments:read")) -> list[dict[str, Any]]:
    ws = workspace(request)
    _applied(ws, key)
    with ws.control.read() as conn:
        rows = memberships.history(conn, key, customer_id=customer_id, before=before,
                                   limit=limit)
    return [jsonable(r) for r in i18n.with_reason_labels(rows, spoken())]


@router.get("/{key}/runs", summary="Evaluations of a segment: when, how long, what changed")
def runs(key: str, request: Request, limit: int = Query(50, ge=1, le=500),
         principal: Principal = require("segments:read")) -> list[dict[str, Any]]:
    ws = workspace(request)
    _applied(ws, key)
    with ws.control.read() as conn:
        return [jsonable(r) for r in memberships.runs(conn, key, limit)]


@router.get("/{key}/explain/{customer_id}", summary="Why a customer is in or out")
def explain_customer(key: str, customer_id: str, request: Request,
                     as_of: Instant | None = Query(None),
                     principal: Principal = require("segments:read")) -> dict[str, Any]:
    ws = workspace(request)
    tree = _applied(ws, key).definition.condition()
    if tree is None:
        raise Problem(422, say(f"{key} is not a dynamic segment: it has no rule to explain",
                               f"{key} 不是动态分群：没有可解释的规则"))
    when = as_of or utcnow()
    resolve = membership.applied_resolver(ws)
    with ws.control.read() as conn:
        customer = customer_store.get(conn, customer_id)
    if customer is None:
        raise Problem(404, say(f"no customer with id {customer_id!r}",
                               f"没有编号为 {customer_id!r} 的客户"))
    require_unmasked(principal, tree, ws.personal_data, resolve, "explain",
                     customer_owner=customer.get("owner"), one_customer=True)
    steps = explain(ws, tree, customer_id, when, resolve)
    return {"segment": key, "customer_id": customer_id, "as_of": jsonable(when),
            "result": steps[0].result if steps else None,
            "steps": [jsonable(asdict(s)) for s in steps]}


