"""The dashboard's pages. Each page checks the same permission as the API route it mirrors;
a browser without a session is sent to the sign-in form and back."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from tierwise.dashboard import (
    breakdown_pages,
    customer_pages,
    economics_pages,
    funnel_pages,
    identity_pages,
    pipeline_pages,
    segment_pages,
    value_pages,
    work_pages,
)
from tierwise.dashboard.page import STATIC, SignIn
from tierwise.web import i18n
from tierwise.web.auth import safe_next

router = APIRouter(include_in_schema=False)

@router.get("/lang/{code}")
def switch_language(code: str, request: Request, next: str = "/") -> RedirectResponse:  # noqa: A002

    target = safe_next(next if next != "/docs" else "/")
    response = RedirectResponse(target, status_code=303)
    if code in i18n.LANGUAGES:
        response.set_cookie(i18n.LANG_COOKIE, code, samesite="strict", max_age=365 * 86400,
                            secure=request.url.scheme == "https",
                            path="/")
    return response


def install(app: FastAPI) -> None:
    """Add the pages, the static files and the sign-in redirect to an app."""

    async def to_sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignIn)
        return RedirectResponse(f"/login?next={quote(exc.target, safe='/')}", status_code=303)

    app.add_exception_handler(SignIn, to_sign_in)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return RedirectResponse("/static/favicon.svg", status_code=308)

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    for pages in (value_pages, segment_pages, customer_pages, breakdown_pages, funnel_pages,
                  economics_pages, pipeline_pages, work_pages, identity_pages):
        app.include_router(pages.router)
    app.include_router(router)
