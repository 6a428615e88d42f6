"""The FastAPI application: ``create_app(workspace)``.

Middleware, outermost first: request-size limits, security headers, and the audit of every
write (who, when, what, from where, and the answer's status).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import Depends, FastAPI

from tierwise.errors import speaking
from tierwise.realtime.process import WorkerProcess
from tierwise.realtime.worker import Worker
from tierwise.store import audit
from tierwise.web import problems
from tierwise.web.auth import SAFE_METHODS, RateLimiter, audit_request
from tierwise.web.jobs import JobRunner
from tierwise.web.views import LatestValues
from tierwise.workspace import Workspace

log = logging.getLogger("tierwise.api")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Largest request body in bytes; uploads of files to import may be larger.
MAX_BODY = 1 << 20
MAX_UPLOAD = 512 << 20
UPLOAD_PATHS = ("/v1/imports", "/dashboard/imports/inspect")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"content-security-policy",
     # style attributes only (no <style> elements): the charts' tooltips and hover
     # highlights are styled that way, and were blocked; scripts stay 'self' alone
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; "
     b"style-src-attr 'unsafe-inline'; script-src 'self'; "
     b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"cache-control", b"no-store"),
]


async def _problem(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"type": "about:blank", "title": problems._TITLES.get(status, "Error"),
                       "status": status, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", problems.MEDIA_TYPE.encode()),
                            (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


class _HttpMiddleware:
    """Pure ASGI middleware that looks at HTTP requests only (no per-request objects)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        else:
            await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class BodyLimit(_HttpMiddleware):
    """Refuse bodies over the limit: by Content-Length at once, else while streaming."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = MAX_UPLOAD if scope["path"].startswith(UPLOAD_PATHS) else MAX_BODY
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _problem(send, 400, "Content-Length is not a number")
                    return
                if declared > limit:
                    await _problem(send, 413, f"the request body is {declared:,} bytes; the "
                                   f"limit here is {limit:,}")
                    return
        seen = 0
        started = False
        exceeded = False

        async def limited() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True
                    raise _TooLarge(limit)
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if exceeded:
                # Whatever the application made of the interrupted body (a parser says 400,
                # a form reader 422), the answer is that it was too large.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _problem(send, 413, f"the request body exceeds {limit:,} bytes")
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except _TooLarge as exc:
            if not started:
                await _problem(send, 413, f"the request body exceeds {exc.limit:,} bytes")


class _TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit


#: Sent over HTTPS only: browsers then refuse plain HTTP to this host for a year.
HSTS = (b"strict-transport-security", b"max-age=31536000")


class SecurityHeaders(_HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra = [*SECURITY_HEADERS, HSTS] if scope.get("scheme") == "https" \
            else SECURITY_HEADERS

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {n.lower() for n, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    h for h in extra if h[0] not in present]
            await send(message)

        await self.app(scope, receive, with_headers)


class AuditWrites(_HttpMiddleware):
    """Record every unsafe request in the audit log once its answer is known."""

    def __init__(self, app: ASGIApp, ws: Workspace) -> None:
        super().__init__(app)
        self.ws = ws

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            state = scope.get("state") or {}
            principal = state.get("principal")
            # Routes that write their own entry set "audited"; requests refused before anyone
            # was identified are not recorded (sign-in failures are, by the sign-in route).
            if not state.get("audited") and (principal is not None or status != 401):
                route = getattr(scope.get("route"), "path", None)
                actor = principal.actor if principal else "anonymous"
                client = scope["client"][0] if scope.get("client") else None
                # On a worker thread: waiting here for the database (a busy write lock, a
                # pool with every connection taken) would stop the event loop, and with it
                # every other request the server is answering.
                await anyio.to_thread.run_sync(
                    self._record, actor, scope["method"], scope["path"], route, status, client)

    def _record(self, actor: str, method: str, path: str, route: str | None, status: int,
                client: str | None) -> None:
        try:
            with self.ws.control.write() as conn:
                audit_request(conn, actor, method, path, route, status, client)
        except Exception:  # the answer is sent; losing the entry must be loud
            log.exception("could not write the audit entry for %s %s", method, path)


access_log = logging.getLogger("tierwise.access")


class Speaking(_HttpMiddleware):
    """Errors and messages of a request in the caller's language (``?lang=``, the cookie,
    Accept-Language), else the workspace's locale."""

    def __init__(self, app: ASGIApp, ws: Workspace) -> None:
        super().__init__(app)
        self.ws = ws

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        from starlette.requests import Request

        from tierwise.web.i18n import language

        with speaking(language(Request(scope), self.ws.config.locale)):
            await self.app(scope, receive, send)


