"""The funnel from marketing to sales to service (营销→销售→服务漏斗): the leads who came in
during a period, and how many of them went on to qualify, to buy and to buy again.

A customer enters the funnel (becomes a *lead*) at ``signup_at``, or — when the record has
no signup date — at their first event, else their first paid order. The steps after that
count who has reached them by ``as_of`` (now, by default), each within the one before. Two
flows:

``orders`` (the default; shops, subscriptions, B2C):

1. ``leads`` — customers who entered in the period;
2. ``qualified`` — of those, the ones lead scoring qualified (their score reached the
   threshold: ``qualified_at``); left out, and said, when no lead-scoring rules exist;
3. ``first_order`` — of those, the ones with a first paid order;
4. ``repeat`` — of those, the ones with a second paid order.

``opportunities`` (B2B sales, 线索 → 商机 → 赢单 → 续约):

1. ``leads``, 2. ``qualified`` — as above;
3. ``opportunity`` — the ones with an opportunity (its ``created_at``);
4. ``won`` — the ones with an opportunity that reached the ``won_stage`` (the first such
   move in ``opportunity_stages``);
5. ``renewal`` — the ones with a second opportunity won (a renewal or an expansion).

Each step has its count, its rate from the step before and from the leads, and the median
days from the step before (the days between the instants each customer reached the two
steps). Leads who bought without qualifying are counted apart (``bought_unqualified``,
orders flow): they are not in the funnel's later steps, which would otherwise not be a
funnel.

Groups (``by``) are the tiers of the latest snapshot, or the customers' industry, owner or
acquisition channel; ``segment`` keeps the members of one segment. ``trend`` gives the same
steps for the periods before this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tierwise.compile.dialects import render
from tierwise.engines.base import naive_utc
from tierwise.errors import TierwiseError
from tierwise.models import compute
from tierwise.models import leads as lead_model
from tierwise.services.memo import Memo, data_token
from tierwise.services.periods import Period, begun, parse_period
from tierwise.store import customer_mirror
from tierwise.store import leads as lead_store
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace

FLOWS: dict[str, tuple[str, ...]] = {
    "orders": ("leads", "qualified", "first_order", "repeat"),
    "opportunities": ("leads", "qualified", "opportunity", "won", "renewal")}
#: Every step of every flow.
STEPS = tuple(dict.fromkeys(step for steps in FLOWS.values() for step in steps))
#: When each step was reached: the column of the journeys table.
REACHED = {"leads": "entered_at", "qualified": "qualified_at", "first_order": "first_order",
           "repeat": "second_order", "opportunity": "first_opportunity", "won": "first_won",
           "renewal": "second_won"}
#: What the funnel is grouped by: the latest snapshot's tier, or a customer field.
GROUPINGS = ("tier", "industry", "owner", "channel")
TREND_PERIODS = 4

_JOURNEYS = """
WITH cand AS (
  SELECT customer_id, signup_at, industry, owner, channel FROM _people
  WHERE signup_at IS NULL OR (signup_at >= :start AND signup_at < :end)
), ev AS (
  SELECT e.customer_id, min(e.occurred_at) AS first_event
  FROM events e JOIN cand c ON c.customer_id = e.customer_id
  WHERE c.signup_at IS NULL AND e.occurred_at < :as_of GROUP BY e.customer_id
), o AS (
  SELECT r.customer_id, r.ordered_at,
    row_number() OVER (PARTITION BY r.customer_id ORDER BY r.ordered_at, r.order_id) AS n
  FROM orders r JOIN cand c ON c.customer_id = r.customer_id
  WHERE r.status = 'paid' AND r.ordered_at < :as_of
), firsts AS (
  SELECT customer_id, min(ordered_at) FILTER (WHERE n = 1) AS first_order,
    min(ordered_at) FILTER (WHERE n = 2) AS second_order
  FROM o WHERE n <= 2 GROUP BY customer_id
), opp AS (
  SELECT p.customer_id, min(p.created_at) AS first_opportunity
  FROM opportunities p JOIN cand c ON c.customer_id = p.customer_id
  WHERE p.created_at < :as_of GROUP BY p.customer_id
), wins AS (
  SELECT s.customer_id, s.opportunity_id, min(s."at") AS won_at
  FROM opportunity_stages s JOIN cand c ON c.customer_id = s.customer_id
  WHERE s.stage = :won AND s."at" < :as_of GROUP BY s.customer_id, s.opportunity_id
), won AS (
  SELECT customer_id, min(won_at) FILTER (WHERE n = 1) AS first_won,
    min(won_at) FILTER (WHERE n = 2) AS second_won
  FROM (SELECT customer_id, won_at, row_number() OVER (
          PARTITION BY customer_id ORDER BY won_at, opportunity_id) AS n FROM wins) w
  WHERE n <= 2 GROUP BY customer_id
), j AS (
  SELECT p.customer_id,
    coalesce(p.signup_at, ev.first_event, f.first_order) AS entered_at,
    l.qualified_at, f.first_order, f.second_order, op.first_opportunity, w.first_won,
    w.second_won, p.industry, p.owner, p.channel
  FROM cand p
  LEFT JOIN ev ON ev.customer_id = p.customer_id
  LEFT JOIN firsts f ON f.customer_id = p.customer_id
  LEFT JOIN opp op ON op.customer_id = p.customer_id
  LEFT JOIN won w ON w.customer_id = p.customer_id
  LEFT JOIN _leads l ON l.customer_id = p.customer_id AND l.qualified_at < :as_of
)
SELECT * FROM j WHERE entered_at >= :start AND entered_at < :end ORDER BY customer_id
"""


@dataclass
class Funnel:
    period: Period
    as_of: datetime
    #: The period is still under way (it runs to ``as_of``).
    partial: bool
    #: Lead scoring exists: the ``qualified`` step is counted.
    qualifying: bool
    steps: list[dict[str, Any]]
    bought_unqualified: int
    grouping: str | None = None
    segment: str | None = None
    groups: list[dict[str, Any]] = field(default_factory=list)
    flow: str = "orders"


#: The tables the journeys read (a new file of any of them changes the answer).
READS = ("orders", "events", "opportunities", "opportunity_stages")


def journeys(ws: Workspace, start: datetime, end: datetime, as_of: datetime) -> pa.Table:
    """Per customer who entered in ``[start, end)``: the instant each step was reached by
    ``as_of`` (the ``REACHED`` columns; null: not yet) and the fields it is grouped by."""
    # accounts and private customers, a contact's rows counted for its account
    people = customer_mirror.accounts_and_customers(
        ws.root, ws.control, ["customer_id", "signup_at", "industry", "owner", "channel"])
    leads = lead_store.as_qualified(ws.control)
    with ws.engine.session(ws.facts.scans(READS, accounts=True),
                           {"_people": people, "_leads": leads}) as session:
        return session.query(render(_JOURNEYS, ws.engine.name), {
            "start": naive_utc(start), "end": naive_utc(end), "as_of": naive_utc(as_of),
            "won": ws.config.won_stage})


def _flow_steps(flow: str) -> tuple[str, ...]:
    if flow not in FLOWS:
        raise TierwiseError(f"flow={flow!r}: expected one of {', '.join(FLOWS)}",
                            zh=f"flow={flow!r}：应为 {', '.join(FLOWS)} 之一")
    return FLOWS[flow]


def _mask(table: pa.Table, step: str, qualifying: bool, flow: str = "orders") -> np.ndarray:
    """Who of ``table`` reached ``step``, and every step of ``flow`` before it."""
    steps = _flow_steps(flow)
    reached = np.ones(table.num_rows, dtype=bool)
    for name in steps[:steps.index(step) + 1]:
        if name == "qualified" and not qualifying:
            continue
        reached &= pc.is_valid(table[REACHED[name]]).to_numpy(zero_copy_only=False)
    return reached


def _days(later: pa.ChunkedArray, earlier: pa.ChunkedArray, chosen: np.ndarray
          ) -> float | None:
    if not chosen.any():
        return None
    a = later.to_numpy(zero_copy_only=False)[chosen].astype("datetime64[us]")
    b = earlier.to_numpy(zero_copy_only=False)[chosen].astype("datetime64[us]")
    return round(float(np.median((a - b) / np.timedelta64(1, "D"))), 1)


def _steps(table: pa.Table, qualifying: bool, flow: str = "orders") -> list[dict[str, Any]]:
    shown = [s for s in _flow_steps(flow) if qualifying or s != "qualified"]
    out: list[dict[str, Any]] = []
    leads = table.num_rows
    for i, step in enumerate(shown):
        chosen = _mask(table, step, qualifying, flow)
        count = int(chosen.sum())
        before = out[-1]["customers"] if out else None
        days = None
        if i:
            days = _days(table[REACHED[step]], table[REACHED[shown[i - 1]]], chosen)
        out.append({"step": step, "customers": count,
                    "rate": count / before if before else None if i else None,
                    "of_leads": count / leads if leads else None,
                    "median_days": days})
    return out


def _unqualified_buyers(table: pa.Table) -> int:
    return int(pc.sum(pc.and_(pc.is_valid(table["first_order"]),
                              pc.is_null(table["qualified_at"]))).as_py() or 0)


def _scoped(ws: Workspace, table: pa.Table, segment: str | None, as_of: datetime) -> pa.Table:
    if segment is None:
        return table
    from tierwise.segments.catalog import known
    from tierwise.segments.membership import members_at

    ids = pa.array(members_at(ws, known(ws, segment), as_of), pa.string())
    return table.filter(pc.is_in(table["customer_id"], ids))


def _grouped_by(ws: Workspace, table: pa.Table, by: str) -> pa.ChunkedArray:
    """Each journey's group: its customer's tier in the latest snapshot, or the field."""
    if by not in GROUPINGS:
        raise TierwiseError(f"by={by!r}: the funnel is grouped by {', '.join(GROUPINGS)}",
                            zh=f"by={by!r}：漏斗可按 {', '.join(GROUPINGS)} 分组")
    return _tiers(ws, table) if by == "tier" else table[by]


def _tiers(ws: Workspace, table: pa.Table) -> pa.ChunkedArray:
    found = compute.list_snapshots(ws)
    if not found:
        raise TierwiseError("no snapshot yet: run `tierwise compute` before grouping the "
                            "funnel by tier",
                            zh="还没有快照：请先运行 `tierwise compute`，再按等级分组查看漏斗")
    tiers = compute.load_snapshot(ws).table.select(["customer_id", "tier"])
    joined = table.select(["customer_id"]).join(tiers, "customer_id", join_type="left outer")
    order = pc.sort_indices(joined, [("customer_id", "ascending")])
    return joined.take(order)["tier"]


def funnel(ws: Workspace, period_text: str, by: str | None = None,
           segment: str | None = None, as_of: datetime | None = None,
           flow: str = "orders") -> Funnel:
    """The funnel of the leads who entered in a period (``2026Q3``, ``2026-07``, …)."""
    if by is not None and by not in GROUPINGS:
        raise TierwiseError(f"by={by!r}: the funnel is grouped by {', '.join(GROUPINGS)}",
                            zh=f"by={by!r}：漏斗可按 {', '.join(GROUPINGS)} 分组")
    _flow_steps(flow)
    as_of = as_of or utcnow()
    period = begun(period_text, ws.config.timezone, as_of)
    partial = period.end > as_of
    qualifying = lead_model.definition(ws) is not None
    table = _scoped(ws, journeys(ws, period.start, min(period.end, as_of), as_of), segment,
                    as_of)
    found = Funnel(period, as_of, partial, qualifying, _steps(table, qualifying, flow),
                   _unqualified_buyers(table) if qualifying and flow == "orders" else 0, by,
                   segment, flow=flow)
    if by is not None:
        groups = _grouped_by(ws, table, by)
        for value in sorted(set(groups.to_pylist()), key=lambda t: (t is None, str(t))):
            mine = table.filter(pc.is_null(groups) if value is None
                                else pc.equal(groups, value))
            found.groups.append({"group": value, "steps": _steps(mine, qualifying, flow)})
    return found


def trend(ws: Workspace, period_text: str, periods: int = TREND_PERIODS,
          segment: str | None = None, as_of: datetime | None = None,
          flow: str = "orders") -> list[dict[str, Any]]:
    """The funnel's steps for ``period`` and the ``periods - 1`` periods before it, oldest
    first."""
    as_of = as_of or utcnow()
    period = parse_period(period_text, ws.config.timezone)
    chain = [period]
    while len(chain) < periods:
        chain.insert(0, chain[0].previous())
    out = []
    for p in chain:
        if p.start >= as_of:
            continue
        found = funnel(ws, p.name, None, segment, as_of, flow)
        out.append({"period": p.name, "partial": found.partial, "steps": found.steps})
    return out


_MEMO = Memo()


def _key(ws: Workspace, segment: str | None, *parts: object) -> tuple[object, ...]:
    return (data_token(ws, READS, segment, customers=True, leads=True), segment, *parts)


def cached_funnel(ws: Workspace, period_text: str, by: str | None = None,
                  segment: str | None = None, flow: str = "orders") -> Funnel:
    """``funnel`` as of now, computed once for the same data and hour (the dashboard and
    the API ask often; the answer changes with new orders, events, opportunities,
    customers or qualified leads)."""
    return _MEMO.get(_key(ws, segment, "funnel", period_text.strip().upper(), by, flow),
                     lambda: funnel(ws, period_text, by, segment, flow=flow))


def cached_trend(ws: Workspace, period_text: str, periods: int = TREND_PERIODS,
                 segment: str | None = None, flow: str = "orders") -> list[dict[str, Any]]:
    """``trend`` as of now, computed once for the same data and hour."""
    return _MEMO.get(_key(ws, segment, "trend", period_text.strip().upper(), periods, flow),
                     lambda: trend(ws, period_text, periods, segment, flow=flow))


def cached_customers_at(ws: Workspace, period_text: str, step: str, tier: str | None = None,
                        segment: str | None = None, *, flow: str = "orders",
                        by: str | None = None, group: str | None = None) -> list[str]:
    """``customers_at`` as of now, computed once for the same data and hour (a list is
    paged through one request at a time)."""
    return _MEMO.get(_key(ws, segment, "ids", period_text.strip().upper(), step, tier, flow,
                          by, group),
                     lambda: customers_at(ws, period_text, step, tier, segment, flow=flow,
                                          by=by, group=group))


def customers_at(ws: Workspace, period_text: str, step: str, tier: str | None = None,
                 segment: str | None = None, as_of: datetime | None = None, *,
                 flow: str = "orders", by: str | None = None,
                 group: str | None = None) -> list[str]:
    """The ids (sorted) of the leads of a period who reached ``step`` of ``flow`` — the
    customers behind a number of ``funnel``; with ``by`` and ``group``, only that group's
    (``tier`` is ``by="tier"``)."""
    steps = _flow_steps(flow)
    if step not in steps:
        raise TierwiseError(f"step={step!r}: the {flow} flow's steps are {', '.join(steps)}",
                            zh=f"step={step!r}：{flow} 漏斗的步骤为 {', '.join(steps)}")
    if tier is not None:
        if by not in (None, "tier"):
            raise TierwiseError("tier goes with by=tier (or no by)",
                                zh="tier 只能与 by=tier 同用（或不指定 by）")
        by, group = "tier", tier
    if (by is None) != (group is None):
        raise TierwiseError("by and group go together: the grouping and the value of the "
                            "group", zh="by 与 group 需同时给出：分组方式与组的取值")
    period = parse_period(period_text, ws.config.timezone)
    as_of = as_of or utcnow()
    qualifying = lead_model.definition(ws) is not None
    if step == "qualified" and not qualifying:
        raise TierwiseError("no lead-scoring rules: nobody is qualified "
                            "(`tierwise lead-scoring FILE`)",
                            zh="没有线索评分规则：没有合格线索（`tierwise lead-scoring FILE`）")
    table = _scoped(ws, journeys(ws, period.start, min(period.end, as_of), as_of), segment,
                    as_of)
    chosen = _mask(table, step, qualifying, flow)
    if by is not None:
        groups = _grouped_by(ws, table, by)
        chosen &= pc.fill_null(pc.equal(groups, group), False).to_numpy(zero_copy_only=False)
    ids: list[str] = table["customer_id"].filter(pa.array(chosen)).to_pylist()
    return ids


__all__ = ["FLOWS", "GROUPINGS", "STEPS", "Funnel", "cached_customers_at", "cached_funnel",
           "cached_trend", "customers_at", "funnel", "journeys", "trend"]
