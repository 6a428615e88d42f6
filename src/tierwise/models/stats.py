"""Per-customer purchase statistics as of an instant, computed on the engine in one query.

The statistics feed RFM, CLV, tiers and lifecycle stages. Purchases are paid orders at or
before ``as_of`` (refunds and cancellations excluded); "purchase days" count at most one
purchase per calendar day in the workspace's time zone, as the CLV literature does. A
contact's orders count for its account (``FactStore.scan(..., accounts=True)``): the
account is the customer that buys, its people are not customers of their own.

The SQL is written once, parsed by sqlglot and rendered for the engine's dialect; values
are bound as named parameters, never pasted into the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from tierwise.compile.dialects import render
from tierwise.workspace import Workspace

# One row per customer with at least one paid order at or before :as_of.
# :start bounds the RFM period (orders after it count for frequency and monetary);
# :prev_start..:start is the previous period of the same length, for growth.
# Counts and sums of orders are taken per customer; what needs calendar days (purchase
# days, the first day's amount, the day before the last) comes from the orders grouped by
# customer and local day, with as few aggregates as possible: nearly every order is a day
# of its own, so that grouping holds about as many groups as there are orders and each
# aggregate kept per group costs more than reading the orders a second time. Money is
# summed as DECIMAL: float sums depend on the engine's summation order, decimal sums do
# not, so every engine and every run gives the same figures (and the same fitted models).
# Whole days elapsed are ``DAYS_ELAPSED`` (compile.dialects), as in rules' DAYS_SINCE_*.
_STATS_SQL = """
WITH totals AS (
    SELECT customer_id,
           min(ordered_at) AS first_order_at,
           max(ordered_at) AS last_order_at,
           count(*) AS orders_total,
           sum(CAST(amount AS DECIMAL(18, 4))) AS revenue_total,
           sum(CAST(amount - coalesce(cost, 0) AS DECIMAL(18, 4))) AS profit_total,
           count(*) FILTER (WHERE ordered_at > :start) AS orders,
           coalesce(sum(CAST(amount AS DECIMAL(18, 4))) FILTER (WHERE ordered_at > :start), 0)
               AS revenue,
           coalesce(sum(CAST(amount AS DECIMAL(18, 4))) FILTER (
               WHERE ordered_at > :prev_start AND ordered_at <= :start), 0) AS revenue_previous
    FROM orders
    WHERE status = 'paid' AND ordered_at <= :as_of
    GROUP BY customer_id
),
days AS (
    SELECT customer_id,
           CAST(LOCAL_TS(:tz, ordered_at) AS DATE) AS day,
           max(ordered_at) AS last_at,
           sum(CAST(amount AS DECIMAL(18, 4))) AS amount
    FROM orders
    WHERE status = 'paid' AND ordered_at <= :as_of
    GROUP BY customer_id, CAST(LOCAL_TS(:tz, ordered_at) AS DATE)
),
per AS (
    SELECT customer_id,
           count(*) FILTER (WHERE last_at > :start) AS purchase_days_period,
           count(*) AS purchase_days,
           min(day) AS first_day,
           max(day) AS last_day,
           SECOND_MAX(day) AS previous_day,
           sum(amount) - arg_min(amount, day) AS repeat_amount
    FROM days GROUP BY customer_id
)
SELECT t.customer_id, first_order_at, last_order_at, orders_total,
       CAST(revenue_total AS DOUBLE) AS revenue_total,
       CAST(profit_total AS DOUBLE) AS profit_total,
       orders, CAST(revenue AS DOUBLE) AS revenue, purchase_days_period,
       CAST(revenue_previous AS DOUBLE) AS revenue_previous, purchase_days,
       purchase_days - 1 AS x,
       date_diff('day', first_day, last_day) AS t_x_days,
       date_diff('day', first_day, CAST(LOCAL_TS(:tz, :as_of) AS DATE)) AS t_days,
       DAYS_ELAPSED(last_order_at, :as_of) AS recency_days,
       date_diff('day', previous_day, last_day) AS gap_before_last_days,
       CASE WHEN purchase_days > 1
            THEN CAST(repeat_amount AS DOUBLE) / (purchase_days - 1) END AS m_x
FROM totals AS t JOIN per AS p ON p.customer_id = t.customer_id
ORDER BY t.customer_id
"""

# Recency, frequency and monetary at order level only: what RFM needs when frequency
# counts orders (the default) and nothing day-level is asked for.
_RFM_SQL = """
SELECT customer_id,
       max(ordered_at) AS last_order_at,
       DAYS_ELAPSED(max(ordered_at), :as_of) AS recency_days,
       count(*) FILTER (WHERE ordered_at > :start) AS orders,
       CAST(coalesce(sum(CAST(amount AS DECIMAL(18, 4))) FILTER (WHERE ordered_at > :start),
                     0) AS DOUBLE) AS revenue
