"""Who is asking, may they, and how often: principals, permissions, CSRF and rate limits.

Machines send ``Authorization: Bearer tw_<id>_<secret>``; people sign in and carry the
session cookie, and every unsafe request of a cookie session must repeat the session's CSRF
token in the ``X-CSRF-Token`` header (a cross-site form cannot set a header).
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request

from tierwise.definitions.roles import PERMISSIONS, Principal
from tierwise.errors import say
from tierwise.store import accounts
from tierwise.web.problems import Problem
from tierwise.workspace import Workspace

SESSION_COOKIE = "tierwise_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
USER_RATE = 20.0  # requests per second for a signed-in person
TOUCH_EVERY = 60.0  # seconds between writes of a key's last_used_at


class RateLimiter:
    """Token buckets per principal: ``rate`` per second, bursts up to twice that (or
    ``burst``)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, name: str, rate: float, burst: float | None = None) -> float | None:
        """None if allowed; else the seconds to wait."""
        burst = burst or max(2.0 * rate, 1.0)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(name, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[name] = (tokens, now)
                return (1.0 - tokens) / rate
            self._buckets[name] = (tokens - 1.0, now)
            return None


def workspace(request: Request) -> Workspace:
    ws: Workspace = request.app.state.ws
    return ws


def client_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def _unauthenticated(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="tierwise"'})


def authenticate(request: Request) -> Principal:
    """The principal of a request, or 401; checks CSRF and the rate limit on the way."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    ws = workspace(request)
    state = request.app.state
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthenticated("use 'Authorization: Bearer tw_<id>_<secret>'")
        with ws.control.read() as conn:
            try:
                principal, rate = accounts.key_principal(conn, token.strip())
            except accounts.AuthError as exc:
                raise _unauthenticated(str(exc)) from None
        now = time.monotonic()
        if now - state.key_touched.get(principal.name, 0.0) > TOUCH_EVERY:
            state.key_touched[principal.name] = now
            with ws.control.write() as conn:
                accounts.touch_key(conn, principal.name)
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise _unauthenticated("sign in (POST /v1/auth/login) or send an API key")
        with ws.control.read() as conn:
            found = accounts.session_principal(conn, cookie)
        if found is None:
            raise _unauthenticated("the session expired or was closed; sign in again")
        principal, rate = found, USER_RATE
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), (principal.csrf_token or "").encode()):
                raise Problem(403, say(f"missing or wrong {CSRF_HEADER} header (the session's "
                                       "CSRF token is returned by the login)",
                                       f"缺少或错误的 {CSRF_HEADER} 请求头（会话的 CSRF 令牌由登录"
                                       "返回）"))
    wait = state.limiter.take(principal.actor, rate)
    if wait is not None:
        raise Problem(429, say(f"rate limit of {rate:g} requests per second exceeded",
                               f"超出每秒 {rate:g} 次请求的速率限制"),
                      headers={"Retry-After": str(max(1, round(wait + 0.5)))})
    request.state.principal = principal
    return principal


def require(permission: str) -> Any:
    """A dependency that admits principals holding ``permission`` (403 otherwise)."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission}")

    def check(principal: Principal = Depends(authenticate)) -> Principal:
        if not principal.can(permission):
            raise Problem(403, say(f"role {principal.role} may not {PERMISSIONS[permission]} "
                                   f"(needs {permission})",
                                   f"角色 {principal.role} 没有 {permission} 权限"))
        return principal

    check.permission = permission  # type: ignore[attr-defined]  # read by the role matrix
    return Depends(check)


def audit_request(conn: Any, actor: str, method: str, path: str,
                  route: str | None, status: int, client: str | None) -> None:
    """The entry a write request leaves in the audit log: written by the audit middleware
    once the answer is sent, or by a route inside its own transaction (``written_with``)."""
    from tierwise.store import audit

    audit.append(conn, actor, f"{method} {path}"[:64], path,
                 {"status": status, "route": route}, client)


def written_with(request: Request, principal: Principal, status: int
                 ) -> Callable[[Any], None]:
    """The request's audit entry, to be written in the transaction of its change;
    ``status`` is the answer it gets when that commits. The route then sets
    ``request.state.audited`` (only then: a change rolled back leaves its entry to the
    middleware, with the status the request really got)."""
    route = getattr(request.scope.get("route"), "path", None)

    def write(conn: Any) -> None:
        audit_request(conn, principal.actor, request.method, request.url.path, route, status,
                      client_of(request))

    return write


def record(request: Request, principal: Principal, action: str, target: str | None,
           detail: dict[str, Any]) -> None:
    """An audit entry for this request (in its own transaction); the generic entry of the
    audit middleware is then left out."""
    from tierwise.store import audit

    with workspace(request).control.write() as conn:
        audit.append(conn, principal.actor, action, target, detail, client_of(request))
    request.state.audited = True


def required_permission(dependency: Callable[..., Any]) -> str | None:
    return getattr(dependency, "permission", None)


def safe_next(target: str | None) -> str:
    """Only paths on this server (no //host or scheme) may be redirected to."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
