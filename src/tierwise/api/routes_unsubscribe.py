"""The unsubscribe page customers reach from a marketing e-mail (no sign-in: the link's
signature is the proof, ``security.unsubscribe``). ``GET`` shows a button; ``POST`` — the
button, or a mail client's one-click unsubscribe (RFC 8058) to the same address —
unsubscribes."""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tierwise.errors import NotFoundError, TierwiseError, speaking
from tierwise.security import unsubscribe
from tierwise.store import preferences
from tierwise.web.auth import client_of, workspace

pages = APIRouter(include_in_schema=False)

_PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:28rem;margin:12vh auto;
padding:0 1rem;color:#1b1f24}}button{{margin-top:1.2rem;padding:.6rem 1.2rem;font:inherit;
color:#fff;background:#0b5cad;border:0;border-radius:6px}}.err{{color:#a40e26}}</style>
</head><body><h1>{title}</h1>{body}</body></html>"""
_WORDS = {
    "zh-CN": {"title": "退订", "ask": "不再通过{channel}接收营销信息？",
              "button": "确认退订", "done": "已退订：今后不会再通过{channel}向您发送营销信息。",
              "gone": "我们的记录中已没有这个地址。", "email": "电子邮件", "sms": "短信"},
    "en": {"title": "Unsubscribe", "ask": "Stop receiving marketing messages by {channel}?",
           "button": "Unsubscribe", "done": "Unsubscribed: you will get no more marketing "
           "messages by {channel}.", "gone": "This address is no longer in our records.",
           "email": "e-mail", "sms": "text message"},
}


def _page(request: Request, body: str, status: int = 200) -> HTMLResponse:
    lang = workspace(request).config.locale
    words = _WORDS.get(lang, _WORDS["en"])
    return HTMLResponse(_PAGE.format(lang=lang, title=words["title"], body=body),
                        status_code=status, headers={
                            "content-security-policy": "default-src 'none'; style-src "
                            "'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
                            "cache-control": "no-store", "referrer-policy": "no-referrer"})


def _words(request: Request) -> dict[str, str]:
    return _WORDS.get(workspace(request).config.locale, _WORDS["en"])


def _channel(request: Request, channel: str) -> str:
    return _words(request).get(channel, channel)


def _refused(request: Request, exc: TierwiseError) -> HTMLResponse:
    with speaking(workspace(request).config.locale):
        text = _words(request)["gone"] if isinstance(exc, NotFoundError) else str(exc)
    return _page(request, f'<p class="err" role="alert">{html.escape(text)}</p>',
                 404 if isinstance(exc, NotFoundError) else 400)


def _fields(params: dict[str, str]) -> tuple[str, str, str] | None:
    found = (params.get("c") or "", params.get("ch") or "", params.get("t") or "")
    if not all(found) or found[1] not in preferences.CHANNELS or found[1] == "all" \
            or max(len(v) for v in found) > 400:
        return None
    return found


@pages.get("/unsubscribe", response_class=HTMLResponse)
def ask(request: Request) -> HTMLResponse:
    fields = _fields(dict(request.query_params))
    if fields is None:
        return _refused(request, unsubscribe.invalid_link())
    try:
        unsubscribe.customer_of(workspace(request), *fields)
    except TierwiseError as exc:
        return _refused(request, exc)
    words = _words(request)
    hidden = "".join(f'<input type="hidden" name="{n}" value="{html.escape(v)}">'
                     for n, v in zip(("c", "ch", "t"), fields, strict=True))
    question = words["ask"].format(channel=_channel(request, fields[1]))
    return _page(request, f'<p>{html.escape(question)}</p>'
                 f'<form method="post" action="/unsubscribe">{hidden}'
                 f'<button type="submit">{words["button"]}</button></form>')


@pages.post("/unsubscribe", response_class=HTMLResponse)
async def confirm(request: Request) -> HTMLResponse:
    form = await request.form()
    params = {**dict(request.query_params),
              **{k: str(v) for k, v in form.items() if isinstance(v, str)}}
    fields = _fields(params)
    request.state.audited = True  # the unsubscribe writes its own entry (or nothing)
    if fields is None:
        return _refused(request, unsubscribe.invalid_link())
    from starlette.concurrency import run_in_threadpool

    try:
        await run_in_threadpool(unsubscribe.unsubscribe, workspace(request), *fields,
                                client_of(request))
    except TierwiseError as exc:
        return _refused(request, exc)
    words = _words(request)
    return _page(request, f'<p role="status">'
                 f'{html.escape(words["done"].format(channel=_channel(request, fields[1])))}'
                 "</p>")