FROM orders
WHERE status = 'paid' AND ordered_at <= :as_of
GROUP BY customer_id
ORDER BY customer_id
"""


# What CLV models need and nothing more (the content of lifetimes'
# summary_data_from_transaction_data): repeat purchase days x, t_x and T in days, and the
# mean value of repeat purchase days.
_CLV_SQL = """
WITH days AS (
    SELECT customer_id, CAST(LOCAL_TS(:tz, ordered_at) AS DATE) AS day,
           sum(CAST(amount AS DECIMAL(18, 4))) AS amount
    FROM orders
    WHERE status = 'paid' AND ordered_at <= :as_of
    GROUP BY customer_id, CAST(LOCAL_TS(:tz, ordered_at) AS DATE)
)
SELECT customer_id,
       count(*) AS purchase_days,
       count(*) - 1 AS x,
       date_diff('day', min(day), max(day)) AS t_x_days,
       date_diff('day', min(day), CAST(LOCAL_TS(:tz, :as_of) AS DATE)) AS t_days,
       CASE WHEN count(*) > 1
            THEN CAST(sum(amount) - arg_min(amount, day) AS DOUBLE) / (count(*) - 1) END AS m_x
FROM days
GROUP BY customer_id
ORDER BY customer_id
"""


def stats_sql(dialect: str) -> str:
    """The statistics query rendered for ``dialect`` (placeholders stay named)."""
    return render(_STATS_SQL, dialect)


# Referrals made, and the paid revenue (up to as_of) of the customers each one referred,
# every referred customer counted once per referrer. The revenue is each customer's
# revenue_total from the statistics (``_spent``: read from them, not summed from the
# orders again), summed as DECIMAL like every money total here.
_REFERRALS_SQL = """
WITH made AS (
  SELECT referrer_id, count(*) AS referrals FROM referrals WHERE "at" <= :as_of
  GROUP BY referrer_id),
pairs AS (
  SELECT DISTINCT referrer_id, referred_id FROM referrals WHERE "at" <= :as_of),
value AS (
  SELECT p.referrer_id, sum(CAST(s.revenue_total AS DECIMAL(38, 4))) AS revenue
  FROM pairs AS p JOIN _spent AS s ON s.customer_id = p.referred_id
  GROUP BY p.referrer_id)
SELECT m.referrer_id AS customer_id, m.referrals,
       CAST(coalesce(v.revenue, 0) AS DOUBLE) AS referral_revenue
FROM made AS m LEFT JOIN value AS v ON v.referrer_id = m.referrer_id
"""


@dataclass(frozen=True)
class Period:
    """The RFM period: the ``days`` before as_of (None: all history)."""

    days: int | None = 365

    def bounds(self, as_of: datetime) -> tuple[datetime, datetime]:
        if self.days is None:
            floor = datetime(1900, 1, 1, tzinfo=as_of.tzinfo)
            return floor, floor
        start = as_of - timedelta(days=self.days)
        return start, start - timedelta(days=self.days)


def customer_stats(ws: Workspace, as_of: datetime, period: Period | None = None) -> pa.Table:
    """Purchase statistics per customer as of ``as_of`` (see the module docstring)."""
    period = period or Period()
    start, prev_start = period.bounds(as_of)
    params: dict[str, Any] = {"tz": ws.config.timezone, "as_of": as_of, "start": start,
                              "prev_start": prev_start}
    with ws.engine.session({"orders": ws.facts.scan("orders", accounts=True)}) as session:
        return session.query(stats_sql(ws.engine.name), params)


def clv_summary(ws: Workspace, as_of: datetime) -> pa.Table:
    """x, t_x_days, t_days, m_x and purchase_days per customer (all history to as_of)."""
    with ws.engine.session({"orders": ws.facts.scan("orders", accounts=True)}) as session:
        return session.query(render(_CLV_SQL, ws.engine.name),
                             {"tz": ws.config.timezone, "as_of": as_of})


def rfm_summary(ws: Workspace, as_of: datetime, period: Period | None = None) -> pa.Table:
    """Recency (days), orders and revenue in the period, per customer, in one order pass."""
    start, _ = (period or Period()).bounds(as_of)
    with ws.engine.session({"orders": ws.facts.scan("orders", accounts=True)}) as session:
        return session.query(render(_RFM_SQL, ws.engine.name),
                             {"as_of": as_of, "start": start})


def referrals_made(ws: Workspace, as_of: datetime, buyer_stats: pa.Table) -> pa.Table:
    """Referrals each customer made up to ``as_of``, and the paid revenue of the customers
    they referred (``referral_revenue``); ``buyer_stats``: ``customer_stats`` as of the
    same instant."""
    sql = render(_REFERRALS_SQL, ws.engine.name)
    spent = buyer_stats.select(["customer_id", "revenue_total"])
    with ws.engine.session(ws.facts.scans(("referrals",), accounts=True),
                           {"_spent": spent}) as session:
        return session.query(sql, {"as_of": as_of})
