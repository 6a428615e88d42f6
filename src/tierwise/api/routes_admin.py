"""Administration: users and API keys, the audit log, privacy rights, data quality."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt

from tierwise.definitions.json_values import jsonable
from tierwise.definitions.roles import ROLES, Principal
from tierwise.errors import TierwiseError, say
from tierwise.ingest import quality
from tierwise.security import privacy
from tierwise.store import accounts, audit
from tierwise.web.auth import client_of, record, require, workspace
from tierwise.web.fields import Instant
from tierwise.web.problems import MAX_ID, RESPONSES, Problem

router = APIRouter(prefix="/v1", tags=["admin"], responses=RESPONSES)


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=accounts.MIN_PASSWORD, max_length=1024)
    role: str = Field(description=f"one of {', '.join(ROLES)}")
    owner_name: str | None = Field(None, max_length=200)
    display_name: str | None = Field(None, max_length=200)


class UserChange(BaseModel):
    disabled: StrictBool | None = None
    role: str | None = None
    owner_name: str | None = Field(None, max_length=200)


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: str
    scopes: list[str] | None = None
    expires_at: Instant | None = Field(None, description=(
        "Default: 90 days from now; at most api_key_max_days (tierwise.toml, default 366)."))
    no_expiry: StrictBool = Field(False, description="A key that never expires (admins only; "
                                  "audited).")
    owner_name: str | None = Field(None, max_length=200)
    rate_per_second: StrictFloat = Field(accounts.DEFAULT_KEY_RATE, gt=0, le=100_000)


class RetentionIn(BaseModel):
    days: dict[str, StrictInt] = Field(description="table → days to keep, e.g. {\"events\": 365}")


@router.get("/users", tags=["admin"], summary="Users")
def users(request: Request, principal: Principal = require("users:admin")
          ) -> list[dict[str, Any]]:
    with workspace(request).control.read() as conn:
        return [jsonable(u) for u in accounts.list_users(conn)]


@router.post("/users", status_code=201, summary="Add a user")
def add_user(body: UserIn, request: Request,
             principal: Principal = require("users:admin")) -> dict[str, Any]:
    if body.role not in ROLES:
        raise Problem(422, say(f"unknown role {body.role!r}; expected one of {', '.join(ROLES)}",
                               f"未知角色 {body.role!r}：应为 {', '.join(ROLES)} 之一"))
    with workspace(request).control.write() as conn:
        user_id = accounts.add_user(conn, body.username, body.password, body.role,
                                    body.owner_name, body.display_name)
        audit.append(conn, principal.actor, "user_add", f"user:{body.username}",
                     {"role": body.role, "owner_name": body.owner_name}, client_of(request))
    request.state.audited = True
    return {"user_id": user_id, "username": body.username, "role": body.role}


@router.patch("/users/{username}", summary="Disable, enable or change a user's role")
def change_user(username: str, body: UserChange, request: Request,
                principal: Principal = require("users:admin")) -> dict[str, str]:
    if body.role is not None and body.role not in ROLES:
        raise Problem(422, say(f"unknown role {body.role!r}; expected one of {', '.join(ROLES)}",
                               f"未知角色 {body.role!r}：应为 {', '.join(ROLES)} 之一"))
    with workspace(request).control.write() as conn:
        accounts.set_user(conn, username, disabled=body.disabled, role=body.role,
                          owner_name=body.owner_name)
        audit.append(conn, principal.actor, "user_change", f"user:{username}",
                     body.model_dump(exclude_none=True), client_of(request))
    request.state.audited = True
    return {"username": username}


@router.get("/keys", summary="API keys (never their secrets)")
def keys(request: Request, principal: Principal = require("users:admin")
         ) -> list[dict[str, Any]]:
    with workspace(request).control.read() as conn:
        return [jsonable(k) for k in accounts.list_keys(conn)]


@router.post("/keys", status_code=201, summary="Create an API key; its secret is shown once")
def create_key(body: KeyIn, request: Request,
               principal: Principal = require("users:admin")) -> dict[str, Any]:
    ws = workspace(request)
    try:
        with ws.control.write() as conn:
            new = accounts.create_key(conn, body.name, body.role, principal.actor,
                                      scopes=body.scopes, expires_at=body.expires_at,
                                      owner_name=body.owner_name,
                                      rate_per_second=body.rate_per_second,
                                      no_expiry=body.no_expiry,
                                      max_days=ws.config.api_key_max_days,
                                      creator_role=principal.role)
            audit.append(conn, principal.actor, "key_create", f"key:{new.key_id}",
                         {"role": body.role, "scopes": body.scopes,
                          "expires_at": new.expires_at, "no_expiry": body.no_expiry},
                         client_of(request))
    except (ValueError, TierwiseError) as exc:
        raise Problem(422, str(exc)) from None
    request.state.audited = True
    return {"key_id": new.key_id, "key": new.secret, "expires_at": jsonable(new.expires_at)}


@router.delete("/keys/{key_id}", status_code=204, summary="Revoke an API key")
def revoke_key(key_id: str, request: Request,
               principal: Principal = require("users:admin")) -> None:
    with workspace(request).control.write() as conn:
        accounts.revoke_key(conn, key_id)
        audit.append(conn, principal.actor, "key_revoke", f"key:{key_id}", {},
                     client_of(request))
    request.state.audited = True


@router.get("/audit", summary="Audit entries, newest first")
def audit_entries(request: Request, before: int | None = Query(None, ge=1, le=MAX_ID),
                  actor: str | None = Query(None, max_length=200),
                  action: str | None = Query(None, max_length=64),
                  limit: int = Query(100, ge=1, le=1000),
                  principal: Principal = require("audit:read")) -> list[dict[str, Any]]:
    with workspace(request).control.read() as conn:
        return [jsonable(e) for e in audit.entries(conn, limit=limit, before=before,
                                                   actor=actor, action=action)]


@router.get("/audit/verify", summary="Check the audit chain")
def audit_verify(request: Request, principal: Principal = require("audit:read")
                 ) -> dict[str, Any]:
    with workspace(request).control.read() as conn:
        result = audit.verify(conn)
    return vars(result)


@router.get("/privacy/customers/{customer_id}", summary="Everything held about a customer "
            "(subject access request)")
def privacy_export(customer_id: str, request: Request,
                   principal: Principal = require("privacy:admin")) -> dict[str, Any]:
    data = privacy.export_customer(workspace(request), customer_id)
    record(request, principal, "export_pii", f"customer:{customer_id}",
           {"kind": "subject_access"})
    return jsonable(data)  # type: ignore[no-any-return]


@router.delete("/privacy/customers/{customer_id}", summary="Erase a customer everywhere")
def privacy_erase(customer_id: str, request: Request,
                  principal: Principal = require("privacy:admin")) -> dict[str, Any]:
    result = privacy.erase_customer(workspace(request), customer_id)
    record(request, principal, "erase_customer", result.customer_ref, vars(result))
    return vars(result)


@router.post("/privacy/retention", summary="Delete facts older than a number of days")
def retention(body: RetentionIn, request: Request,
              principal: Principal = require("privacy:admin")) -> dict[str, int]:
    done = privacy.apply_retention(workspace(request), body.days)
    record(request, principal, "retention", None, {"days": body.days, "deleted": done})
    return done


@router.get("/quality", tags=["quality"], summary="The data-quality report")
def quality_report(request: Request, principal: Principal = require("quality:read")
                   ) -> dict[str, Any]:
    return jsonable(quality.report(workspace(request)))  # type: ignore[no-any-return]
