"""The periodic review (定期复盘): segment KPIs for a period against the one before it, tier
migration between the snapshots that close each period, and the biggest movers.

Periods are written ``2026Q3``, ``2026-07`` (a month), ``2026H2``, ``2026`` or as any
stretch of days ``2026-07-01..2026-08-15`` (``services.periods``). KPIs per group, over paid
orders:

- conversion rate: buyers in the period / customers in the group
- repurchase rate: customers with two or more orders in the period / buyers
- average order value: revenue / orders
- reactivation rate: lapsed customers (an order before, none in the ``lapse_days`` before
  the period) who bought in the period / lapsed customers
- churn rate: buyers of the previous period who did not buy in this one / those buyers
- revenue share: the group's revenue / all revenue in the period
- NPS and CSAT of the answers given in the period (``insights.satisfaction.in_windows``)
- customer economics in the period: revenue, gross margin, costs, profit contribution and
  referral value (``services.economics.grouped``)

A period still under way is *partial*: it runs to now and is compared with the same length
of time from the start of the previous period (``Review.partial``). When no snapshot was
taken before a period ended, its tiers come from the earliest later one and the review says
so (``Review.closing_late``); with one snapshot or none there is no migration, and it says
that too.

Groups are the tiers of the snapshot that closes the period (the latest snapshot at or
before its end, else the earliest after), or the members of one segment at the period's end
(its current members when the segment has no history that far back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from tierwise.engines.base import naive_utc
from tierwise.errors import Said, TierwiseError
from tierwise.models import compute
from tierwise.services.memo import Memo, data_token
from tierwise.services.periods import Period, begun
from tierwise.workspace import Workspace

LAPSE_DAYS = 90
MOVERS = 10
@dataclass
class Review:
    period: Period
    previous: Period
    grouping: str
    groups: list[dict[str, Any]] = field(default_factory=list)
    migration: list[dict[str, Any]] = field(default_factory=list)
    snapshots: tuple[int | None, int | None] = (None, None)
    movers_up: list[dict[str, Any]] = field(default_factory=list)
    movers_down: list[dict[str, Any]] = field(default_factory=list)
    #: The period is under way: its figures run to ``period.end`` (now) and the previous
    #: period's to the same length of time.
    partial: bool = False
    #: Customer economics per group in the period (``services.economics.grouped``), and
    #: what they leave out.
    economics: list[dict[str, Any]] = field(default_factory=list)
    economics_notes: list[Said] = field(default_factory=list)
    #: When the snapshots that open and close the period were taken (None: no snapshot).
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    #: No snapshot was taken before the period ended: the tiers are of a later one.
    closing_late: bool = False


def _closing_id(found: list[dict[str, Any]], end: datetime) -> int | None:
    """The snapshot that closes a period: the latest before ``end``, else the earliest."""
    if not found:
        return None
    before = [s for s in found if s["as_of"] is not None and s["as_of"] < end]
    return int((before[-1] if before else found[0])["snapshot_id"])


def period_kpis(ws: Workspace, groups: pa.Table, period: Period, previous: Period
                ) -> list[dict[str, Any]]:
    """Per group of ``groups`` (customer_id, grp; a customer may be in several groups):
    buyers, orders, revenue and its share, conversion, repurchase, average order value,
    reactivation and churn in ``period``, and the same in ``previous`` — the review's
    figures, which the breakdown by any dimension shows for a chosen period too."""
    from tierwise.insights.satisfaction import from_counts, in_windows

    start, end = naive_utc(period.start), naive_utc(period.end)
    p_start = naive_utc(previous.start)
    lapse = start - timedelta(days=LAPSE_DAYS)
    query = """
    WITH o AS (
      SELECT customer_id, ordered_at, amount FROM orders WHERE status = 'paid' AND ordered_at < ?
    ), per AS (
      SELECT g.customer_id, g.grp,
        count(*) FILTER (WHERE o.ordered_at >= ? AND o.ordered_at < ?) AS n_now,
        coalesce(sum(o.amount) FILTER (WHERE o.ordered_at >= ? AND o.ordered_at < ?), 0)
          AS rev_now,
        count(*) FILTER (WHERE o.ordered_at >= ? AND o.ordered_at < ?) AS n_prev,
        coalesce(sum(o.amount) FILTER (WHERE o.ordered_at >= ? AND o.ordered_at < ?), 0)
          AS rev_prev,
        count(*) FILTER (WHERE o.ordered_at < ?) AS n_before_lapse,
        count(*) FILTER (WHERE o.ordered_at >= ? AND o.ordered_at < ?) AS n_in_lapse
      FROM _groups g LEFT JOIN o ON o.customer_id = g.customer_id
      GROUP BY g.customer_id, g.grp
    )
    SELECT grp, count(*) AS customers,
      count(*) FILTER (WHERE n_now > 0) AS buyers,
      count(*) FILTER (WHERE n_now > 1) AS repeaters,
      sum(n_now) AS orders, sum(rev_now) AS revenue,
      count(*) FILTER (WHERE n_prev > 0) AS buyers_prev,
      count(*) FILTER (WHERE n_prev > 1) AS repeaters_prev,
      sum(n_prev) AS orders_prev, sum(rev_prev) AS revenue_prev,
      count(*) FILTER (WHERE n_prev > 0 AND n_now = 0) AS churned,
      count(*) FILTER (WHERE n_before_lapse > 0 AND n_in_lapse = 0) AS lapsed,
      count(*) FILTER (WHERE n_before_lapse > 0 AND n_in_lapse = 0 AND n_now > 0)
        AS reactivated
    FROM per GROUP BY grp ORDER BY grp
    """
    params = [end, start, end, start, end, p_start, start, p_start, start, lapse, lapse, start]
    with ws.engine.session(ws.facts.scans(), {"_groups": groups}) as session:
        rows = session.query(query, params).to_pylist()
    happy_now, happy_before = (w["groups"] for w in in_windows(
        ws, [(period.start, period.end), (previous.start, previous.end)], groups))
    total_now = sum(float(r["revenue"] or 0) for r in rows) or 1.0
    total_prev = sum(float(r["revenue_prev"] or 0) for r in rows) or 1.0

    def ratio(a: Any, b: Any) -> float | None:
        return float(a) / float(b) if b else None

    out = []
    for r in rows:
        now = {"buyers": int(r["buyers"]), "orders": int(r["orders"] or 0),
               "revenue": float(r["revenue"] or 0),
               "conversion_rate": ratio(r["buyers"], r["customers"]),
               "repurchase_rate": ratio(r["repeaters"], r["buyers"]),
               "aov": ratio(r["revenue"], r["orders"]),
               "reactivation_rate": ratio(r["reactivated"], r["lapsed"]),
               "churn_rate": ratio(r["churned"], r["buyers_prev"]),
               "revenue_share": float(r["revenue"] or 0) / total_now}
        before = {"buyers": int(r["buyers_prev"]), "orders": int(r["orders_prev"] or 0),
                  "revenue": float(r["revenue_prev"] or 0),
                  "conversion_rate": ratio(r["buyers_prev"], r["customers"]),
                  "repurchase_rate": ratio(r["repeaters_prev"], r["buyers_prev"]),
                  "aov": ratio(r["revenue_prev"], r["orders_prev"]),
                  "revenue_share": float(r["revenue_prev"] or 0) / total_prev}
        for figures, happy in ((now, happy_now), (before, happy_before)):
            said = happy.get(r["grp"]) or from_counts(0, 0, 0, 0, 0, 0.0, 0)
            figures.update({k: said.get(k) for k in ("nps", "csat", "respondents", "rated")})
        out.append({"group": r["grp"], "customers": int(r["customers"]), "now": now,
                    "before": before})
    return out


def _movers(ws: Workspace, period: Period, previous: Period) -> tuple[list[dict[str, Any]],
                                                                       list[dict[str, Any]]]:
    start, end, p_start = (naive_utc(period.start), naive_utc(period.end),
                           naive_utc(previous.start))
    query = """
    SELECT customer_id,
      coalesce(sum(amount) FILTER (WHERE ordered_at >= ? AND ordered_at < ?), 0) AS revenue,
      coalesce(sum(amount) FILTER (WHERE ordered_at >= ? AND ordered_at < ?), 0)
        AS revenue_before
    FROM orders WHERE status = 'paid' AND ordered_at >= ? AND ordered_at < ?
    GROUP BY customer_id
    """
    rows = ws.sql(f"SELECT *, revenue - revenue_before AS change FROM ({query}) "
                  "ORDER BY change DESC, customer_id",
                  [start, end, p_start, start, p_start, end]).to_pylist()
    up = [r for r in rows if r["change"] > 0][:MOVERS]
    down = sorted((r for r in rows if r["change"] < 0),
                  key=lambda r: (r["change"], r["customer_id"]))[:MOVERS]
    return up, down


def review(ws: Workspace, period_text: str, segment: str | None = None) -> Review:
    """The review of one period against the period before it."""
    from tierwise.models.summaries import moves
    from tierwise.store.control import utcnow

    now, partial = utcnow(), False
    period = begun(period_text, ws.config.timezone, now)
    previous = period.previous()
    if period.end > now:  # under way: to now, against as long a stretch before
        partial = True
        period = Period(period.name, period.start, now.astimezone(period.start.tzinfo))
        previous = Period(previous.name, previous.start,
                          previous.start + (period.end - period.start))
    found = compute.list_snapshots(ws)
    closing_id, opening_id = _closing_id(found, period.end), _closing_id(found, period.start)
    closing = compute.load_snapshot(ws, closing_id) if closing_id is not None else None
    opening = closing if opening_id == closing_id else compute.load_snapshot(ws, opening_id)
    if segment:
        from tierwise.segments.membership import members_at

        ids = members_at(ws, segment, period.end)
        grouping = f"segment:{segment}"
        if not ids:  # the segment is younger than the period: its members now
            ids = members_at(ws, segment)
            grouping = f"segment:{segment} (current members)"
        groups = pa.table({"customer_id": pa.array(ids, pa.string()),
                           "grp": pa.array([segment] * len(ids), pa.string())})
    elif closing is not None:
        groups = closing.table.select(["customer_id", "tier"]).rename_columns(
            ["customer_id", "grp"])
        grouping = "tier"
    else:
        raise TierwiseError("no snapshot yet: run `tierwise compute` first, or review a "
                            "segment with --segment",
                            zh="还没有快照：请先运行 `tierwise compute`，或用 --segment 复盘一个分"
                            "群")
    result = Review(period, previous, grouping, period_kpis(ws, groups, period, previous),
                    partial=partial)
    if closing is not None:
        result.closed_at = closing.as_of
        result.closing_late = closing.as_of is not None and closing.as_of >= period.end
    if opening is not None:
        result.opened_at = opening.as_of
    if closing is not None and opening is not None:
        result.snapshots = (opening.snapshot_id, closing.snapshot_id)
        if opening.snapshot_id != closing.snapshot_id:
            before, after = opening.table, closing.table
            if segment:  # the tiers of the segment's members
                import pyarrow.compute as pc

                ids = groups["customer_id"]
                before = before.filter(pc.is_in(before["customer_id"], ids))
                after = after.filter(pc.is_in(after["customer_id"], ids))
            result.migration = moves(before, after, "tier")
    result.movers_up, result.movers_down = _movers(ws, period, previous)
    from tierwise.services import economics

    found, notes = economics.grouped(ws, period, groups)
    result.economics, result.economics_notes = found, notes
    return result


_MEMO = Memo()


def last_full_quarter(at: datetime | None = None) -> str:
    """The latest quarter complete at an instant (default now): ``2026Q3`` in November
    2026. Data as of a quarter's last day (a snapshot as of 30 June) completes it."""
    from tierwise.store.control import utcnow

    now = (at or utcnow()) + timedelta(days=1)
    quarter = (now.month - 1) // 3
    return f"{now.year}Q{quarter}" if quarter else f"{now.year - 1}Q4"


def cached_review(ws: Workspace, period_text: str, segment: str | None = None) -> Review:
    """``review`` computed once for the same inputs (the dashboard asks often; the answer
    only changes with new orders or feedback, snapshots, the segment's history, and, for a
    period under way, the clock)."""
    key = (data_token(ws, ("orders", "feedback"), segment), "review",
           period_text.strip().upper(), segment)
    return _MEMO.get(key, lambda: review(ws, period_text, segment))
