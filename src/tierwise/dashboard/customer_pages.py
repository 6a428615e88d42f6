"""The customer pages: the list (search and filters by value) and the 360° view with its
timeline."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tierwise.actions import playbooks
from tierwise.dashboard.data import View, value_history
from tierwise.dashboard.page import (
    int_param,
    language_of,
    render,
    view_of,
    viewer,
)
from tierwise.definitions.json_values import jsonable
from tierwise.definitions.roles import Principal
from tierwise.definitions.schemas import table_schema
from tierwise.definitions.vocabulary import VALUE_COLUMNS
from tierwise.errors import NotFoundError, TierwiseError, say
from tierwise.insights import satisfaction
from tierwise.security import consent
from tierwise.segments import catalog
from tierwise.segments.membership import customer_segments
from tierwise.segments.vocabulary import vocabulary
from tierwise.services.breakdowns import known_segment
from tierwise.services.customers import FILTERS as CUSTOMER_FIELD_FILTERS
from tierwise.services.customers import (
    check_values,
    customer_profile,
    is_attribute,
    present_profile,
    search,
    searched_by,
)
from tierwise.store.control import utcnow
from tierwise.store.customers import ENUMERATED_FILTERS, attribute_key
from tierwise.store.preferences import CHANNELS
from tierwise.web import i18n
from tierwise.web.auth import workspace
from tierwise.web.problems import MAX_ID, Problem, refuse_unknown_query
from tierwise.web.templating import number

router = APIRouter(include_in_schema=False)
#: Snapshot columns the customer list can be filtered by (?tier=A&lifecycle=at_risk).
VALUE_FILTERS = tuple(VALUE_COLUMNS)
#: Filters on the customer's own fields (the same as the API's).
CUSTOMER_FILTERS = CUSTOMER_FIELD_FILTERS
PAGE = 50
TIMELINE_ITEMS = 200


# -- customers -----------------------------------------------------------------------------


#: Query parameters of the customers page besides the filters: ``since`` (a snapshot) with
#: ``was_tier`` / ``was_lifecycle`` keeps the customers who had that value then (the
#: migration Sankeys' flows link here); ``bought=2026-07`` those with a paid order in that
#: month (the monthly trend's bars); ``top=N`` the N with the most revenue (the Pareto
#: curve's points).
PAGE_PARAMS = ("q", "after", "lang", "since", "was_tier", "was_lifecycle", "bought", "top",
               "clv_band", "answered")
EARLIER = {"was_tier": "tier", "was_lifecycle": "lifecycle"}
#: Ids looked at per step when value filters and customer fields are combined.
STEP = 2_000


def _filters(request: Request, lang: str) -> tuple[dict[str, str], dict[str, str]]:
    return customer_filters(request, lang, "/customers", PAGE_PARAMS)


#: R and F scores of the latest snapshot (the RFM heatmap's cells link here).
SCORE_FILTERS = ("rfm_r", "rfm_f")
MAX_SCORE = 10


def _score(column: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_SCORE:
        raise TierwiseError(f"{column}={text[:20]!r}: expected a score from 1 to {MAX_SCORE}",
                            zh=f"{column}={text[:20]!r}：应为 1 到 {MAX_SCORE} 的分数")
    return int(text)


def customer_filters(request: Request, lang: str, path: str, others: tuple[str, ...]
                     ) -> tuple[dict[str, Any], dict[str, str]]:
    """A page's value filters (snapshot values, as codes: a label in either language is
    taken too) and customer-field filters; an unknown parameter (beyond ``others``, the
    page's own) or value is a 400 naming the valid ones, never an unfiltered list."""
    params = request.query_params
    attributes = [p for p in params if attribute_key(p)]  # attributes.plan=gold
    refuse_unknown_query(request, (*VALUE_FILTERS, *SCORE_FILTERS, *CUSTOMER_FILTERS,
                                   "segment", *others, *attributes), path)
    words = vocabulary(workspace(request), lang)
    try:
        values: dict[str, Any] = {c: words.column_code(c, v) for c in VALUE_FILTERS
                                  if (v := params.get(c))}
        values.update({c: _score(c, v) for c in SCORE_FILTERS if (v := params.get(c))})
        fields = {c: v for c in (*CUSTOMER_FILTERS, *attributes) if (v := params.get(c))}
        for name in attributes:
            is_attribute(workspace(request), name)  # not a sensitive one
        for name in ENUMERATED_FILTERS:
            if name in fields:
                fields[name] = words.column_code(name, fields[name])
        check_values(workspace(request), fields)  # a value nobody has: refused, not empty
        if params.get("segment"):  # the members of a segment: one that exists
            fields["segment"] = known_segment(workspace(request), params["segment"])
    except TierwiseError as exc:
        raise Problem(400, str(exc)) from None
    return values, fields


_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _within(request: Request, lang: str, view: View | None
            ) -> tuple[pa.Array | None, dict[str, str]]:
    """The customers the ``was_*``/``since``, ``bought`` and ``top`` parameters keep (None:
    none of them given), and those filters as shown."""
    params = request.query_params
    found, shown = _earlier(request, lang)
    parts = [found] if found is not None else []
    if params.get("bought") or params.get("top") or params.get("clv_band") \
            or params.get("answered"):
        if view is None:
            raise Problem(409, say("no computed values yet: run `tierwise compute` first",
                                   "还没有计算结果：请先运行 `tierwise compute`"))
        if bought := params.get("bought"):
            if not _MONTH.match(bought) or not 1900 <= int(bought[:4]) <= 2999:
                raise Problem(400, say(f"bought={bought[:20]!r}: expected a month, e.g. 2026-07",
                                       f"bought={bought[:20]!r}：应为月份，例如 2026-07"))
            parts.append(view.buyers_in_month(bought))
            shown["bought"] = bought
        if top := params.get("top"):
            if not top.isdigit() or not 1 <= int(top) <= view.table.num_rows:
                raise Problem(400, say(f"top={top[:20]!r}: expected 1 to "
                                       f"{view.table.num_rows} customers",
                                       f"top={top[:20]!r}：应为 1 到 {view.table.num_rows}"))
            parts.append(view.top_by_revenue(int(top)))
            shown["top"] = f"{int(top):,}"
        if answered := params.get("answered"):  # a month of the NPS trend
            found_ids = view.respondents_in_month(answered) if _MONTH.match(answered) \
                else None
            if found_ids is None:
                raise Problem(400, say(f"answered={answered[:20]!r}: expected one of the "
                                       "trend's twelve months, e.g. 2026-07",
                                       f"answered={answered[:20]!r}：应为趋势中的十二个月之一，"
                                       "例如 2026-07"))
            parts.append(found_ids)
            shown["answered"] = answered
        if band := params.get("clv_band"):  # a bar of the CLV histogram
            bands = view.clv_histogram()
            if not band.isdigit() or not int(band) < len(bands):
                raise Problem(400, say(f"clv_band={band[:20]!r}: expected 0 to {len(bands) - 1}",
                                       f"clv_band={band[:20]!r}：应为 0 到 {len(bands) - 1}"))
            parts.append(view.clv_band_members(int(band)))
            chosen_band = bands[int(band)]
            shown["clv_band"] = f"{chosen_band['low']:,.0f}–{chosen_band['high']:,.0f}"
    if not parts:
        return None, shown
    chosen = parts[0]
    for more in parts[1:]:
        chosen = chosen.filter(pc.is_in(chosen, more))
    return chosen, shown


def _earlier(request: Request, lang: str) -> tuple[pa.Array | None, dict[str, str]]:
    """The customers who had the ``was_*`` values in snapshot ``since`` (None: no such
    filter), and those filters as shown."""
    params = request.query_params
    asked = {EARLIER[k]: v for k in EARLIER if (v := params.get(k))}
    if not asked and not params.get("since"):
        return None, {}
    since = int_param(params.get("since"))
    old = view_of(request, since) if since is not None and 0 < since <= MAX_ID else None
    if not asked or old is None or old.snapshot.snapshot_id != since:
        raise Problem(400, say("since=<snapshot id> and was_tier or was_lifecycle go together: "
                               "the customers who had that value in that snapshot; "
                               f"since={params.get('since')!r} is no snapshot"
                               if asked else "since needs was_tier or was_lifecycle",
                               "since=<快照编号> 需与 was_tier 或 was_lifecycle 同用（当时取该值的"
                               f"客户）；since={params.get('since')!r} 不是已有的快照"))
    words = vocabulary(workspace(request), lang)
    try:
        codes = {c: words.column_code(c, v) for c, v in asked.items()}
    except TierwiseError as exc:
        raise Problem(400, str(exc)) from None
    ids, _ = old.matching(codes, None, old.table.num_rows)
    shown = {f"was_{c}": f"{(old.tier_label if c == 'tier' else View.stage_label)(v, lang)} "
                         f"(#{since})" for c, v in codes.items()}
    return pa.array(ids, pa.string()), shown


def _combined(request: Request, principal: Principal, view: View, values: dict[str, Any],
              fields: dict[str, str], q: str | None, after: str | None,
              segment: str | None = None, within: pa.Array | None = None
              ) -> tuple[list[dict[str, Any]], str | None]:
    """A page of customers whose snapshot values match ``values`` and whose fields match
    ``fields`` (and ``q``): the value matches in id order, a step at a time, narrowed in the
    control store, until the page is full."""
    ws, cursor = workspace(request), after
    found: list[dict[str, Any]] = []
    while len(found) <= PAGE:
        ids, _ = view.matching(values, cursor, STEP, within)
        if not ids:
            break
        rows, _ = search(ws, principal, q=q, ids=ids, limit=STEP, where=fields,
                         segment=segment)
        found += rows
        cursor = ids[-1]
        if len(ids) < STEP:
            break
    items = found[:PAGE]
    return items, items[-1]["customer_id"] if len(found) > PAGE else None


@router.get("/customers", response_class=HTMLResponse)
def customers(request: Request) -> HTMLResponse:
    principal = viewer(request, "customers:read")
    q = request.query_params.get("q") or None
    after = request.query_params.get("after") or None
    view, lang = view_of(request), language_of(request)
    filters, fields = _filters(request, lang)
    segment = fields.get("segment")
    where = {k: v for k, v in fields.items() if k != "segment"}
    matched = None
    within, earlier = _within(request, lang, view)
    if filters or within is not None:
        if not principal.can("values:read"):
            raise Problem(403, say(f"role {principal.role} may not read values",
                                   f"角色 {principal.role} 不能读取客户价值数据"))
        if view is None:
            raise Problem(409, say("no computed values yet: run `tierwise compute` (or wait for "
                                   "the nightly run) before filtering by tier, lifecycle, RFM "
                                   "segment or churn risk",
                                   "还没有计算结果：请先运行 `tierwise compute`（或等待夜间的计算"
                                   "），再按等级、生命周期、RFM 分群或流失风险筛选"))
        if fields or q:
            items, next_after = _combined(request, principal, view, filters, where, q, after,
                                          segment, within)
        else:
            page_ids, matched = view.matching(filters, after, PAGE + 1, within)
            items, _ = search(workspace(request), principal, ids=page_ids[:PAGE], limit=PAGE)
            next_after = page_ids[PAGE - 1] if len(page_ids) > PAGE else None
    else:
        items, next_after = search(workspace(request), principal, q=q, after=after, limit=PAGE,
                                   where=where, segment=segment)
    labels = {"tier": view.tier_label, "lifecycle": View.stage_label,
              "rfm_segment": view.rfm_label} if view else {}
    shown = {c: (labels[c](v, lang) if c in labels else str(v) if c in SCORE_FILTERS
                 else i18n.table(lang).get(f"risk_{v}", v)) for c, v in filters.items()}
    shown.update(fields)
    shown.update(earlier)
    kept = {**filters, **fields, **{k: v for k in (*EARLIER, "since", "bought", "top",
                                                     "clv_band", "answered")
                                    if (v := request.query_params.get(k))}}
    base = "&".join(f"{c}={quote(str(v))}" for c, v in kept.items())
    return render(request, principal, "customers.html", "customers", items=items,
                  next_after=next_after, q=q or "", filters=shown, matched=matched,
                  filter_query=base, search_pii=len(searched_by(principal)) > 1)


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
def customer(customer_id: str, request: Request) -> HTMLResponse:
    principal = viewer(request, "customers:read")
    ws, lang = workspace(request), language_of(request)
    try:
        found = present_profile(ws, principal, customer_profile(ws, customer_id))
    except NotFoundError:
        raise Problem(404, say(f"no customer with id {customer_id!r}",
                               f"没有编号为 {customer_id!r} 的客户")) from None
    values = request.app.state.latest_values.of(customer_id)
    history = customer_segments(ws, customer_id)
    names = catalog.names_in(ws, lang)
    words = vocabulary(ws, lang)
    view = view_of(request)
    timeline = sorted(_timeline(found, history, names, lang)
                      + _value_changes(value_history(ws, customer_id), view, lang),
                      key=lambda i: str(jsonable(i["at"])), reverse=True)[:TIMELINE_ITEMS]
    playbook = playbooks.applying(ws, [customer_id]).get(customer_id)
    happy = satisfaction.of_customer(ws, customer_id, utcnow()) \
        if principal.can("values:read") else None
    with ws.control.read() as conn:
        contact = {channel: {purpose: consent.decide(conn, customer_id, channel, purpose)
                             for purpose in consent.PURPOSES}
                   for channel in CHANNELS if channel != "all"}
    return render(request, principal, "customer.html", "customers",
                  customer=found.customer, profile=found, contact=contact,
                  values=values or {}, timeline=timeline, playbook=playbook, happy=happy,
                  segments=[{**h, "name": names.get(h["segment_key"], h["segment_key"])}
                            for h in history if h.get("exited_at") is None],
                  tier_label=(lambda t: view.tier_label(t, lang)) if view else str,
                  stage_label=lambda s: View.stage_label(s, lang),
                  stage_name=lambda s: words.column_label("opportunities.stage", s, lang),
                  role_name=lambda r: words.column_label("role", r, lang))


def _timeline(found: Any, history: list[dict[str, Any]], names: dict[str, str],
              lang: str) -> list[dict[str, Any]]:
    """Orders, events, tickets, feedback and segment entries/exits (unsorted), each placed
    at its table's time column; segments by their name in ``names`` (a removed one by its
    key)."""

    w = i18n.table(lang)

    def at(table: str, row: dict[str, Any]) -> Any:
        return row.get(table_schema(table).time_column or "")

    def joined(row: dict[str, Any], names: tuple[str, ...]) -> str:
        return " · ".join(f"{n} {row[n]}" if n in ("nps", "csat") else str(row[n])
                          for n in names if row.get(n) is not None)

    items: list[dict[str, Any]] = []
    items += [{"at": at("orders", o), "kind": w["orders"],
               "text": f"{o.get('order_id')} · {number(o.get('amount'), 2)} · "
                       f"{o.get('status')}"} for o in found.recent_orders]
    items += [{"at": at("events", e), "kind": w["events"], "text": str(e.get("type") or "")}
              for e in found.recent_events]
    items += [{"at": at("tickets", t), "kind": w["tickets"],
               "text": joined(t, ("ticket_id", "category", "status", "priority"))}
              for t in found.tickets]
    items += [{"at": at("feedback", f), "kind": w["feedback"],
               "text": joined(f, ("nps", "csat", "comment"))} for f in found.feedback]
    items += [{"at": o.get("stage_at") or o.get("created_at"), "kind": w["opportunities"],
               "text": joined(o, ("opportunity_id", "name", "stage")) + (
                   f" · {number(o['amount'], 2)}" if o.get("amount") is not None else "")}
              for o in found.opportunities]
    for h in history:
        name = names.get(h["segment_key"], h["segment_key"])
        items.append({"at": h.get("entered_at"), "kind": w["segment_changes"],
                      "text": f"→ {name}"})
        if h.get("exited_at"):
            items.append({"at": h.get("exited_at"), "kind": w["segment_changes"],
                          "text": f"← {name}"})
    return [i for i in items if i["at"] is not None]


def _value_changes(history: list[dict[str, Any]], view: View | None,
                   lang: str) -> list[dict[str, Any]]:
    """Timeline items for tier and lifecycle changes between consecutive snapshots."""
    w = i18n.table(lang)
    items = []
    for before, after in zip(history, history[1:], strict=False):
        if before["tier"] != after["tier"]:
            name = view.tier_label if view else (lambda t, _lang: str(t))
            items.append({"at": after["as_of"], "kind": w["tier_change"],
                          "text": f"{name(before['tier'], lang)} → {name(after['tier'], lang)}"})
        if before["lifecycle"] != after["lifecycle"]:
            items.append({"at": after["as_of"], "kind": w["stage_change"],
                          "text": f"{View.stage_label(before['lifecycle'], lang)} → "
                                  f"{View.stage_label(after['lifecycle'], lang)}"})
    return items
