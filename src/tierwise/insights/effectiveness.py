"""Does differentiated treatment work? Random holdouts and uplift with confidence intervals.

``holdout`` splits a list of customers deterministically (a keyed hash of each id), so the
same customer always lands in the same group for the same experiment name. ``uplift``
compares treated and holdout customers over a window after the treatment started:
repurchase rate (a paid order in the window), retention (any order or event in the
window) and revenue per customer, each as treated − holdout with a 95% confidence interval
(normal approximation: Wald for rates, Welch for revenue).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from tierwise.errors import TierwiseError
from tierwise.workspace import Workspace

Z95 = 1.959963984540054


def holdout(ids: list[str], share: float, experiment: str) -> tuple[list[str], list[str]]:
    """(treated, holdout): each id's group is fixed by a hash of the experiment and the id."""
    if not 0 < share < 1:
        raise TierwiseError(f"the holdout share must be between 0 and 1, got {share}",
                            zh=f"留出组比例应在 0 到 1 之间，实际为 {share}")
    treated: list[str] = []
    held: list[str] = []
    for cid in ids:
        digest = hashlib.sha256(f"{experiment}\x00{cid}".encode()).digest()
        (held if int.from_bytes(digest[:8], "big") / 2**64 < share else treated).append(cid)
    return treated, held


