"""The pages of daily work: actions (deliveries, tasks, escalations), the periodic review
and its report, imports."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from tierwise.actions import catalog as automations
from tierwise.actions import dispatch, tasks
from tierwise.dashboard import charts
from tierwise.dashboard.page import (
    flow_links,
    int_param,
    language_of,
    render,
    view_of,
    viewer,
)
from tierwise.dashboard.plans import inspect_file
from tierwise.definitions.roles import Principal
from tierwise.definitions.schemas import TABLES
from tierwise.errors import TierwiseError, say
from tierwise.segments import catalog as defs
from tierwise.services import review
from tierwise.store import import_log
from tierwise.store import jobs as job_store
from tierwise.web import i18n, report, uploads
from tierwise.web.auth import require, workspace
from tierwise.web.jobs import rejects_path
from tierwise.web.problems import Problem
from tierwise.web.uploads import save_upload

router = APIRouter(include_in_schema=False)


# -- actions, review, imports --------------------------------------------------------------


@router.get("/actions", response_class=HTMLResponse)
def actions(request: Request) -> HTMLResponse:
    principal = viewer(request, "segments:read")
    ws = workspace(request)
    log = delivery_filters(request)
    with ws.control.read() as conn:
        triggers = list(automations.all_of(conn, "trigger").values())
        playbooks = list(automations.all_of(conn, "playbook").values())
    try:
        deliveries = dispatch.deliveries(
            ws, **log,
            limit=DELIVERIES_PER_PAGE, newest=True,
            replies=principal.can("users:admin"))[::-1]
    except TierwiseError as exc:
        raise Problem(400, str(exc)) from None
    older = deliveries[-1]["outbox_id"] if len(deliveries) == DELIVERIES_PER_PAGE else None
    status = log.get("status") or ""
    work = task_filters(request)
    raw = request.query_params.get("tasks_page") or "1"
    page = int(raw) if raw.isdigit() and len(raw) <= 6 else 0
    if page < 1:
        raise Problem(400, say(f"tasks_page={raw[:20]!r}: expected a page number from 1 to "
                               "999999", f"tasks_page={raw[:20]!r}：应为 1 到 999999 的页码"))
    open_tasks = tasks.listing(ws, status="active", limit=TASKS_PER_PAGE + 1,
                               offset=(page - 1) * TASKS_PER_PAGE, **work) \
        if principal.can("customers:read") else []
    more_tasks = len(open_tasks) > TASKS_PER_PAGE
    open_tasks = open_tasks[:TASKS_PER_PAGE]
    by_owner: dict[str, list[dict[str, Any]]] = {}
    for t in sorted(open_tasks, key=lambda t: not (t["overdue"] and t["strategic"])):
        by_owner.setdefault(t.get("owner") or "—", []).append(t)  # late strategic ones first
    teams = sorted({t["team"] for t in open_tasks if t.get("team")} | (
        {work["team"]} if work.get("team") else set()))
    work_query = {"status": "active", **{k: ("true" if v is True else v)
                                         for k, v in work.items() if v}}
    kept = {k: v for k, v in request.query_params.items()
            if k not in ("before", "tasks_page") and v}
    return render(request, principal, "actions.html", "actions", triggers=triggers,
                  playbooks=playbooks, deliveries=deliveries,
                  summary=dispatch.summary(ws), status=status, tasks_by_owner=by_owner,
                  can_run=principal.can("actions:run"), log=log, kept=kept, older=older,
                  statuses=dispatch.STATUSES, actions_kinds=dispatch.ACTIONS,
                  work=work, teams=teams, work_query=work_query, tasks_page=page,
                  more_tasks=more_tasks, tasks_per_page=TASKS_PER_PAGE,
                  sources=[f"trigger:{t.key}" for t in triggers]
                  + [f"playbook:{p.key}" for p in playbooks])


@router.get("/actions/effect", response_class=HTMLResponse)
def action_effect(request: Request) -> HTMLResponse:
    """A trigger's or playbook's effect against its holdout group, and its cost and return
    (``insights.effectiveness.action_uplift``: the numbers of `tierwise uplift --action`
    and ``GET /v1/insights/uplift/action``)."""
    from tierwise.insights.effectiveness import action_uplift

    principal = viewer(request, "values:read")
    source = request.query_params.get("source") or ""
    if not re.fullmatch(r"(trigger|playbook):[a-z][a-z0-9_]{0,63}", source):
        raise Problem(400, say(f"source={source[:80]!r}: expected trigger:KEY or playbook:KEY",
                               f"source={source[:80]!r}：应为 trigger:KEY 或 playbook:KEY"))
    raw = request.query_params.get("days") or "30"
    if not raw.isdigit() or not 1 <= int(raw) <= 730:
        raise Problem(400, say(f"days={raw[:20]!r}: expected 1 to 730",
                               f"days={raw[:20]!r}：应为 1 到 730"))
    found, problem = None, None
    try:
        found = action_uplift(workspace(request), source, int(raw))
    except TierwiseError as exc:  # no holdout yet, too few customers: said on the page
        problem = str(exc)
    return render(request, principal, "action_effect.html", "actions", source=source,
                  days=int(raw), found=found, problem=problem)


#: Deliveries on one page of the log (newest first; "older" pages back by keyset).
DELIVERIES_PER_PAGE = 50
#: Tasks on one page of the worklist (soonest due first).
TASKS_PER_PAGE = 100
#: The delivery log's filters: query parameter → the keyword of ``dispatch.deliveries``.
DELIVERY_FILTERS = {"status": "status", "source": "source", "action": "action",
                    "customer": "customer_id", "event": "event"}


def task_filters(request: Request) -> dict[str, Any]:
    """The worklist's filters from the page's query: owner, team and overdue (true/false)."""
    query = request.query_params
    found: dict[str, Any] = {k: query[k] for k in ("owner", "team") if query.get(k)}
    late = (query.get("overdue") or "").lower()
    if late not in ("", "true", "false", "on", "1", "0"):
        raise Problem(400, say(f"overdue={query['overdue']!r}: expected true or false",
                               f"overdue={query['overdue']!r}：应为 true 或 false"))
    if late in ("true", "on", "1"):
        found["overdue"] = True
    return found


def delivery_filters(request: Request) -> dict[str, Any]:
    """The delivery log's filters from the page's query: status, source (trigger:<key> or
    playbook:<key>), action (channel), customer, event, since / until (local days,
    until inclusive) and ``before`` (the keyset cursor); a malformed one is a 400."""
    query = request.query_params
    found: dict[str, Any] = {DELIVERY_FILTERS[k]: query[k] for k in DELIVERY_FILTERS
                             if query.get(k)}
    zone = workspace(request).config.zone
    for name, shift in (("since", 0), ("until", 1)):
        text = query.get(name)
        if not text:
            continue
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise Problem(400, say(f"{name}={text!r}: expected a day such as 2026-07-01",
                                   f"{name}={text!r}：应为日期，例如 2026-07-01")) from None
        found[name] = datetime.combine(day + timedelta(days=shift), time(), zone)
    if query.get("before"):
        try:
            found["before"] = int(query["before"])
        except ValueError:
            raise Problem(400, say(f"before={query['before']!r}: expected a delivery number",
                                   f"before={query['before']!r}：应为投递编号")) from None
    return found


@router.get("/review", response_class=HTMLResponse)
def review_page(request: Request) -> HTMLResponse:
    principal = viewer(request, "values:read")
    view = view_of(request)
    period = request.query_params.get("period") or review.last_full_quarter(
        view.as_of if view else None)
    segment_key = request.query_params.get("segment") or None
    lang = language_of(request)
    keys = sorted(defs.applied(workspace(request)))
    try:
        found = review.cached_review(workspace(request), period, segment_key)
    except TierwiseError as exc:
        return render(request, principal, "review.html", "review", period=period, error=str(exc),
                      result=None, figures={}, segment=segment_key or "", segment_keys=keys)
    w = i18n.table(lang)
    label = (lambda t: view.tier_label(t, lang)) if view and found.grouping == "tier" else str
    figures = {"kpi": charts.bars(w["revenue"], [label(g["group"]) for g in found.groups], [
        (found.previous.name, [round(g["before"]["revenue"], 2) for g in found.groups]),
        (found.period.name, [round(g["now"]["revenue"], 2) for g in found.groups])])}
    migration_links: list[str | None] = []
    if found.migration:
        flows = [m for m in found.migration if m["customers"]]
        figures["migration"] = charts.sankey(
            w["migration"], [(str(m["from"] or "—"), str(m["to"] or "—"), m["customers"])
                             for m in flows], found.previous.name, found.period.name)
        opening, closing = found.snapshots
        migration_links = flow_links(
            flows, "tier", opening or 0, view is not None and closing is not None
            and closing == view.snapshot.snapshot_id,
            {"segment": segment_key} if segment_key else None)
    said = report.content(workspace(request), found, lang)
    return render(request, principal, "review.html", "review", period=period, error=None,
                  result=found, figures=figures, label=label, segment=segment_key or "",
                  segment_keys=keys, notes=said.notes, migration_note=said.migration_note,
                  migration_links=migration_links)


@router.get("/review/report.{fmt}")
def review_report(fmt: str, request: Request) -> Response:
    viewer(request, "values:read")
    if fmt not in ("html", "pdf"):
        raise Problem(404, say("reports are html or pdf", "报告格式为 html 或 pdf"))
    view = view_of(request)
    period = request.query_params.get("period") or review.last_full_quarter(
        view.as_of if view else None)
    ws, lang = workspace(request), language_of(request)
    try:
        found = review.cached_review(ws, period, request.query_params.get("segment") or None)
    except TierwiseError as exc:
        raise Problem(422, str(exc)) from None
    name = f"tierwise-review-{found.period.name}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if fmt == "html":
        return HTMLResponse(report.html(ws, found, lang), headers=headers)
    return Response(report.pdf(ws, found, lang), media_type="application/pdf", headers=headers)


@router.get("/imports", response_class=HTMLResponse)
def imports_page(request: Request) -> HTMLResponse:
    principal = viewer(request, "customers:read")
    ws = workspace(request)
    with ws.control.read() as conn:
        past = import_log.recent(conn, 30)
        recent_jobs = job_store.recent(conn, 10, kind="import")
        asked = int_param(request.query_params.get("job"))
        job = job_store.get(conn, asked, kind="import") if asked else None
    finished = None
    if job is not None:

        finished = {**job, "rejects": rejects_path(ws, job["job_id"]).exists()}
    return render(request, principal, "imports.html", "imports", tables=list(TABLES),
                  past=past, jobs=recent_jobs, finished=finished,
                  can_write=principal.can("imports:write"))


@router.post("/dashboard/imports/inspect")
async def inspect_upload(request: Request, file: UploadFile | None = File(None),
                         upload_id: str | None = Form(None), table: str = Form(...),
                         principal: Principal = require("imports:write")) -> dict[str, Any]:
    """The columns of an uploaded file, a sample of rows and the suggested mapping. The
    file is held (``api.uploads``): the answer's ``upload_id`` stands for it in a second
    inspection (another table) and in the import, so the browser sends it once."""

    uploads.one_of(file, upload_id)
    saved = await save_upload(file) if file is not None else None
    # reading the file (up to its sample) on a worker thread, not the event loop
    return await run_in_threadpool(
        _inspect, workspace(request).root, principal.actor, saved,
        file.filename if file is not None else None, upload_id, table)


def _inspect(root: Path, actor: str, saved: Path | None, filename: str | None,
             upload_id: str | None, table: str) -> dict[str, Any]:
    if saved is not None:
        upload_id = uploads.hold(root, actor, saved, filename or saved.name)
    assert upload_id is not None
    path, sent_as = uploads.find(root, actor, upload_id)
    try:
        found = inspect_file(path, sent_as, table)
    except TierwiseError as exc:
        raise Problem(422, str(exc)) from None
    return {**found, "upload_id": upload_id}
