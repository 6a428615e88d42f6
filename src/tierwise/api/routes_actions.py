"""Triggers, playbooks and lead scoring (definitions); deliveries, tasks, leads, escalated
tickets and the real-time worker (what they did).

Definitions are read with ``segments:read`` and changed with ``segments:write`` (they
decide what is sent to whom); replaying deliveries and working on tasks needs
``actions:run``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, StrictInt

from tierwise.actions import catalog as automations
from tierwise.actions import dispatch, playbooks, sla, tasks
from tierwise.definitions.json_values import jsonable
from tierwise.definitions.personal_data import require_unmasked
from tierwise.definitions.roles import Principal
from tierwise.definitions.segment_parser import parse
from tierwise.errors import say
from tierwise.realtime import intake
from tierwise.segments.vocabulary import vocabulary
from tierwise.store import leads as lead_store
from tierwise.store.control import utcnow
from tierwise.web.auth import record, require, workspace
from tierwise.web.fields import Instant
from tierwise.web.problems import MAX_ID, RESPONSES, Problem

router = APIRouter(prefix="/v1", tags=["actions"], responses=RESPONSES)


class ReplayIn(BaseModel):
    ids: list[Annotated[StrictInt, Field(ge=1, le=MAX_ID)]] | None = Field(
        None, max_length=10_000,
        description="outbox ids; without them every row in status")
    status: Literal["dead", "held"] = Field(
        "dead", description="without ids: dead (gave up) or held (pending when the backup "
        "this workspace was restored from was taken)")


def _list(request: Request, kind: str) -> list[dict[str, Any]]:
    with workspace(request).control.read() as conn:
        found = automations.all_of(conn, kind)
    return [m.model_dump(mode="json", by_alias=True, exclude_none=True)
            for m in found.values()]


def _get(request: Request, kind: str, key: str) -> dict[str, Any]:
    with workspace(request).control.read() as conn:  # NotFoundError answers 404
        model = automations.get(conn, kind, key)
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def _put(request: Request, principal: Principal, kind: str, key: str,
         body: dict[str, Any]) -> dict[str, Any]:
    if body.get("key", key) != key:
        raise Problem(422, say(f"the body's key {body.get('key')!r} differs from the path's "
                               f"{key!r}",
                               f"请求体中的 key {body.get('key')!r} 与路径中的 {key!r} 不一致"))
    model = automations.parse_definition(kind, {**body, "key": key}, f"{kind} {key}")
    ws = workspace(request)
    if isinstance(model, automations.LeadScoring):
        # Lead scores are shown to every reader: points for personal data would be an oracle.
        for rules, source in ((model.events, "events"), (model.properties, None)):
            for item in rules:
                require_unmasked(principal, parse(item.when), ws.personal_data, None,
                                 "score leads with", source=source)
    words = vocabulary(ws)
    with ws.control.write() as conn:
        version = automations.save(conn, kind, model, body.get("note"),
                                   allowed_targets=ws.config.webhook_allowed_targets,
                                   vocabulary=words, robots=ws.config.robots,
                                   senders=ws.config.sms_senders)
    record(request, principal, f"{kind}_save", f"{kind}:{key}", {"version": version})
    return {"key": key, "version": version}


def _delete(request: Request, principal: Principal, kind: str, key: str) -> dict[str, Any]:
    with workspace(request).control.write() as conn:  # NotFoundError answers 404
        version = automations.disable(conn, kind, key)
    record(request, principal, f"{kind}_disable", f"{kind}:{key}", {"version": version})
    return {"key": key, "version": version, "enabled": False}


def _definition_routes(kind: str, plural: str, what: str) -> None:
    """List, get, put (a new version) and delete (disable) for one kind of definition."""

    def list_all(request: Request, principal: Principal = require("segments:read")
                 ) -> list[dict[str, Any]]:
        return _list(request, kind)

    def get_one(key: str, request: Request, principal: Principal = require("segments:read")
                ) -> dict[str, Any]:
        return _get(request, kind, key)

    def put_one(key: str, request: Request, body: dict[str, Any] = Body(...),
                principal: Principal = require("segments:write")) -> dict[str, Any]:
        return _put(request, principal, kind, key, body)

    def delete_one(key: str, request: Request,
                   principal: Principal = require("segments:write")) -> dict[str, Any]:
        return _delete(request, principal, kind, key)

    router.add_api_route(f"/{plural}", list_all, methods=["GET"],
                         summary=f"{what.capitalize()}s (latest versions)",
                         operation_id=f"list_{plural}")
    if kind == "playbook":
        router.add_api_route("/playbooks/runs", playbook_runs, methods=["GET"],
                             summary="Playbook runs, newest first")
    router.add_api_route(f"/{plural}/{{key}}", get_one, methods=["GET"],
                         summary=f"One {what}", operation_id=f"get_{kind}")
    router.add_api_route(f"/{plural}/{{key}}", put_one, methods=["PUT"],
                         summary=f"Create or change a {what} (a new version)",
                         operation_id=f"put_{kind}")
    router.add_api_route(f"/{plural}/{{key}}", delete_one, methods=["DELETE"],
                         summary=f"Disable a {what} (kept, with its history)",
                         operation_id=f"delete_{kind}")


def playbook_runs(request: Request, customer_id: str | None = Query(None, max_length=128),
                  playbook: str | None = Query(None, max_length=128),
                  status: Literal["active", "done", "stopped", "converted"] | None = None,
                  limit: int = Query(200, ge=1, le=5000),
                  principal: Principal = require("segments:read")) -> list[dict[str, Any]]:
    return [jsonable(r) for r in playbooks.runs(workspace(request), customer_id, playbook,
                                                 status, limit)]


_definition_routes("trigger", "triggers", "trigger")
_definition_routes("playbook", "playbooks", "playbook")


@router.get("/customers/{customer_id}/playbook",
            summary="The playbook that applies to a customer (null if none)")
def customer_playbook(customer_id: str, request: Request,
                      principal: Principal = require("customers:read")
                      ) -> dict[str, Any] | None:
    found = playbooks.applying(workspace(request), [customer_id]).get(customer_id)
    return None if found is None else found.model_dump(mode="json", by_alias=True,
                                                        exclude_none=True)


@router.get("/lead-scoring", summary="The lead-scoring rules")
def get_lead_scoring(request: Request, principal: Principal = require("segments:read")
                     ) -> dict[str, Any]:
    return _get(request, "lead_scoring", "default")


@router.put("/lead-scoring", summary="Change the lead-scoring rules (a new version)")
def put_lead_scoring(request: Request, body: dict[str, Any] = Body(...),
                     principal: Principal = require("segments:write")) -> dict[str, Any]:
    return _put(request, principal, "lead_scoring", "default", body)


@router.get("/leads", summary="Lead scores, highest first")
def list_leads(request: Request, qualified: bool = False,
               limit: int = Query(200, ge=1, le=5000),
               principal: Principal = require("customers:read")) -> list[dict[str, Any]]:
    return [jsonable(r) for r in lead_store.leads(workspace(request).control, qualified, limit)]


@router.get("/deliveries", summary="Outbox rows (deliveries), keyset-paged and filtered")
def list_deliveries(request: Request,
                    status: Literal["pending", "delivered", "dead", "held_out",
                                    "suppressed", "held"] | None = None,
                    source: str | None = Query(None, max_length=160, description=(
                        "trigger:<key> or playbook:<key>")),
                    customer_id: str | None = Query(None, max_length=128),
                    action: Literal["webhook", "email", "task", "tag", "notify", "sms"] | None
                    = Query(None, description=(
                        "The channel: webhook, email, task, tag, notify or sms.")),
                    event: Literal["enter", "exit", "tier_change", "lifecycle_change",
                                   "lead_qualified", "sla_breach", "stage_change",
                                   "playbook_step"] | None
                    = None,
                    since: Instant | None = Query(None, description="Queued at or after."),
                    until: Instant | None = Query(None, description="Queued before."),
                    after: int = Query(0, ge=0, le=MAX_ID, description=(
                        "Oldest first: the rows after this outbox_id (next_after).")),
                    before: int | None = Query(None, ge=1, le=MAX_ID, description=(
                        "Newest first: the rows before this outbox_id (next_before).")),
                    newest: bool = Query(False, description="Newest first (page with before)."),
                    limit: int = Query(100, ge=1, le=1000),
                    principal: Principal = require("segments:read")) -> dict[str, Any]:
    rows = dispatch.deliveries(workspace(request), status=status, source=source,
                               customer_id=customer_id, action=action, event=event,
                               since=since, until=until, after=after, before=before,
                               limit=limit, newest=newest,
                               replies=principal.can("users:admin"))
    full = len(rows) == limit
    if newest:  # newest first, and the next page is older
        rows = rows[::-1]
    return {"items": [jsonable(r) for r in rows],
            "next_after": rows[-1]["outbox_id"] if full and not newest else None,
            "next_before": rows[-1]["outbox_id"] if full and newest else None,
            "summary": dispatch.summary(workspace(request))}


@router.post("/deliveries/replay", summary="Send deliveries again (same idempotency keys)")
def replay(request: Request, body: ReplayIn,
           principal: Principal = require("actions:run")) -> dict[str, int]:
    queued = dispatch.replay(workspace(request), body.ids, body.status)
    record(request, principal, "deliveries_replay", None,
           {"ids": body.ids[:100] if body.ids else body.status, "queued": queued})
    return {"queued": queued}


TaskStatus = Literal["open", "in_progress", "active", "done", "cancelled"]


@router.get("/tasks", summary="The worklist: tasks by owner, team, status and due time; each "
            "says whether it is overdue and whether its customer is strategic (best tier)")
def list_tasks(request: Request, owner: str | None = Query(None, max_length=200),
               team: str | None = Query(None, max_length=32, description=(
                   "The role a task is for (sales, service, operator, …).")),
               status: TaskStatus | None = "open",
               customer_id: str | None = Query(None, max_length=128),
               overdue: bool = Query(False, description="Only tasks past their due time."),
               limit: int = Query(200, ge=1, le=5000),
               offset: int = Query(0, ge=0, le=10_000_000, description=(
                   "Skip this many (the next page: offset + limit).")),
               principal: Principal = require("customers:read")) -> list[dict[str, Any]]:
    return [jsonable(t) for t in tasks.listing(
        workspace(request), owner=owner, team=team, status=status, customer_id=customer_id,
        overdue=overdue, limit=limit, offset=offset)]


@router.get("/tasks/export", summary="The worklist as CSV (the same filters)",
            response_class=Response)
def export_tasks(request: Request, owner: str | None = Query(None, max_length=200),
                 team: str | None = Query(None, max_length=32),
                 status: TaskStatus | None = "active",
                 overdue: bool = Query(False),
                 principal: Principal = require("customers:read")) -> Response:
    ws = workspace(request)
    found = tasks.listing(ws, owner=owner, team=team, status=status, overdue=overdue,
                          limit=100_000)
    record(request, principal, "tasks_export", None,
           {"owner": owner, "team": team, "status": status, "rows": len(found)})
    return Response(tasks.export(found, ws.config.zone), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition":
                             f'attachment; filename="tasks-{utcnow():%Y%m%dT%H%M%S}.csv"'})


class AssignIn(BaseModel):
    owner: str = Field(min_length=1, max_length=200)


class SnoozeIn(BaseModel):
    until: datetime | None = Field(None, description="The new due time (in the future).")
    hours: float | None = Field(None, gt=0, le=24 * 366, description="Or: this many hours "
                                "from now.")


def _task_id(task_id: int) -> int:
    if not 0 < task_id <= MAX_ID:
        raise Problem(404, say(f"no task {task_id}", f"没有任务 {task_id}"))
    return task_id


@router.post("/tasks/{task_id}/complete", summary="Mark a task done")
def complete_task(task_id: int, request: Request,
                  principal: Principal = require("actions:run")) -> dict[str, Any]:
    done = tasks.complete(workspace(request), _task_id(task_id), principal.actor)
    record(request, principal, "task_complete", str(task_id), {})
    return jsonable(done)


@router.post("/tasks/{task_id}/start", summary="Mark a task in progress")
def start_task(task_id: int, request: Request,
               principal: Principal = require("actions:run")) -> dict[str, Any]:
    found = tasks.start(workspace(request), _task_id(task_id))
    record(request, principal, "task_start", str(task_id), {})
    return jsonable(found)


@router.post("/tasks/{task_id}/assign", summary="Give a task to another owner")
def assign_task(task_id: int, body: AssignIn, request: Request,
                principal: Principal = require("actions:run")) -> dict[str, Any]:
    found = tasks.assign(workspace(request), _task_id(task_id), body.owner)
    record(request, principal, "task_assign", str(task_id), {"owner": found["owner"]})
    return jsonable(found)


@router.post("/tasks/{task_id}/snooze", summary="Put a task off (a new due time)")
def snooze_task(task_id: int, body: SnoozeIn, request: Request,
                principal: Principal = require("actions:run")) -> dict[str, Any]:
    if (body.until is None) == (body.hours is None):
        raise Problem(400, say("give either until (a time) or hours",
                               "请给出 until（一个时间）或 hours 之一"))
    until = body.until or utcnow() + timedelta(hours=body.hours or 0)
    found = tasks.snooze(workspace(request), _task_id(task_id), until)
    record(request, principal, "task_snooze", str(task_id),
           {"until": found["due_at"].isoformat() if found["due_at"] else None})
    return jsonable(found)


@router.get("/sla/tickets", summary="Escalated tickets and their SLA deadlines")
def sla_tickets(request: Request, open_only: bool = True,
                limit: int = Query(200, ge=1, le=5000),
                principal: Principal = require("customers:read")) -> list[dict[str, Any]]:
    return [jsonable(t) for t in sla.escalated(workspace(request), open_only, limit)]


@router.get("/realtime", summary="The real-time worker: batches, sweeps, deliveries")
def realtime_status(request: Request, principal: Principal = require("segments:read")
                    ) -> dict[str, Any]:
    stats = request.app.state.worker.stats
    return {"worker": jsonable(vars(stats)), "pending_intake": intake.pending(
        workspace(request)), "outbox": dispatch.summary(workspace(request))}
