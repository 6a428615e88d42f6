"""Customer economics (客户经济价值): what each customer earned and cost over a period.

For a period ``[start, end)`` (``end`` at most as_of), per customer:

- ``revenue`` — the amounts of paid orders (refunded and cancelled ones excluded).
- ``gross_margin`` — per paid order: ``amount − cost`` when the order has a cost; else
  ``amount × margin`` of its category (setting ``category_margins``); else ``amount ×
  default_margin``; else the whole amount (such orders are counted in
  ``orders_without_cost`` and said by every front end: their margin is overstated).
- ``acquisition_cost`` — for a customer acquired in the period (``signup_at``, else their
  first paid order, falls in it): their own ``acquisition_cost``, else their acquisition
  channel's (setting ``channel_cac``), else 0.
- ``cost_to_serve`` = ``ticket_cost`` + ``manager_cost`` + ``service_message_cost``: each
  ticket opened in the period at the cost ``ticket_costs`` gives its channel and priority
  (``"phone/high"``), else its priority (``"high"``), else its channel (``"phone"``), else
  ``ticket_cost``; the account manager's time — hours a month × ``hourly_cost`` × the
  period's months (days ÷ 30.4375), the hours those of the service level of the playbook
  that applies to the customer (``service_level_hours``), else of their tier
  (``manager_hours``, the tier of the latest snapshot); and what the service messages
  delivered to them in the period cost (actions with ``purpose: service``; each delivery
  records its channel's ``message_costs`` when sent).
- ``marketing_cost`` — what the other (marketing) messages delivered to the customer in
  the period cost.
- ``profit_contribution`` = gross margin − cost to serve − marketing cost − acquisition
  cost. It adds up over customers: a tier's or segment's contribution is the sum of its
  customers'.
- ``referral_value`` — the gross margin of the orders placed in the period by the
  customers this one referred, within ``referral_window_days`` of the referral, times
  ``referral_credit``. Attribution: a customer referred more than once is credited to the
  earliest referral (ties: the smallest referrer id). It is shown beside the contribution,
  not in it: the referred customers' margin is already in their own contribution, and
  adding it again would count it twice in any total.

Money is summed as decimals (six places), so every run and every engine gives the same
figures (float sums depend on the order of the additions). The sources of these formulas
are in docs/customer-value.md. ``per_customer`` computes all
of them in one query on the workspace's engine; the value score's ``contribution`` metric
and profit CLV use the same function (``models.compute``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tierwise.compile.dialects import render
from tierwise.engines.base import Engine, naive_utc
from tierwise.errors import Invalid
from tierwise.store import customer_mirror
from tierwise.store import outbox as outbox_store
from tierwise.store.facts import rolled_up
from tierwise.workspace import Workspace

#: Days in an average month (365.25 / 12): the period's months for the manager's time.
MONTH_DAYS = 30.4375
#: The measures, in the order reports show them.
MEASURES = ("revenue", "gross_margin", "acquisition_cost", "ticket_cost", "manager_cost",
            "service_message_cost", "cost_to_serve", "marketing_cost", "profit_contribution",
            "referral_value")


def _shares(value: dict[str, float], name: str) -> dict[str, float]:
    for key, share in value.items():
        if not 0 <= share <= 1:
            raise Invalid(f"{name}.{key} = {share}: a margin is a share of revenue, 0 to 1",
                          zh=f"{name}.{key} = {share}：毛利率是收入的比例，应在 0 到 1 之间")
    return value


def _costs(value: dict[str, float], name: str) -> dict[str, float]:
    for key, cost in value.items():
        if cost < 0:
            raise Invalid(f"{name}.{key} = {cost}: expected a cost ≥ 0",
                          zh=f"{name}.{key} = {cost}：费用应不小于 0")
    return value


class EconomicsSettings(BaseModel):
    """Costs and margins for customer economics (versioned as ``economics/settings``)."""

    model_config = ConfigDict(extra="forbid")
    #: Share of revenue kept as gross margin for orders without a cost and without a
    #: category margin; None: such orders count whole (and are said).
    default_margin: float | None = Field(default=None, ge=0, le=1)
    #: Gross margin by product category (``{"数码电子": 0.18}``).
    category_margins: dict[str, float] = Field(default_factory=dict)
    #: Cost of one ticket, and by priority, channel or both (``{"high": 120, "phone": 40,
    #: "phone/urgent": 300}``: the most specific key a ticket matches).
    ticket_cost: float = Field(default=0.0, ge=0)
    ticket_costs: dict[str, float] = Field(default_factory=dict)
    #: Account manager's hours a month by tier (``{"A": 6, "B": 2}``), and an hour's cost.
    manager_hours: dict[str, float] = Field(default_factory=dict)
    #: Hours a month by the service level of the playbook that applies to a customer
    #: (``{"premium": 6, "standard": 1}``); a customer no such playbook covers is priced
    #: by ``manager_hours``.
    service_level_hours: dict[str, float] = Field(default_factory=dict)
    hourly_cost: float = Field(default=0.0, ge=0)
    #: Acquisition cost by channel, for customers without their own ``acquisition_cost``.
    channel_cac: dict[str, float] = Field(default_factory=dict)
    referral_window_days: int = Field(default=365, ge=1, le=3660)
    referral_credit: float = Field(default=1.0, ge=0, le=1)

    _margins = field_validator("category_margins")(
        classmethod(lambda cls, v: _shares(v, "category_margins")))
    _tickets = field_validator("ticket_costs")(
        classmethod(lambda cls, v: _costs(v, "ticket_costs")))
    _hours = field_validator("manager_hours")(
        classmethod(lambda cls, v: _costs(v, "manager_hours")))
    _levels = field_validator("service_level_hours")(
        classmethod(lambda cls, v: _costs(v, "service_level_hours")))
    _cac = field_validator("channel_cac")(classmethod(lambda cls, v: _costs(v, "channel_cac")))


_SQL = """
WITH om AS (
  SELECT r.customer_id, r.ordered_at, r.amount,
    CASE WHEN r.cost IS NOT NULL THEN r.amount - r.cost
         WHEN m.margin IS NOT NULL THEN r.amount * m.margin
         WHEN :has_default THEN r.amount * :default_margin
         ELSE r.amount END AS margin,
    CASE WHEN r.cost IS NULL AND m.margin IS NULL AND NOT :has_default THEN 1 ELSE 0 END
      AS no_cost
  FROM orders r LEFT JOIN _margins m ON m.category = r.category
  WHERE r.status = 'paid' AND r.ordered_at >= :start AND r.ordered_at < :end
), o AS (
  SELECT customer_id, count(*) AS orders,
    CAST(sum(CAST(amount AS DECIMAL(18, 6))) AS DOUBLE) AS revenue,
    CAST(sum(CAST(margin AS DECIMAL(18, 6))) AS DOUBLE) AS gross_margin,
    sum(no_cost) AS orders_without_cost
  FROM om GROUP BY customer_id
), first_paid AS (
  -- only asked of customers without a signup instant (it comes first when known)
  SELECT customer_id, min(ordered_at) AS first_order_at FROM orders
  WHERE status = 'paid' AND ordered_at < :end
    AND customer_id IN (SELECT customer_id FROM _people WHERE signup_at IS NULL)
  GROUP BY customer_id
), t AS (
  SELECT k.customer_id, count(*) AS tickets,
    CAST(sum(CAST(coalesce(both_.cost, p.cost, ch.cost, :ticket_cost) AS DECIMAL(18, 6)))
      AS DOUBLE) AS ticket_cost
  FROM tickets k
  LEFT JOIN _ticket_costs both_ ON both_."key" = k.channel || '/' || k.priority
  LEFT JOIN _ticket_costs p ON p."key" = k.priority
  LEFT JOIN _ticket_costs ch ON ch."key" = k.channel
  WHERE k.opened_at >= :start AND k.opened_at < :end GROUP BY k.customer_id
), credited AS (
  SELECT referred_id, referrer_id, "at" FROM (
    SELECT referred_id, referrer_id, "at", row_number() OVER (
      PARTITION BY referred_id ORDER BY "at", referrer_id) AS n
    FROM referrals WHERE "at" < :end) x
  WHERE n = 1
), ref AS (
  SELECT c.referrer_id AS customer_id,
    CAST(sum(CAST(om.margin AS DECIMAL(18, 6))) AS DOUBLE) AS referred_margin
  FROM credited c JOIN om ON om.customer_id = c.referred_id
  WHERE om.ordered_at >= c."at"
    AND DAYS_ELAPSED(c."at", om.ordered_at) < :window_days
  GROUP BY c.referrer_id
)
SELECT p.customer_id,
  coalesce(o.orders, 0) AS orders,
  coalesce(o.revenue, 0) AS revenue,
  coalesce(o.gross_margin, 0) AS gross_margin,
  coalesce(o.orders_without_cost, 0) AS orders_without_cost,
  CASE WHEN coalesce(p.signup_at, fp.first_order_at) >= :start
        AND coalesce(p.signup_at, fp.first_order_at) < :end
       THEN coalesce(p.acquisition_cost, cc.cost, 0) ELSE 0 END AS acquisition_cost,
  coalesce(t.tickets, 0) AS tickets,
  coalesce(t.ticket_cost, 0) AS ticket_cost,
  coalesce(lv.hours, h.hours, 0) * :hourly_cost * :months AS manager_cost,
  coalesce(msg.messages, 0) + coalesce(msg.service_messages, 0) AS messages,
  coalesce(msg.service_cost, 0) AS service_message_cost,
  coalesce(msg.cost, 0) AS marketing_cost,
  coalesce(ref.referred_margin, 0) * :credit AS referral_value
