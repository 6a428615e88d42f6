"""Sign in and out (sessions for the dashboard), and who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from tierwise.definitions.roles import Principal
from tierwise.errors import say
from tierwise.store import accounts, audit
from tierwise.web.auth import (
    SESSION_COOKIE,
    authenticate,
    client_of,
    safe_next,
    workspace,
)
from tierwise.web.problems import RESPONSES, Problem

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


def _sign_in(request: Request, username: str, password: str) -> tuple[str, Principal]:
    """Check credentials, open a session and record the attempt; 401 or 429 otherwise."""
    client = client_of(request)
    wait = request.app.state.login_limiter.take(f"login:{client}", LOGIN_RATE, LOGIN_BURST)
    if wait is not None:
        raise Problem(429, say("too many sign-in attempts from this address",
                               "这个地址的登录尝试次数过多"),
                      headers={"Retry-After": str(max(1, round(wait + 0.5)))})
    ws = workspace(request)
    request.state.audited = True
    principal = None
    with ws.control.write() as conn:
        try:
            user_id = accounts.authenticate(conn, username, password)
        except accounts.AuthError as exc:
            failed = str(exc)
        else:
            failed = ""
            token, _ = accounts.open_session(conn, user_id, client)
            principal = accounts.session_principal(conn, token)
            audit.append(conn, f"user:{username}", "login", None, {"ok": True}, client)
    if failed or principal is None:
        with ws.control.write() as conn:
            audit.append(conn, f"user:{username}", "login_failed", None,
                         {"reason": failed}, client)
        raise Problem(401, failed or say("sign-in failed", "登录失败"))
    request.state.principal = principal
    return token, principal


def _set_session(request: Request, response: Response, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https",
                        max_age=accounts.SESSION_HOURS * 3600, path="/")


@router.post("/login", response_model=Me, summary="Sign in; sets the session cookie")
def login(body: Login, request: Request, response: Response) -> Me:
    token, principal = _sign_in(request, body.username, body.password)
    _set_session(request, response, token)
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


# -- the sign-in form (people in a browser) ----------------------------------------------

pages = APIRouter(include_in_schema=False)
FORM_CSRF_COOKIE = "tierwise_form_csrf"
_PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:22rem;margin:12vh auto;padding:0 1rem;
color:#1b1f24}}label{{display:block;margin-top:1rem}}input{{width:100%;padding:.5rem;
font:inherit;border:1px solid #57606a;border-radius:6px;box-sizing:border-box}}
button{{margin-top:1.2rem;width:100%;padding:.6rem;font:inherit;color:#fff;
background:#0b5cad;border:0;border-radius:6px}}.err{{color:#a40e26}}</style></head><body>
<h1>{title}</h1>{error}<form method="post" action="/login">
<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="next" value="{next}">
<label for="u">{user}</label><input id="u" name="username" autocomplete="username" required>
<label for="p">{password}</label><input id="p" name="password" type="password"
autocomplete="current-password" required><button type="submit">{submit}</button></form>
</body></html>"""
_WORDS = {"zh-CN": {"title": "登录 tierwise", "user": "用户名", "password": "密码",
                    "submit": "登录", "wrong": "用户名或密码错误"},
          "en": {"title": "Sign in to tierwise", "user": "User name", "password": "Password",
                 "submit": "Sign in", "wrong": "Wrong user name or password"}}


def _form(request: Request, error: bool, target: str) -> HTMLResponse:
    import html
    import secrets

    lang = workspace(request).config.locale
    words = _WORDS.get(lang, _WORDS["en"])
    token = secrets.token_urlsafe(24)
    page = _PAGE.format(lang=lang, csrf=token, next=html.escape(target), **{
        k: v for k, v in words.items() if k != "wrong"},
        error=f'<p class="err" role="alert">{words["wrong"]}</p>' if error else "")
    response = HTMLResponse(page, status_code=401 if error else 200, headers={
        "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                   "form-action 'self'; frame-ancestors 'none'"})
    response.set_cookie(FORM_CSRF_COOKIE, token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/login")
    return response


@pages.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> HTMLResponse:  # noqa: A002
    return _form(request, False, safe_next(next))


@pages.post("/login")
def login_form(request: Request, username: str = Form(..., max_length=64),
               password: str = Form(..., max_length=1024), csrf: str = Form(...),
               next: str = Form("/")) -> Response:  # noqa: A002
    """Form sign-in. CSRF: the hidden field must equal the cookie set with the form."""
    import hmac

    cookie = request.cookies.get(FORM_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf.encode()):
        raise Problem(403, say("the sign-in form expired or came from another site; reload it",
                               "登录表单已过期或来自其他网站；请重新加载"))
    try:
        token, _ = _sign_in(request, username, password)
    except Problem as exc:
        if exc.status == 401:
            return _form(request, True, safe_next(next))
        raise
    target = RedirectResponse(safe_next(next), status_code=303)
    _set_session(request, target, token)
    target.delete_cookie(FORM_CSRF_COOKIE, path="/login")
    return target
