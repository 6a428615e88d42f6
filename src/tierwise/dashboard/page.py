"""What every dashboard page shares: who is looking, the page frame in their language, and
the latest snapshot's view (or the "compute first" page without one)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse

from tierwise.dashboard.data import VIEWS, View
from tierwise.definitions.roles import Principal
from tierwise.errors import NotFoundError, say
from tierwise.web import i18n
from tierwise.web.auth import authenticate, workspace
from tierwise.web.problems import Problem, refuse_unknown_query
from tierwise.web.templating import ENV

HERE = Path(__file__).parent
STATIC = HERE / "static"
#: Words the browser script needs (the rest are rendered on the server).
SCRIPT_WORDS = ("counting", "customers", "ignore", "rows", "queued", "running", "done",
                "failed", "tier", "now", "after", "change", "moved", "saved", "new", "changed",
                "unchanged")
NAV = (("overview", "/"), ("rfm", "/rfm"), ("tiers", "/tiers"), ("lifecycle", "/lifecycle"),
       ("segments", "/segments"), ("customers", "/customers"), ("breakdown", "/breakdown"),
       ("funnel", "/funnel"), ("pipeline", "/pipeline"), ("economics", "/economics"),
       ("clv", "/clv"),
       ("actions", "/actions"), ("review", "/review"), ("duplicates", "/duplicates"),
       ("imports", "/imports"))



class SignIn(Exception):
    """Raised by a page when nobody is signed in: answered with a redirect to /login."""

    def __init__(self, target: str) -> None:
        self.target = target


#: The query parameters each page reads (besides ``lang``); any other is refused. The
#: customer list checks its own, naming its filters and their values.
PAGE_QUERY: dict[str, frozenset[str]] = {
    "/tiers": frozenset({"after", "before"}),
    "/lifecycle": frozenset({"after", "before"}),
    "/segments/{key}": frozenset({"q", "after"}),
    "/actions": frozenset({"status", "source", "action", "customer", "event", "since",
                           "until", "before", "owner", "team", "overdue", "tasks_page"}),
    "/actions/effect": frozenset({"source", "days"}),
    "/review": frozenset({"period", "segment"}),
    "/funnel": frozenset({"period", "by", "segment", "flow"}),
    "/funnel/customers": frozenset({"period", "by", "segment", "step", "tier", "after", "flow",
                                    "group"}),
    "/review/report.{fmt}": frozenset({"period", "segment"}),
    "/economics": frozenset({"period", "by", "segment", "order", "ascending"}),
    "/pipeline": frozenset({"period", "by"}),
    "/pipeline/opportunities": frozenset({"period", "stage", "by", "group", "after"}),
    "/imports": frozenset({"job"}),
    "/duplicates": frozenset({"status", "limit"}),
}
OWN_CHECK = frozenset({"/customers", "/breakdown"})


def known_page_query(request: Request) -> None:
    """A page refuses query parameters it does not read (a 400 naming the ones it does),
    instead of showing the unfiltered page as if they were not there; checked once the
    caller is signed in and allowed (``viewer``)."""
    path = getattr(request.scope.get("route"), "path", None)
    if path is not None and path not in OWN_CHECK:
        refuse_unknown_query(request, PAGE_QUERY.get(path, frozenset()), path)


def viewer(request: Request, permission: str) -> Principal:
    """The signed-in principal; SignIn without a session, 403 without the permission."""
    try:
        principal = authenticate(request)
    except Problem as exc:
        if exc.status == 401:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignIn(target) from None
        raise
    if not principal.can(permission):
        raise Problem(403, say(f"role {principal.role} may not {permission}",
                               f"角色 {principal.role} 没有 {permission} 权限"))
    known_page_query(request)
    return principal


def render(request: Request, principal: Principal, template: str, active: str,
           status_code: int = 200, **context: Any) -> HTMLResponse:
    ws = workspace(request)
    lang = i18n.language(request, ws.config.locale)
    words = i18n.table(lang)
    page = ENV.get_template(template).render(
        w=words, lang=lang, zone=ZoneInfo(ws.config.timezone), user=principal,
        csrf=principal.csrf_token or "", active=active, nav=NAV, path=request.url.path,
        query=request.url.query,
        script_words={k: words[k] for k in SCRIPT_WORDS}, **context)
    response = HTMLResponse(page, status_code=status_code)
    if request.query_params.get("lang") in i18n.LANGUAGES:
        response.set_cookie(i18n.LANG_COOKIE, request.query_params["lang"], samesite="strict",
                            secure=request.url.scheme == "https",
                            max_age=365 * 86400, path="/")
    return response


def view_of(request: Request, snapshot_id: int | None = None) -> View | None:
    try:
        return VIEWS.get(workspace(request), snapshot_id)
    except NotFoundError:
        return None


def language_of(request: Request) -> str:
    return i18n.language(request, workspace(request).config.locale)


@dataclass
class ValuePage:
    """What every page over the latest snapshot starts with."""

    principal: Principal
    view: View
    lang: str
    w: dict[str, str]


def value_page(active: str) -> Callable[[Callable[[Request, ValuePage], HTMLResponse]],
                                        Callable[[Request], HTMLResponse]]:
    """A page over the latest snapshot: ``build(request, page)`` runs when there is one;
    without a snapshot the "compute first" page answers instead."""

    def wrap(build: Callable[[Request, ValuePage], HTMLResponse]
             ) -> Callable[[Request], HTMLResponse]:
        def route(request: Request) -> HTMLResponse:
            principal = viewer(request, "values:read")
            view, lang = view_of(request), language_of(request)
            if view is None:
                return render(request, principal, "empty.html", active)
            return build(request, ValuePage(principal, view, lang, i18n.table(lang)))

        route.__name__ = build.__name__
        route.__doc__ = build.__doc__
        return route

    return wrap

def customers_url(filters: Mapping[str, object]) -> str | None:
    """The customer list narrowed by ``filters`` — what a chart element or a table row
    links to; None when a value is missing (the list cannot ask for "no value")."""
    if any(v is None for v in filters.values()):
        return None
    return "/customers?" + urlencode({k: str(v) for k, v in filters.items()})


def flow_links(flows: list[dict[str, Any]], column: str, before: int, to_latest: bool,
               also: Mapping[str, object] | None = None) -> list[str | None]:
    """Per flow of a migration Sankey, the customers who moved that way: those with the
    value now (the latest snapshot) who had the other one in snapshot ``before`` (and the
    filters ``also``); none when the flow ends in an older snapshot, or a side has no value
    (came or left)."""
    if not to_latest:
        return [None] * len(flows)
    return [customers_url({column: m["to"], f"was_{column}": m["from"], "since": before,
                           **(also or {})}) for m in flows]


def int_param(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None
