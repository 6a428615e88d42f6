"""Customers as the front ends show them: a page of a search, and the 360° view of one
customer (master data plus their orders, events, tickets, feedback and, for an account,
its opportunities)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from tierwise.definitions.json_values import jsonable
from tierwise.definitions.roles import Principal
from tierwise.errors import NotFoundError, TierwiseError
from tierwise.ingest.cleaning import phone_cleaner
from tierwise.services import pipeline as pipelines
from tierwise.store import customers as customer_store
from tierwise.workspace import Workspace

RECENT = 10


@dataclass
class CustomerProfile:
    customer: dict[str, Any]
    order_summary: dict[str, Any]
    recent_orders: list[dict[str, Any]]
    event_counts: list[dict[str, Any]]
    recent_events: list[dict[str, Any]]
    tickets: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    as_of: datetime
    referrals: dict[str, Any] = field(default_factory=dict)
    #: Open ones first, then the latest; each as it stood at as_of's import.
    opportunities: list[dict[str, Any]] = field(default_factory=list)
    #: Open opportunities and their amount (weighted by probability), won ones and theirs.
    pipeline: dict[str, Any] = field(default_factory=dict)
    #: An account's people (contacts), decision makers first, each with its role, paid
    #: orders and revenue, and events in the 30 days to as_of.
    people: list[dict[str, Any]] = field(default_factory=list)
    #: An account's figures with its people's rows (paid orders, revenue, events in the last
    #: 30 days, people); empty for a customer without contacts.
    rollup: dict[str, Any] = field(default_factory=dict)
    #: A contact's account (customer_id, name, the contact's role); None otherwise.
    account: dict[str, Any] | None = None


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


def customer_profile(ws: Workspace, customer_id: str, as_of: datetime | None = None
                     ) -> CustomerProfile:
    """Everything tierwise holds about ``customer_id`` as of an instant (default now).

    >>> customer_profile(ws, "C000123").order_summary["orders"]  # doctest: +SKIP
    7
    """
    with ws.control.read() as conn:
        customer = customer_store.get(conn, customer_id)
    if customer is None:
        raise NotFoundError(f"no customer with id {customer_id!r}",
                            zh=f"没有编号为 {customer_id!r} 的客户")
    as_of = as_of or datetime.now().astimezone()
    params = [customer_id, as_of]
    # One customer's rows, on this machine (DuckDB's SQL below): a lookup, not a scan that
    # needs the workspace's engine (on Spark it would take seconds a page).
    with ws.engine.for_staging().session(ws.facts.scans()) as s:
        summary = _rows(s.query(
            "SELECT count(*) FILTER (WHERE status = 'paid') AS orders, "
            "coalesce(sum(amount) FILTER (WHERE status = 'paid'), 0) AS revenue, "
            "avg(amount) FILTER (WHERE status = 'paid') AS average_order, "
            "count(*) FILTER (WHERE status = 'refunded') AS refunds, "
            "count(*) FILTER (WHERE status = 'cancelled') AS cancellations, "
            "min(ordered_at) FILTER (WHERE status = 'paid') AS first_order_at, "
            "max(ordered_at) FILTER (WHERE status = 'paid') AS last_order_at, "
            "date_diff('day', max(ordered_at) FILTER (WHERE status = 'paid'), $2::TIMESTAMPTZ)"
            " AS days_since_last_order, "
            "coalesce(sum(amount - coalesce(cost, 0)) FILTER (WHERE status = 'paid'), 0)"
            " AS gross_profit "
            "FROM orders WHERE customer_id = $1 AND ordered_at <= $2", params))[0]
        recent_orders = _rows(s.query(
            "SELECT order_id, ordered_at, amount, currency, status, category, channel "
            "FROM orders WHERE customer_id = $1 AND ordered_at <= $2 "
            f"ORDER BY ordered_at DESC, order_id DESC LIMIT {RECENT}", params))
        event_counts = _rows(s.query(
            "SELECT type, count(*) AS total, count(*) FILTER (WHERE occurred_at > "
            "$2::TIMESTAMPTZ - INTERVAL 30 DAY) AS last_30_days, max(occurred_at) AS last_at "
            "FROM events WHERE customer_id = $1 AND occurred_at <= $2 "
            "GROUP BY type ORDER BY total DESC, type", params))
        recent_events = _rows(s.query(
            "SELECT occurred_at, type, properties FROM events WHERE customer_id = $1 AND "
            f"occurred_at <= $2 ORDER BY occurred_at DESC LIMIT {RECENT}", params))
        tickets = _rows(s.query(
            "SELECT ticket_id, opened_at, closed_at, priority, status, category, csat "
            "FROM tickets WHERE customer_id = $1 AND opened_at <= $2 "
            f"ORDER BY opened_at DESC LIMIT {RECENT}", params))
        feedback = _rows(s.query(
            'SELECT "at", nps, csat, comment FROM feedback WHERE customer_id = $1 AND '
            f'"at" <= $2 ORDER BY "at" DESC LIMIT {RECENT}', params))
        referrals = _rows(s.query(
            "SELECT count(*) FILTER (WHERE referrer_id = $1) AS referred_others, "
            "max(referrer_id) FILTER (WHERE referred_id = $1) AS referred_by "
            "FROM referrals WHERE (referrer_id = $1 OR referred_id = $1) AND \"at\" <= $2",
            params))[0]
        # all of the account's opportunities (a few): open first, the latest first
        deals = s.query(
            "SELECT opportunity_id, name, stage, amount, probability, created_at, "
            "expected_close, stage_at, closed_at, owner, reason FROM opportunities "
            "WHERE customer_id = $1 AND created_at <= $2 "
            "ORDER BY (stage = $3 OR stage = $4), created_at DESC, opportunity_id",
            [*params, ws.config.won_stage, ws.config.lost_stage])
    people, rollup, account = _account_view(ws, customer, as_of)
    return CustomerProfile(customer, summary, recent_orders, event_counts, recent_events,
                           tickets, feedback, as_of, referrals,
                           _rows(deals.slice(0, RECENT)),
                           pipelines.summary(deals, ws.config, as_of), people, rollup, account)


#: The order an account's people are listed in: by role in the decision chain.
_ROLE_ORDER = ("decision_maker", "influencer", "purchasing", "finance", "technical", "user",
               "other")


def _account_view(ws: Workspace, customer: dict[str, Any], as_of: datetime
                  ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any] | None]:
    """An account's people with their activity and the account's figures with theirs, or a
    contact's account."""
    customer_id = customer["customer_id"]
    with ws.control.read() as conn:
        if customer.get("account_id"):
            above = customer_store.get(conn, customer["account_id"])
            return [], {}, {"customer_id": customer["account_id"],
                            "name": above.get("name") if above else None,
                            "owner": above.get("owner") if above else None,
                            "role": customer.get("role")}
        ids = customer_store.contacts_of(conn, [customer_id]).get(customer_id, [])
        people = [p for p in (customer_store.get(conn, c) for c in ids) if p is not None]
    if not people:
        return [], {}, None
    who = [customer_id, *ids]
    params = [who, as_of]
    with ws.engine.for_staging().session(ws.facts.scans(("orders", "events"))) as s:
        orders = {r["customer_id"]: r for r in _rows(s.query(
            "SELECT customer_id, count(*) AS orders, sum(amount) AS revenue FROM orders "
            "WHERE list_contains($1, customer_id) AND ordered_at <= $2 AND status = 'paid' "
            "GROUP BY customer_id", params))}
        events = {r["customer_id"]: r for r in _rows(s.query(
            "SELECT customer_id, count(*) FILTER (WHERE occurred_at > $2::TIMESTAMPTZ - "
            "INTERVAL 30 DAY) AS events_30d, max(occurred_at) AS last_event_at FROM events "
            "WHERE list_contains($1, customer_id) AND occurred_at <= $2 GROUP BY customer_id",
            params))}
    listed = []
    for person in people:
        c = person["customer_id"]
        listed.append({**person, "orders": orders.get(c, {}).get("orders", 0),
                       "revenue": orders.get(c, {}).get("revenue") or 0,
                       "events_30d": events.get(c, {}).get("events_30d", 0),
                       "last_event_at": events.get(c, {}).get("last_event_at")})
    rank = {role: i for i, role in enumerate(_ROLE_ORDER)}
    listed.sort(key=lambda p: (rank.get(p.get("role") or "", len(rank)), p["customer_id"]))
    rollup = {"orders": sum(r["orders"] for r in orders.values()),
              "revenue": sum(r["revenue"] or 0 for r in orders.values()),
              "events_30d": sum(r["events_30d"] for r in events.values()),
              "people": len(people)}
    return listed, rollup, None


