"""The dashboard's Jinja environment: its templates and the filters they use, shared by the
pages and the printable report."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, Undefined, pass_context, select_autoescape
from markupsafe import Markup

from tierwise.definitions.json_values import jsonable
from tierwise.web.i18n import code_label


def number(value: Any, digits: int = 0) -> str:
    if value is None or isinstance(value, Undefined):
        return "—"
    return f"{value:,.{digits}f}"


def _percent(value: Any, digits: int = 1) -> str:
    return "—" if value is None or isinstance(value, Undefined) else f"{100 * value:.{digits}f}%"


@pass_context
def _when(context: Any, value: Any) -> str:
    """A date-time in the workspace's time zone (naive values are UTC)."""
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        zone = context.get("zone")
        if zone is not None:
            value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(zone)
    return f"{value:%Y-%m-%d %H:%M}"


def _chart_json(option: Any) -> Markup:
    """JSON safe inside <script type="application/json">: no '</' can close the element."""
    text = json.dumps(jsonable(option), ensure_ascii=False, separators=(",", ":"))
    return Markup(text.replace("</", "<\\/").replace("<!--", "<\\!--"))


@pass_context
def _label(context: Any, code: object, prefix: str) -> str:
    """``{{ d.status|label('ds') }}``: a code in the page's language (``i18n.code_label``)."""
    return code_label(prefix, code, context.get("lang") or "en")


ENV = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                  autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
ENV.filters.update(number=number, percent=_percent, when=_when, chart_json=_chart_json,
                   urlquote=lambda v: quote(str(v), safe=""), label=_label)


__all__ = ["ENV", "number"]
