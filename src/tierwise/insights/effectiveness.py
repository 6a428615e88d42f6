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
        raise TierwiseError(f"the holdout share must be between 0 and 1, got {share}")
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


def _window_outcomes(ws: Workspace, ids: list[str], start: datetime, days: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    members = pa.table({"customer_id": pa.array(ids, pa.string())})
    end = start + timedelta(days=days)
    with ws.engine.session(ws.facts.scans(), {"_group": members}) as s:
        rows = s.query(
            "SELECT g.customer_id, coalesce(o.n, 0) AS orders, coalesce(o.revenue, 0) AS revenue,"
            " coalesce(e.n, 0) AS events FROM _group AS g "
            "LEFT JOIN (SELECT customer_id, count(*) AS n, sum(amount) AS revenue FROM orders "
            "WHERE status = 'paid' AND ordered_at > $1 AND ordered_at <= $2 GROUP BY 1) AS o "
            "USING (customer_id) "
            "LEFT JOIN (SELECT customer_id, count(*) AS n FROM events WHERE occurred_at > $1 "
            "AND occurred_at <= $2 GROUP BY 1) AS e USING (customer_id)", [start, end])
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
        raise TierwiseError("both groups need at least two customers")
    a = _window_outcomes(ws, treated, start, days)
    b = _window_outcomes(ws, held, start, days)
    return [_rate_effect("repurchase_rate", a[0], b[0]),
            _rate_effect("retention_rate", a[1], b[1]),
            _mean_effect("revenue_per_customer", a[2], b[2])]
