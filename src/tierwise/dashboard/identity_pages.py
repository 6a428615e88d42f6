"""The duplicate review queue: pairs the matcher was not sure of, the two records side by
side (masked for the viewer's role), why the model thinks what it thinks, field by field,
and the decision — merge keeping either record, or not the same customer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tierwise.dashboard.page import int_param, language_of, render, viewer
from tierwise.errors import TierwiseError, say
from tierwise.identity import review
from tierwise.identity.match import explain
from tierwise.identity.scoring import describe
from tierwise.services.customers import present_customer
from tierwise.store import customers as customer_store
from tierwise.web.auth import workspace
from tierwise.web.problems import Problem

router = APIRouter(include_in_schema=False)
PAGE = 20
STATUSES = ("pending", "merged", "rejected")
#: The fields shown side by side, in this order.
SHOWN = ("name", "phone", "email", "city", "province", "address", "birth_date", "gender",
         "channel", "owner", "signup_at")


@router.get("/duplicates", response_class=HTMLResponse)
def duplicates_page(request: Request) -> HTMLResponse:
    principal = viewer(request, "customers:read")
    ws = workspace(request)
    lang = language_of(request)
    status = request.query_params.get("status") or "pending"
    if status not in STATUSES:
        raise Problem(400, say(f"status must be one of {', '.join(STATUSES)}, not {status!r}",
                               f"status 只能是 {'、'.join(STATUSES)}，而不是 {status!r}"))
    text = request.query_params.get("limit")
    limit = int_param(text) if text else PAGE
    if limit is None or not 1 <= limit <= 200:
        raise Problem(400, say(f"limit must be a whole number from 1 to 200, not {text!r}",
                               f"limit 应为 1 到 200 之间的整数，而不是 {text!r}"))
    pairs = review.pending(ws, limit, status)
    wanted = sorted({p["left_id"] for p in pairs} | {p["right_id"] for p in pairs})
    with ws.control.read() as conn:
        rows = customer_store.page(conn, ids=wanted, limit=len(wanted)) if wanted else []
    people = {r["customer_id"]: present_customer(ws, principal, r) for r in rows}
    shown: list[dict[str, Any]] = []
    for pair in pairs:
        why: dict[str, Any] | None = None
        note = None
        if pair["left_id"] in people and pair["right_id"] in people:
            try:
                why = explain(ws, pair["left_id"], pair["right_id"])
            except TierwiseError as exc:
                note = str(exc)
        else:
            note = say("one of the two is no longer a customer (merged or deleted)",
                       "其中一位已不再是客户（已合并或删除）")
        if why is not None:
            for f in why["fields"]:
                f["field_words"] = describe(f["field"], lang)
                f["reason"] = describe(f["level"], lang)
        shown.append({**pair, "left": people.get(pair["left_id"]),
                      "right": people.get(pair["right_id"]), "why": why, "note": note})
    return render(request, principal, "duplicates.html", "duplicates", pairs=shown,
                  status=status, statuses=STATUSES, shown_fields=SHOWN, limit=limit,
                  can_decide=principal.can("customers:write"))