def searched_by(principal: Principal) -> list[str]:
    """What a search text is compared with for this caller. Looking a customer up by an exact
    name, e-mail or phone tells whether that person is a customer: only callers who may read
    PII (their own customers' at least) may ask."""
    if principal.can("pii:read") or principal.can("pii:own"):
        return ["customer_id", "name", "email", "phone"]
    return ["customer_id"]


def _exact(q: str, region: str) -> dict[str, str]:
    """The name, e-mail and phone a search text could be, normalised like an import."""
    text = q.strip()
    found = {"name": text}
    if "@" in text:
        found["email"] = text
    digits = text.replace("+", "").replace("-", "").replace(" ", "")
    if digits.isdigit() and len(digits) >= 5:
        phone, rule = phone_cleaner(region)(text)
        if phone and not (rule or "").startswith("flag_"):
            found["phone"] = phone
    return found


#: What a list of customers may be narrowed by, besides the search text and a segment.
FILTERS = (*customer_store.FILTER_COLUMNS, "tag")


def is_attribute(ws: Workspace, name: str) -> bool:
    """Whether ``name`` is a filter on one of the customers' attributes (``attributes.plan``);
    one on a sensitive attribute (personal data, stored sealed) is an error."""
    key = customer_store.attribute_key(name)
    if key is None:
        return False
    if ws.personal_data.is_sensitive_key(key):
        raise TierwiseError(f"{name}: the attribute {key!r} is personal data; customers are "
                            "not filtered or grouped by it",
                            zh=f"{name}：属性 {key!r} 属于个人敏感信息，不能按它筛选或分组")
    return True