@dataclass
class Effect:
    metric: str
    treated: float
    holdout: float
    difference: float
    low: float
    high: float
    relative: float | None

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def _window_outcomes(ws: Workspace, ids: list[str], starts: list[datetime], days: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per customer, over (their start, start + days]: bought, came back, revenue."""
    stamp = pa.timestamp("us", tz="UTC")
    members = pa.table({"customer_id": pa.array(ids, pa.string()),
                        "t0": pa.array(starts, stamp),
                        "t1": pa.array([t + timedelta(days=days) for t in starts], stamp)})
    with ws.engine.session(ws.facts.scans(), {"_group": members}) as s:
        rows = s.query(
            "SELECT g.customer_id, coalesce(o.n, 0) AS orders, coalesce(o.revenue, 0) AS revenue,"
            " coalesce(e.n, 0) AS events FROM _group AS g "
            "LEFT JOIN (SELECT r.customer_id, count(*) AS n, sum(r.amount) AS revenue "
            "FROM orders r JOIN _group w ON r.customer_id = w.customer_id "
            "WHERE r.status = 'paid' AND r.ordered_at > w.t0 "
            "AND r.ordered_at <= w.t1 GROUP BY 1) AS o "
            "USING (customer_id) "
            "LEFT JOIN (SELECT r.customer_id, count(*) AS n FROM events r "
            "JOIN _group w ON r.customer_id = w.customer_id WHERE r.occurred_at > w.t0 "
            "AND r.occurred_at <= w.t1 GROUP BY 1) AS e USING (customer_id) "
            "ORDER BY g.customer_id")
    orders = np.asarray(rows["orders"].to_numpy(zero_copy_only=False), dtype=float)
    events = np.asarray(rows["events"].to_numpy(zero_copy_only=False), dtype=float)
    revenue = np.asarray(rows["revenue"].to_numpy(zero_copy_only=False), dtype=float)
    return (orders > 0).astype(float), ((orders + events) > 0).astype(float), revenue


def _rate_effect(metric: str, a: np.ndarray, b: np.ndarray) -> Effect:
    p1, p2 = float(a.mean()), float(b.mean())
    se = math.sqrt(p1 * (1 - p1) / len(a) + p2 * (1 - p2) / len(b))
    d = p1 - p2
    return Effect(metric, p1, p2, d, d - Z95 * se, d + Z95 * se, d / p2 if p2 else None)


def _mean_effect(metric: str, a: np.ndarray, b: np.ndarray) -> Effect:
    m1, m2 = float(a.mean()), float(b.mean())
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    d = m1 - m2
    return Effect(metric, m1, m2, d, d - Z95 * se, d + Z95 * se, d / m2 if m2 else None)


def uplift(ws: Workspace, treated: list[str], held: list[str], start: datetime,
           days: int = 30) -> list[Effect]:
    """Treated − holdout over ``days`` after ``start``, with 95% confidence intervals."""
    if len(treated) < 2 or len(held) < 2:
        raise TierwiseError("both groups need at least two customers",
                            zh="两组都至少需要两位客户")
    a = _window_outcomes(ws, treated, [start] * len(treated), days)
    b = _window_outcomes(ws, held, [start] * len(held), days)
    return _effects(a, b)


def _effects(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> list[Effect]:
    return [_rate_effect("repurchase_rate", a[0], b[0]),
            _rate_effect("retention_rate", a[1], b[1]),
            _mean_effect("revenue_per_customer", a[2], b[2])]


@dataclass
class ActionEffect:
    """A trigger's or playbook's effect against its holdout group, and what it cost."""

    source: str
    treated: int
    held_out: int
    effects: list[Effect]
    #: Messages delivered and their cost (``message_costs``, in ``currency``).
    delivered: int
    cost: float
    currency: str
    #: Revenue per treated customer above the holdout's, times the treated customers.
    incremental_revenue: float
    #: incremental revenue ÷ cost (None when nothing was spent).
    return_on_cost: float | None


def action_uplift(ws: Workspace, source: str, days: int = 30) -> ActionEffect:
    """Uplift of a trigger's or playbook's actions (``source``: ``trigger:<key>`` or
    ``playbook:<key>``) against its holdout group, each customer measured over ``days``
    from the instant the action was due for them. The treated group is everyone the action
    was meant for (intention to treat: failed and suppressed deliveries count as treated),
    the holdout group everyone the ``holdout`` share kept out. The cost is what its
    delivered messages cost (each recorded when sent); the return, the incremental revenue
    (the revenue-per-customer difference times the treated customers) over that cost. For
    a journey whose goal (``exit_when``) was reached by someone, the conversion rate of
    its runs comes first."""
    from tierwise.store import outbox as outbox_store

    with ws.control.read() as conn:
        rows = outbox_store.of_source(conn, source)
        delivered, cost = outbox_store.cost_of_source(conn, source)
        runs = outbox_store.first_runs(conn, source.split(":", 1)[1]) \
            if source.startswith("playbook:") else {}
    first: dict[str, tuple[str, datetime]] = {}
    for customer, status, created in rows:  # a customer's first action decides the group
        first.setdefault(customer, (status, created))
    treated = [(c, t) for c, (status, t) in first.items() if status != "held_out"]
    held = [(c, t) for c, (status, t) in first.items() if status == "held_out"]
    if len(treated) < 2 or len(held) < 2:
        raise TierwiseError(f"{source}: {len(treated)} treated and {len(held)} held-out "
                            "customers; both groups need at least two (set a holdout share on "
                            "the trigger or playbook)",
                            zh=f"{source}：实验组 {len(treated)} 位、留出组 {len(held)} 位客户；两"
                            "组都至少需要两位（请在触发器或行动手册上设置留出比例）")
    a = _window_outcomes(ws, [c for c, _ in treated], [t for _, t in treated], days)
    b = _window_outcomes(ws, [c for c, _ in held], [t for _, t in held], days)
    effects = _effects(a, b)
    if any(status == "converted" for status in runs.values()):
        # a journey's goal (exit_when) is checked for held-out customers too
        effects.insert(0, _rate_effect(
            "conversion_rate",
            np.array([runs.get(c) == "converted" for c, _ in treated], dtype=float),
            np.array([runs.get(c) == "converted" for c, _ in held], dtype=float)))
    revenue = next(e for e in effects if e.metric == "revenue_per_customer")
    incremental = revenue.difference * len(treated)
    return ActionEffect(source, len(treated), len(held), effects, delivered, cost,
                        ws.config.currency, incremental, incremental / cost if cost else None)