FROM _people p
LEFT JOIN o ON o.customer_id = p.customer_id
LEFT JOIN first_paid fp ON fp.customer_id = p.customer_id
LEFT JOIN t ON t.customer_id = p.customer_id
LEFT JOIN ref ON ref.customer_id = p.customer_id
LEFT JOIN _messages msg ON msg.customer_id = p.customer_id
LEFT JOIN _tiers tr ON tr.customer_id = p.customer_id
LEFT JOIN _hours h ON h.tier = tr.tier
LEFT JOIN _levels lv ON lv.customer_id = p.customer_id
LEFT JOIN _channel_cac cc ON cc.channel = p.channel
ORDER BY p.customer_id
"""


def _pairs(key: str, value: str, items: dict[str, float]) -> pa.Table:
    return pa.table({key: pa.array(list(items), pa.string()),
                     value: pa.array([float(v) for v in items.values()], pa.float64())})


#: The customers' columns ``per_customer`` reads.
PEOPLE_COLUMNS = ["customer_id", "signup_at", "acquisition_cost", "channel"]


def per_customer(ws: Workspace, settings: EconomicsSettings, start: datetime, end: datetime,
                 tiers: pa.Table | None = None, levels: pa.Table | None = None, *,
                 people: pa.Table | None = None, engine: Engine | None = None) -> pa.Table:
    """Every current customer's economics over ``[start, end)`` (the ``MEASURES`` plus
    orders, orders_without_cost, tickets and messages). ``tiers`` (customer_id, tier) and
    ``levels`` (customer_id, service_level: of the playbook that applies) price the
    manager's time; without them there is none (the value score, which decides the tiers,
    reads it so). ``people``: the ``PEOPLE_COLUMNS`` of ``accounts_and_customers`` when
    the caller has read them already; ``engine``: another than the workspace's (one
    with a thread of its own, for work beside other work)."""
    # accounts and private customers: a contact's orders, tickets, referrals and messages
    # count for its account
    if people is None:
        people = customer_mirror.accounts_and_customers(ws.root, ws.control, PEOPLE_COLUMNS)
    engine = engine or ws.engine
    with ws.control.read() as conn:
        costs = outbox_store.costs_by_customer(conn, start, end)
        # a merged customer's messages count for the survivor, a contact's for its account
        account = dict(rolled_up(conn)) if costs else {}
    sent: dict[str, list[float]] = {}  # messages, cost, service messages, their cost
    for customer, purpose, count, cost in costs:
        kept = sent.setdefault(account.get(customer, customer), [0, 0.0, 0, 0.0])
        at = 2 if purpose == "service" else 0
        kept[at] += count
        kept[at + 1] += cost
    messages = pa.table({
        "customer_id": pa.array(list(sent), pa.string()),
        "messages": pa.array([int(v[0]) for v in sent.values()], pa.int64()),
        "cost": pa.array([v[1] for v in sent.values()], pa.float64()),
        "service_messages": pa.array([int(v[2]) for v in sent.values()], pa.int64()),
        "service_cost": pa.array([v[3] for v in sent.values()], pa.float64())})
    hours = {} if levels is None else settings.service_level_hours
    level_hours = [] if levels is None else [
        (c, hours[lv]) for c, lv in zip(levels["customer_id"].to_pylist(),
                                        levels["service_level"].to_pylist(), strict=True)
        if lv in hours]
    if tiers is None:
        tiers = pa.table({"customer_id": pa.array([], pa.string()),
                          "tier": pa.array([], pa.string())})
    arrow = {"_people": people, "_messages": messages, "_tiers": tiers,
             "_margins": _pairs("category", "margin", settings.category_margins),
             "_ticket_costs": _pairs("key", "cost", settings.ticket_costs),
             "_hours": _pairs("tier", "hours", settings.manager_hours),
             "_levels": pa.table({"customer_id": pa.array([c for c, _ in level_hours],
                                                          pa.string()),
                                  "hours": pa.array([h for _, h in level_hours],
                                                    pa.float64())}),
             "_channel_cac": _pairs("channel", "cost", settings.channel_cac)}
    params: dict[str, Any] = {
        "start": naive_utc(start), "end": naive_utc(end),
        "has_default": settings.default_margin is not None,
        "default_margin": float(settings.default_margin or 0.0),
        "ticket_cost": float(settings.ticket_cost), "hourly_cost": float(settings.hourly_cost),
        "months": (end - start).total_seconds() / 86400 / MONTH_DAYS,
        # whole days elapsed as rules and statistics count them (compile.dialects)
        "window_days": settings.referral_window_days,
        "credit": float(settings.referral_credit)}
    with engine.session(ws.facts.scans(("orders", "tickets", "referrals"), accounts=True),
                        arrow) as session:
        found = session.query(render(_SQL, engine.name), params)
    cost_to_serve = pc.add(pc.add(found["ticket_cost"], found["manager_cost"]),
                           found["service_message_cost"])
    contribution = pc.subtract(
        pc.subtract(pc.subtract(found["gross_margin"], cost_to_serve),
                            found["marketing_cost"]), found["acquisition_cost"])
    found = found.append_column("cost_to_serve", cost_to_serve)
    return found.append_column("profit_contribution", contribution)


def costs_configured(settings: EconomicsSettings, message_costs: dict[str, float]) -> bool:
    """Whether serving customers costs anything under these settings (profit CLV then
    subtracts each customer's cost per purchase)."""
    return bool(settings.ticket_cost or any(settings.ticket_costs.values())
                or any(message_costs.values()))


__all__ = ["MEASURES", "PEOPLE_COLUMNS", "EconomicsSettings", "costs_configured", "per_customer"]