def attribute_filters(ws: Workspace, params: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The ``attributes.KEY=value`` filters among ``params``: a malformed key or a
    sensitive attribute is an error."""
    found = {}
    for name, value in params:
        if not name.startswith(customer_store.ATTRIBUTE_PREFIX):
            continue
        if customer_store.attribute_key(name) is None:
            raise TierwiseError(f"{name[:80]!r}: an attribute filter is attributes.KEY, the key "
                                "letters, digits, _ or - (at most 64)",
                                zh=f"{name[:80]!r}：属性筛选应为 attributes.KEY，"
                                   "KEY 由字母、数字、_ 或 - 组成（最多 64 个字符）")
        is_attribute(ws, name)
        found[name] = value
    return found


#: Values named in a "no such value" error: the closest, then the most common.
SHOWN_VALUES = 20


def check_values(ws: Workspace, where: dict[str, str]) -> None:
    """Refuse a customer-field filter whose value no customer has (``city=上海市`` where the
    data says ``上海``): an error naming the closest values and the most common ones, never
    a list that is silently empty."""
    import difflib

    with ws.control.read() as conn:
        for column, value in where.items():
            if column not in FILTERS and not is_attribute(ws, column):
                continue
            if customer_store.has_value(conn, column, value):
                continue
            if column == "tag":
                raise TierwiseError(f"no customer has the tag {value!r}",
                                    zh=f"没有客户带有标签 {value!r}")
            common = customer_store.common_values(conn, column)
            close = difflib.get_close_matches(value, common, 3, 0.4)
            shown = list(dict.fromkeys([*close, *common]))[:SHOWN_VALUES]
            listed = ", ".join(shown) + (", …" if len(common) > len(shown) else "")
            hint_en = f"did you mean {' or '.join(close)}? " if close else ""
            hint_zh = f"是否要找 {' 或 '.join(close)}？" if close else ""
            raise TierwiseError(
                f"no customer has {column} = {value!r}; {hint_en}"
                f"values of {column}: {listed or 'none'}",
                zh=f"没有客户的 {column} 为 {value!r}；{hint_zh}"
                   f"{column} 的取值有：{listed or '无'}")


def search(ws: Workspace, principal: Principal, *, q: str | None = None,
           owner: str | None = None, city: str | None = None, segment: str | None = None,
           after: str | None = None, limit: int = 50, ids: list[str] | None = None,
           where: dict[str, str] | None = None
           ) -> tuple[list[dict[str, Any]], str | None]:
    """A page of customers as the principal may see them, and the cursor of the next;
    ``q`` matches an id prefix or (for callers who may read PII) an exact name, e-mail or
    phone; ``where`` narrows by customer fields (``FILTERS``: equal values, a tag); ``ids``
    limits the page to those customers (at most a page of them)."""
    exact = _exact(q, ws.config.phone_region) if q and len(searched_by(principal)) > 1 \
        else None
    columns = dict(where or {})
    tag = columns.pop("tag", None)
    with ws.control.read() as conn:
        rows = customer_store.page(conn, id_prefix=q.strip() if q else None, exact=exact,
                                   owner=owner, city=city, segment=segment, after=after,
                                   ids=ids, limit=limit + 1, where=columns, tag=tag)
    items = [present_customer(ws, principal, row) for row in rows[:limit]]
    return items, items[-1]["customer_id"] if len(rows) > limit else None


def present_customer(ws: Workspace, principal: Principal, row: dict[str, Any]
                     ) -> dict[str, Any]:
    """A customer row as this principal may see it: PII and sensitive attributes masked
    without the right to see this customer's PII."""
    out = {k: v for k, v in row.items() if not k.endswith("_hash")}
    for key, empty in (("tags", []), ("attributes", {})):
        text = out.get(key)
        if isinstance(text, str):
            try:
                out[key] = json.loads(text)
            except ValueError:
                out[key] = text
        elif text is None:
            out[key] = empty
    visible = principal.sees_pii_of(out.get("owner"))
    if not visible:
        ws.personal_data.mask_customer(out)
    out["pii_masked"] = not visible
    return jsonable(out)  # type: ignore[no-any-return]


def present_profile(ws: Workspace, principal: Principal, found: CustomerProfile
                    ) -> CustomerProfile:
    """A 360° profile as this principal may see it: the customer as ``present_customer``
    shows it and, without the right to this customer's PII, the sensitive keys of event
    properties masked."""
    visible = principal.sees_pii_of(found.customer.get("owner"))
    events = found.recent_events if visible else [
        {**e, "properties": ws.personal_data.mask_json(e.get("properties"))}
        for e in found.recent_events]
    return dataclasses.replace(found, customer=present_customer(ws, principal, found.customer),
                               recent_events=events,
                               people=[present_customer(ws, principal, p)
                                       for p in found.people],
                               account=None if found.account is None else
                               ws.personal_data.mask_customer(dict(found.account))
                               if not principal.sees_pii_of(found.account.get("owner"))
                               else found.account)
