"""Real-time intake: events, orders, tickets, feedback and opportunities, one row or a batch
per request.

A 202 means the rows are committed in the control store; the server's worker moves them to
the fact store at once in micro-batches and updates the segments they affect
(``GET /v1/intake`` shows what is still pending).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request

from tierwise.definitions.roles import Principal
from tierwise.errors import say
from tierwise.realtime import intake
from tierwise.web.auth import require, workspace, written_with
from tierwise.web.problems import RESPONSES, Problem

router = APIRouter(prefix="/v1", tags=["intake"], responses=RESPONSES)
MAX_ROWS = 1_000
Rows = dict[str, Any] | list[dict[str, Any]]


def _receive(request: Request, principal: Principal, table: str, body: Rows
             ) -> dict[str, int]:
    rows = body if isinstance(body, list) else [body]
    if not rows or len(rows) > MAX_ROWS:
        raise Problem(422, say(f"send between 1 and {MAX_ROWS:,} rows, got {len(rows):,}",
                               f"请发送 1 到 {MAX_ROWS:,} 行，实际 {len(rows):,} 行"))
    result = intake.receive(workspace(request), table, rows,
                            also=written_with(request, principal, 202))
    request.state.audited = True
    if result.accepted:
        request.app.state.worker.notify()
    return {"accepted": result.accepted, "duplicates": result.duplicates}


@router.post("/events", status_code=202, summary="Record events (one or a batch); "
             "idempotent by event_id")
def events(request: Request, body: Rows = Body(...),
           principal: Principal = require("imports:write")) -> dict[str, int]:
    return _receive(request, principal, "events", body)


@router.post("/orders", status_code=202, summary="Record orders (one or a batch)")
def orders(request: Request, body: Rows = Body(...),
           principal: Principal = require("imports:write")) -> dict[str, int]:
    return _receive(request, principal, "orders", body)


@router.post("/tickets", status_code=202, summary="Record service tickets (one or a batch)")
def tickets(request: Request, body: Rows = Body(...),
            principal: Principal = require("imports:write")) -> dict[str, int]:
    return _receive(request, principal, "tickets", body)


@router.post("/feedback", status_code=202, summary="Record feedback (one or a batch)")
def feedback(request: Request, body: Rows = Body(...),
             principal: Principal = require("imports:write")) -> dict[str, int]:
    return _receive(request, principal, "feedback", body)


@router.post("/opportunities", status_code=202,
             summary="Record opportunities (one or a batch): a new one, or a new stage")
def opportunities(request: Request, body: Rows = Body(...),
                  principal: Principal = require("imports:write")) -> dict[str, int]:
    """Each row is an opportunity's current state; one whose stage differs from the stored
    one moves it (history in ``opportunity_stages``, ``stage_change`` triggers). Several
    versions of one opportunity in a request are applied in the order sent."""
    return _receive(request, principal, "opportunities", body)


@router.get("/intake", summary="Rows received and not yet in the fact store, per table")
def pending(request: Request, principal: Principal = require("customers:read")
            ) -> dict[str, int]:
    return intake.pending(workspace(request))
