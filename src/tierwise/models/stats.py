"""Per-customer purchase statistics as of an instant, computed on the engine in one query.

The statistics feed RFM, CLV, tiers and lifecycle stages. Purchases are paid orders at or
before ``as_of`` (refunds and cancellations excluded); "purchase days" count at most one
purchase per calendar day in the workspace's time zone, as the CLV literature does.

The SQL is written once, parsed by sqlglot and rendered for the engine's dialect; values
are bound as named parameters, never pasted into the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import pyarrow as pa
import sqlglot

from tierwise.workspace import Workspace

# One row per customer with at least one paid order at or before :as_of.
# :start bounds the RFM period (orders after it count for frequency and monetary);
# :prev_start..:start is the previous period of the same length, for growth.
_STATS_SQL = """
WITH paid AS (
    SELECT customer_id, ordered_at, amount, coalesce(cost, 0) AS cost,
           CAST(timezone(:tz, ordered_at) AS DATE) AS day
    FROM orders
    WHERE status = 'paid' AND ordered_at <= :as_of
),
days AS (
    SELECT customer_id, day, sum(amount) AS amount
    FROM paid GROUP BY customer_id, day
),
gaps AS (
    SELECT customer_id, day, amount,
           date_diff('day', lag(day) OVER (PARTITION BY customer_id ORDER BY day), day) AS gap
    FROM days
),
per_day AS (
    SELECT customer_id,
           count(*) AS purchase_days,
           min(day) AS first_day,
           max(day) AS last_day,
           sum(amount) - arg_min(amount, day) AS repeat_amount,
           arg_max(gap, day) AS gap_before_last
    FROM gaps GROUP BY customer_id
)
SELECT p.customer_id,
       min(p.ordered_at) AS first_order_at,
       max(p.ordered_at) AS last_order_at,
       count(*) AS orders_total,
       sum(p.amount) AS revenue_total,
       sum(p.amount - p.cost) AS profit_total,
       count(*) FILTER (WHERE p.ordered_at > :start) AS orders,
       coalesce(sum(p.amount) FILTER (WHERE p.ordered_at > :start), 0) AS revenue,
       count(DISTINCT p.day) FILTER (WHERE p.ordered_at > :start) AS purchase_days_period,
       coalesce(sum(p.amount) FILTER (WHERE p.ordered_at > :prev_start
                                      AND p.ordered_at <= :start), 0) AS revenue_previous,
       any_value(d.purchase_days) AS purchase_days,
       any_value(d.purchase_days) - 1 AS x,
       date_diff('day', any_value(d.first_day), any_value(d.last_day)) AS t_x_days,
       date_diff('day', any_value(d.first_day), CAST(timezone(:tz, :as_of) AS DATE)) AS t_days,
       CAST(floor(date_diff('second', max(p.ordered_at), :as_of) / 86400) AS BIGINT)
           AS recency_days,
       any_value(d.gap_before_last) AS gap_before_last_days,
       CASE WHEN any_value(d.purchase_days) > 1
            THEN any_value(d.repeat_amount) / (any_value(d.purchase_days) - 1) END AS m_x
FROM paid AS p JOIN per_day AS d ON p.customer_id = d.customer_id
GROUP BY p.customer_id
ORDER BY p.customer_id
"""


@cache
def stats_sql(dialect: str) -> str:
    """The statistics query rendered for ``dialect`` (placeholders stay named)."""
    return sqlglot.transpile(_STATS_SQL, read="duckdb", write=dialect)[0]


_REFERRALS_SQL = """
SELECT referrer_id AS customer_id, count(*) AS referrals
FROM referrals WHERE "at" <= :as_of GROUP BY referrer_id
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
    with ws.engine.session({"orders": ws.facts.scan("orders")}) as session:
        return session.query(stats_sql(ws.engine.name), params)


def referrals_made(ws: Workspace, as_of: datetime) -> pa.Table:
    """Referrals each customer made up to ``as_of``."""
    sql = sqlglot.transpile(_REFERRALS_SQL, read="duckdb", write=ws.engine.name)[0]
    with ws.engine.session({"referrals": ws.facts.scan("referrals")}) as session:
        return session.query(sql, {"as_of": as_of})
