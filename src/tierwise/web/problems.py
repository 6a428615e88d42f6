"""Errors as RFC 9457 ``application/problem+json``: a title, the status and a precise detail."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tierwise.definitions import invalid
from tierwise.errors import (
    ForbiddenError,
    ImportRejected,
    NotFoundError,
    TierwiseError,
    say,
)
from tierwise.store.accounts import AuthError
from tierwise.store.control import busy

log = logging.getLogger("tierwise.api")

MEDIA_TYPE = "application/problem+json"
#: Largest id or cursor a route accepts (ids are 64-bit in the control store).
MAX_ID = 2**62


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


#: Query parameters every route accepts: the language of the answer's words.
GLOBAL_QUERY = frozenset({"lang"})


def refuse_unknown_query(request: Request, allowed: Iterable[str], where: str) -> None:
    """A 400 naming the query parameters outside ``allowed`` (``lang`` is always allowed)
    and the ones ``where`` takes, in the language of the request; nothing when all are
    known. The one check behind every API route, dashboard page and page filter."""
    takes = sorted({*allowed, *GLOBAL_QUERY})
    unknown = sorted(set(request.query_params) - set(takes))
    if unknown:
        names, listed = ", ".join(repr(u) for u in unknown), ", ".join(takes)
        raise Problem(400, say(f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
                               f"{names}; {where} takes {listed}",
                               f"未知的参数 {names}；{where} 可用的参数：{listed}"),
                      unknown=unknown, allowed=takes)


#: ``openapi_extra`` of a route that takes filters on customer attributes
#: (``attributes.plan=gold``): those parameters are known to it.
ATTRIBUTE_FILTERS = {"x-attribute-filters": True}


def known_query(request: Request) -> None:
    """Refuse query parameters the route does not take (``?industry=…`` on a route without
    such a filter) instead of answering as if they were not there."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is not None:
        extra = [p for p in request.query_params if p.startswith("attributes.")] \
            if (getattr(route, "openapi_extra", None) or {}).get("x-attribute-filters") \
            else []
        refuse_unknown_query(request, (*_query_names(dependant), *extra),
                             getattr(route, "path", "this route"))


class Problem(Exception):
    """Raise in a route to answer with a problem document."""

    def __init__(self, status: int, detail: str, title: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title
        self.headers = headers
        self.extra = extra


_TITLES = {400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 413: "Request too large",
           415: "Unsupported media type", 422: "Invalid request", 429: "Too many requests",
           500: "Internal error"}


_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
#: The error answers every route may give, documented for the OpenAPI document.
RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": _TITLES[status],
             "content": {MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}}}
    for status in (400, 401, 403, 404, 413, 422, 429)
}


def problem_response(status: int, detail: str, title: str | None = None,
                     instance: str | None = None, headers: dict[str, str] | None = None,
                     **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title or _TITLES.get(status, "Error"),
            "status": status, "detail": detail, **extra}
    if instance:
        body["instance"] = instance
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, exc.title, request.url.path,
                                exc.headers, **exc.extra)

    @app.exception_handler(ImportRejected)
    async def _rejected(request: Request, exc: ImportRejected) -> JSONResponse:
        return problem_response(422, str(exc), "Import rejected", request.url.path,
                                rejected_rows=exc.total, rejects=exc.rejects[:100])

    @app.exception_handler(TierwiseError)
    async def _user_error(request: Request, exc: TierwiseError) -> JSONResponse:
        status = 404 if isinstance(exc, NotFoundError) else 400
        if isinstance(exc, AuthError):
            status = 401
        elif isinstance(exc, ForbiddenError):
            status = 403
        return problem_response(status, str(exc), None, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"location": invalid.location(e.get("loc", ())),
                   "message": str(invalid.message(e)), "type": e.get("type", "")}
                  for e in exc.errors()]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:5])
        return problem_response(422, detail or "invalid request", None, request.url.path,
                                errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), None, request.url.path,
                                dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if busy(exc):
            log.warning("busy store on %s %s: %s", request.method, request.url.path, exc)
            return problem_response(
                503, say("the workspace is busy (every connection to its store is taken or "
                         "its write lock held); nothing was changed, try again in a moment",
                         "工作区繁忙（存储的连接已用尽或写锁被占用）；未做任何更改，请稍后重试"),
                None, request.url.path, {"Retry-After": "2"})
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "the server failed to handle this request; the error "
                                "was logged", None, request.url.path)
