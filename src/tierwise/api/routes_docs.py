"""The OpenAPI document and a readable reference page generated from it (no scripts, no CDN)."""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from tierwise.definitions.roles import Principal
from tierwise.web.auth import authenticate
from tierwise.web.problems import Problem

router = APIRouter(tags=["docs"])
_STYLE = ("body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
          "padding:0 1rem;color:#1b1f24}h2{margin-top:2rem;border-bottom:1px solid #d0d7de}"
          ".op{margin:.6rem 0;padding:.5rem .8rem;border:1px solid #d0d7de;border-radius:6px}"
          ".m{display:inline-block;min-width:4.5rem;font-weight:600}"
          "code{background:#f3f4f6;padding:0 .25rem;border-radius:3px}"
          "td{padding:.1rem .6rem .1rem 0;vertical-align:top}")


def _spec(request: Request) -> dict[str, Any]:
    spec: dict[str, Any] = request.app.openapi()
    return spec


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, principal: Principal = Depends(authenticate)) -> JSONResponse:
    return JSONResponse(_spec(request))


@router.get("/docs", include_in_schema=False, response_class=HTMLResponse)
def docs(request: Request) -> Response:
    try:
        authenticate(request)
    except Problem as exc:
        if exc.status == 401:  # a person in a browser: to the sign-in form and back
            return RedirectResponse("/login?next=/docs", status_code=303)
        raise
    spec = _spec(request)
    by_tag: dict[str, list[str]] = {}
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            params = "".join(
                f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{p['in']}</td>"
                f"<td>{html.escape(p.get('description', ''))}</td></tr>"
                for p in op.get("parameters", []))
            body = op.get("requestBody", {}).get("content", {})
            block = (f"<div class='op'><span class='m'>{method.upper()}</span>"
                     f"<code>{html.escape(path)}</code> — {html.escape(op.get('summary', ''))}"
                     + (f"<table>{params}</table>" if params else "")
                     + (f"<div>body: {', '.join(html.escape(k) for k in body)}</div>"
                        if body else "") + "</div>")
            by_tag.setdefault((op.get("tags") or ["other"])[0], []).append(block)
    sections = "".join(f"<h2>{html.escape(tag)}</h2>{''.join(ops)}"
                       for tag, ops in by_tag.items())
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>tierwise API"
            f"</title><style>{_STYLE}</style></head><body><h1>tierwise API v1</h1>"
            f"<p>{html.escape(spec['info'].get('description', ''))} The machine-readable "
            f"document is <a href='/openapi.json'>/openapi.json</a>.</p>{sections}</body></html>")
    # The inline style needs its own CSP allowance; the page has no scripts.
    return HTMLResponse(page, headers={"content-security-policy":
                                       "default-src 'none'; style-src 'unsafe-inline'"})