class AccessLog(_HttpMiddleware):
    """One line per request: client, method, path, status, milliseconds. Query values are
    left out, names kept (``?q=…``): a search for an e-mail or a phone must not reach a log."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            access_log.info('%s "%s %s%s" %d %.0fms', _client(scope), scope["method"],
                            scope["path"], redacted_query(scope.get("query_string", b"")),
                            status, (time.perf_counter() - started) * 1000)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}" if client else "-"


def redacted_query(raw: bytes) -> str:
    """A query string with its values left out.

    >>> redacted_query(b"q=zhang%40example.com&limit=50"), redacted_query(b"")
    ('?q=…&limit=…', '')
    """
    names = [part.split(b"=", 1)[0].decode("latin-1") for part in raw.split(b"&") if part]
    return "?" + "&".join(f"{n}=…" for n in names) if names else ""


#: Seconds between runs of the retention policy while the server runs.
MAINTENANCE_EVERY = 3600.0


def _maintenance(ws: Workspace, stop: threading.Event) -> None:
    """Apply the workspace's retention policy and keep settings now and then every hour
    until stopped."""
    from tierwise.security.housekeeping import prune
    from tierwise.security.privacy import apply_retention

    while not stop.is_set():
        if ws.config.retention_days:
            try:
                deleted = apply_retention(ws, dict(ws.config.retention_days))
                with ws.control.write() as conn:
                    audit.append(conn, "system:retention", "retention", None,
                                 {"days": ws.config.retention_days, "deleted": deleted})
            except Exception:
                log.exception("the retention run failed; it is retried in an hour")
        try:
            pruned = prune(ws)
            if any(pruned.values()):
                log.info("pruned %s", pruned)
        except Exception:
            log.exception("pruning failed; it is retried in an hour")
        stop.wait(MAINTENANCE_EVERY)


def _schedule(ws: Workspace, stop: threading.Event) -> None:
    """Run the scheduled jobs: at start-up (a run missed while no server ran) and then
    whenever one falls due (``server.schedule``)."""
    from tierwise.server.schedule import TICK_SECONDS, Scheduler

    scheduler = Scheduler(ws)
    while not stop.is_set():
        try:
            scheduler.tick()
        except Exception:
            log.exception("the scheduler's tick failed; it tries again")
        stop.wait(TICK_SECONDS)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    stop = threading.Event()
    threading.Thread(target=_maintenance, args=(app.state.ws, stop),
                     name="tierwise-maintenance", daemon=True).start()
    threading.Thread(target=_schedule, args=(app.state.ws, stop),
                     name="tierwise-schedule", daemon=True).start()
    from tierwise.dashboard.data import keep_warm

    threading.Thread(target=keep_warm, args=(app.state.ws, stop),
                     kwargs={"also": app.state.latest_values.table,
                             "after": app.state.worker.caught_up},
                     name="tierwise-dashboard-warm", daemon=True).start()
    app.state.worker.start()
    # the modules and the app live as long as the process: out of the cyclic collector's
    # sight (after one last collection, so that no garbage is kept), a full collection of
    # this process takes a few milliseconds instead of ~160 ms, a pause of every request
    # under way every minute or so
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        stop.set()
        app.state.worker.stop()
        app.state.jobs.shutdown()


def app_from_environment() -> FastAPI:
    """The app for ``$TIERWISE_WORKSPACE``: what each ``serve --workers N`` process loads."""
    return create_app(Workspace.open(), worker="process")


def create_app(ws: Workspace, worker: str = "thread") -> FastAPI:
    """The API for one workspace, with the real-time worker in a thread of this process or
    (``worker="process"``, what ``tierwise serve`` does) in a child process.

    >>> from fastapi.testclient import TestClient  # doctest: +SKIP
    >>> TestClient(create_app(Workspace.open("demo-workspace"))).get("/health").json()
    {'status': 'ok'}
    """
    from tierwise.api import (
        routes_actions,
        routes_admin,
        routes_auth,
        routes_customers,
        routes_docs,
        routes_identity,
        routes_imports,
        routes_insights,
        routes_intake,
        routes_segments,
        routes_unsubscribe,
        routes_values,
    )

    app = FastAPI(title="tierwise", version="1", docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=_lifespan,
                  description="Customer segmentation and tiering. Every route needs a signed-in "
                  "session or an API key (`Authorization: Bearer tw_…`) except /health.")
    app.state.ws = ws
    app.state.limiter = RateLimiter()
    app.state.login_limiter = RateLimiter()
    app.state.key_touched = {}
    app.state.jobs = JobRunner(ws)
    app.state.latest_values = LatestValues(ws)
    if worker not in ("thread", "process"):
        raise ValueError(f"worker={worker!r}: expected 'thread' or 'process'")
    # passing pipe ends to a child needs POSIX; elsewhere the worker stays a thread
    in_process = worker == "thread" or os.name != "posix"
    app.state.worker = Worker(ws) if in_process else WorkerProcess(ws)
    problems.install(app)

    @app.get("/health", tags=["health"], summary="Liveness check (no authentication)")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    # routes_identity first: /v1/customers/match must win over /v1/customers/{id}
    for module in (routes_identity, routes_auth, routes_customers, routes_imports,
                   routes_segments, routes_values, routes_insights, routes_intake,
                   routes_actions, routes_admin, routes_docs):
        app.include_router(module.router, dependencies=[Depends(problems.known_query)])
    app.include_router(routes_auth.pages)
    app.include_router(routes_unsubscribe.pages)
    from tierwise.server import metrics

    app.include_router(metrics.router)
    from tierwise.dashboard import pages

    pages.install(app)
    # Starlette wraps the last added middleware outermost.
    app.add_middleware(Speaking, ws=ws)
    app.add_middleware(AuditWrites, ws=ws)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit)
    app.add_middleware(AccessLog)
    return app
