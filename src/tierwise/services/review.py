"""The periodic review (定期复盘): segment KPIs for a period against the one before it, tier
migration between the snapshots that close each period, and the biggest movers.

Periods are written ``2026Q3``, ``2026-07`` (a month), ``2026H2``, ``2026`` or as any
stretch of days ``2026-07-01..2026-08-15`` (both days included), and run in the workspace's
time zone from their first instant (inclusive) to the next period's first instant
(exclusive). The period before a stretch of days is as many days just before it. KPIs per
group, over paid orders:

- conversion rate: buyers in the period / customers in the group
- repurchase rate: customers with two or more orders in the period / buyers
- average order value: revenue / orders
- reactivation rate: lapsed customers (an order before, none in the ``lapse_days`` before
  the period) who bought in the period / lapsed customers
- churn rate: buyers of the previous period who did not buy in this one / those buyers
- revenue share: the group's revenue / all revenue in the period
- NPS and CSAT of the answers given in the period (``insights.satisfaction.in_windows``)

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

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from tierwise.engines.base import naive_utc
from tierwise.errors import TierwiseError
from tierwise.models import compute
from tierwise.services.memo import Memo, data_token
from tierwise.workspace import Workspace

LAPSE_DAYS = 90
MOVERS = 10
_PERIOD = re.compile(r"^(\d{4})(?:(Q[1-4])|(H[12])|-(\d{2}))?$", re.IGNORECASE)
_DAYS = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
#: The longest stretch of days a period may be written as.
MAX_DAYS = 3660


@dataclass(frozen=True)
class Period:
    name: str
    start: datetime
    end: datetime  # exclusive
    #: A stretch of days (``2026-07-01..2026-08-15``): the period before is as many days.
    days: int | None = None

    def previous(self) -> Period:
        if self.days is not None:
            start = (self.start - timedelta(days=self.days)).replace(tzinfo=self.start.tzinfo)
            return _stretch(start.date(), self.days, self.start.tzinfo)
        months = _months_between(self.start, self.end)
        start = _add_months(self.start, -months)
        return Period(_name(start, months), start, self.start)


def _stretch(first: Any, days: int, tz: Any) -> Period:
    """The ``days`` days from ``first`` (a date) in zone ``tz``."""
    from datetime import date

    assert isinstance(first, date)
    last = first + timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=tz)
    after = last + timedelta(days=1)
    return Period(f"{first.isoformat()}..{last.isoformat()}", start,
                  datetime(after.year, after.month, after.day, tzinfo=tz), days)


def _add_months(when: datetime, months: int) -> datetime:
    index = when.year * 12 + when.month - 1 + months
    return when.replace(year=index // 12, month=index % 12 + 1)


def _months_between(a: datetime, b: datetime) -> int:
    return (b.year - a.year) * 12 + b.month - a.month


def _name(start: datetime, months: int) -> str:
    if months == 12:
        return f"{start.year}"
    if months == 6:
        return f"{start.year}H{1 if start.month == 1 else 2}"
    if months == 3:
        return f"{start.year}Q{(start.month - 1) // 3 + 1}"
    return f"{start.year}-{start.month:02d}"


#: The years a period (and the one before it) may fall in.
YEARS = (1900, 2999)


def parse_period(text: str, zone: str = "UTC") -> Period:
    """``2026Q3`` → 1 July 2026 00:00 to 1 October 2026 00:00 in ``zone``;
    ``2026-07-01..2026-07-10`` → 1 July 00:00 to 11 July 00:00. Periods (and the ones
    before them) fall within the years ``YEARS``."""
    found = _parse_period(text, zone)
    first, last = YEARS
    if found.start.year - 1 < first or found.end.year > last:
        raise TierwiseError(f"period {text[:40]!r}: expected a period between {first + 1} "
                            f"and {last - 1}",
                            zh=f"期间 {text[:40]!r}：应在 {first + 1} 年到 {last - 1} 年之间")
    return found


def _parse_period(text: str, zone: str) -> Period:
    days = _DAYS.match(text.strip())
    if days:
        return _parse_days(text, days.group(1), days.group(2), ZoneInfo(zone))
    found = _PERIOD.match(text.strip())
    if not found:
        raise TierwiseError(f"period {text!r}: expected a year (2026), a half (2026H2), a "
                            "quarter (2026Q3), a month (2026-07) or days "
                            "(2026-07-01..2026-08-15)",
                            zh=f"期间 {text!r}：应为年份（2026）、半年（2026H2）、季度（2026Q3）、"
                            "月份（2026-07）或日期范围（2026-07-01..2026-08-15）")
    year = int(found.group(1))
    if not YEARS[0] < year < YEARS[1]:
        raise TierwiseError(f"period {text[:40]!r}: expected a year between {YEARS[0] + 1} and "
                            f"{YEARS[1] - 1}",
                            zh=f"期间 {text[:40]!r}：年份应在 {YEARS[0] + 1} 到 "
                               f"{YEARS[1] - 1} 之间")
    quarter, half, month = found.group(2), found.group(3), found.group(4)
    tz = ZoneInfo(zone)
    if quarter:
        first, months = (int(quarter[1]) - 1) * 3 + 1, 3
    elif half:
        first, months = (1 if half[1] == "1" else 7), 6
    elif month:
        first, months = int(month), 1
        if not 1 <= first <= 12:
            raise TierwiseError(f"period {text!r}: month {first} does not exist",
                                zh=f"期间 {text!r}：月份 {first} 不存在")
    else:
        first, months = 1, 12
    start = datetime(year, first, 1, tzinfo=tz)
    return Period(_name(start, months), start, _add_months(start, months))


def _parse_days(text: str, first: str, last: str, tz: ZoneInfo) -> Period:
    from datetime import date

    try:
        start, end = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError as exc:
        raise TierwiseError(f"period {text!r}: {exc}", zh=f"期间 {text!r}：{exc}") from None
    days = (end - start).days + 1
    if not (YEARS[0] < start.year and end.year < YEARS[1]):
        raise TierwiseError(f"period {text[:40]!r}: expected days between {YEARS[0] + 1} and "
                            f"{YEARS[1] - 1}",
                            zh=f"期间 {text[:40]!r}：日期应在 {YEARS[0] + 1} 年到 "
                               f"{YEARS[1] - 1} 年之间")
    if not 1 <= days <= MAX_DAYS:
        raise TierwiseError(f"period {text!r}: the last day must be on or after the first, "
                            f"at most {MAX_DAYS} days later",
                            zh=f"期间 {text!r}：结束日期不能早于开始日期，且最多相隔 {MAX_DAYS} 天")
    return _stretch(start, days, tz)


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

    period = parse_period(period_text, ws.config.timezone)
    previous = period.previous()
    now, partial = utcnow(), False
    if period.start >= now:
        raise TierwiseError(f"period {period.name} has not started yet",
                            zh=f"期间 {period.name} 还没有开始")
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
