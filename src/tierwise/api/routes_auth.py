"""Sign in and out (sessions for the dashboard), and who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from tierwise.api.auth import (
    SESSION_COOKIE,
    authenticate,
    client_of,
    workspace,
)
from tierwise.api.problems import RESPONSES, Problem
from tierwise.security import accounts, audit
from tierwise.security.roles import Principal

router = APIRouter(prefix="/v1/auth", tags=["auth"], responses=RESPONSES)
#: Sign-in attempts per client address: 10 at once, then one every 5 seconds.
LOGIN_RATE, LOGIN_BURST = 0.2, 10.0


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Me(BaseModel):
    kind: str
    name: str
    role: str
    permissions: list[str]
    owner_name: str | None = None
    csrf_token: str | None = None


def _me(p: Principal) -> Me:
    return Me(kind=p.kind, name=p.name, role=p.role, permissions=sorted(p.permissions),
              owner_name=p.owner_name, csrf_token=p.csrf_token)


@router.post("/login", response_model=Me, summary="Sign in; sets the session cookie")
def login(body: Login, request: Request, response: Response) -> Me:
    client = client_of(request)
    wait = request.app.state.login_limiter.take(f"login:{client}", LOGIN_RATE, LOGIN_BURST)
    if wait is not None:
        raise Problem(429, "too many sign-in attempts from this address",
                      headers={"Retry-After": str(max(1, round(wait + 0.5)))})
    ws = workspace(request)
    request.state.audited = True
    with ws.control.write() as conn:
        try:
            user_id = accounts.authenticate(conn, body.username, body.password)
        except accounts.AuthError as exc:
            failed = str(exc)
        else:
            failed = ""
            token, _ = accounts.open_session(conn, user_id, client)
            principal = accounts.session_principal(conn, token)
            audit.append(conn, f"user:{body.username}", "login", None, {"ok": True}, client)
    if failed:
        with ws.control.write() as conn:
            audit.append(conn, f"user:{body.username}", "login_failed", None,
                         {"reason": failed}, client)
        raise Problem(401, failed)
    assert principal is not None
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https",
                        max_age=accounts.SESSION_HOURS * 3600, path="/")
    request.state.principal = principal
    return _me(principal)


@router.post("/logout", status_code=204, summary="Close the session")
def logout(request: Request, response: Response,
           principal: Principal = Depends(authenticate)) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        with workspace(request).control.write() as conn:
            accounts.close_session(conn, token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/me", response_model=Me, summary="Who is signed in, with what permissions")
def me(principal: Principal = Depends(authenticate)) -> Me:
    return _me(principal)
