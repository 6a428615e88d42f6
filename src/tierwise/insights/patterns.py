"""Behaviour patterns of all buyers, of one segment or of one customer: category affinity,
purchase hours and weekdays, expected next purchase, and association rules between
categories.

Association rules treat each customer's set of bought categories (or products) as one
basket: support = share of baskets holding the items, confidence(A → B) = support(A ∪ B) /
support(A), lift = confidence / support(B).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from itertools import combinations
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tierwise.errors import TierwiseError
from tierwise.workspace import Workspace

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _orders(ws: Workspace, segment: str | None, columns: str,
            customers: list[str] | None = None) -> pa.Table:
    arrow: dict[str, pa.Table] = {}
    where = "status = 'paid'"
    ids = customers
    if segment:
        from tierwise.segments.membership import members_at

        ids = members_at(ws, segment)
        if not ids:
            raise TierwiseError(f"segment {segment!r} has no members (evaluate it first)",
                                zh=f"分群 {segment!r} 没有成员（请先计算它）")
    if ids is not None:
        arrow["_members"] = pa.table({"customer_id": pa.array(ids, pa.string())})
        where += " AND customer_id IN (SELECT customer_id FROM _members)"
    with ws.engine.session(ws.facts.scans(), arrow) as s:
        return s.query(f"SELECT {columns} FROM orders WHERE {where}")


def _shares(table: pa.Table) -> dict[str, float]:
    grouped = table.group_by("category").aggregate([("amount", "sum")])
    total = pc.sum(grouped["amount_sum"]).as_py() or 1.0
    return {c or "?": (v or 0.0) / total for c, v in zip(
        grouped["category"].to_pylist(), grouped["amount_sum"].to_pylist(), strict=True)}


def category_affinity(ws: Workspace, segment: str | None = None,
                      customer_id: str | None = None) -> list[dict[str, Any]]:
    """Each category's share of spend in the segment (or of one customer), in all buyers,
    and the lift: 3.0 means three times the share an average buyer spends there."""
    if customer_id is not None:
        inside = _shares(_orders(ws, None, "category, amount", [customer_id]))
    else:
        inside = _shares(_orders(ws, segment, "category, amount"))
    narrowed = segment is not None or customer_id is not None
    everyone = _shares(_orders(ws, None, "category, amount")) if narrowed else inside
    rows = [{"category": c, "share": s, "share_all": everyone.get(c, 0.0),
             "lift": s / everyone[c] if everyone.get(c) else None}
            for c, s in inside.items()]
    return sorted(rows, key=lambda r: -r["share"])


def purchase_times(ws: Workspace, segment: str | None = None) -> dict[str, list[int]]:
    """Paid orders by hour of day and by weekday, in the workspace's time zone."""
    table = _orders(ws, segment, "ordered_at")
    zone = ws.config.zone
    hours = [0] * 24
    weekdays = [0] * 7
    for t in table["ordered_at"].to_pylist():
        local = t.astimezone(zone)
        hours[local.hour] += 1
        weekdays[local.weekday()] += 1
    return {"hour": hours, "weekday": weekdays}


def next_purchases(ws: Workspace) -> pa.Table:
    """Expected next purchase per buyer: the last order plus the customer's typical gap
    between orders (from the latest snapshot), or the median gap of all repeat buyers."""
    from tierwise.models.compute import load_snapshot

    table = load_snapshot(ws).table.filter(pc.is_valid(pc.field("last_order_at")))
    gaps = table["typical_gap_days"].to_pylist()
    known = sorted(g for g in gaps if g is not None)
    fallback = known[len(known) // 2] if known else 30.0
    last = table["last_order_at"].to_pylist()
    expected = [t + timedelta(days=g if g is not None else fallback)
                for t, g in zip(last, gaps, strict=True)]
    return pa.table({"customer_id": table["customer_id"], "last_order_at": table["last_order_at"],
                     "typical_gap_days": pa.array([g if g is not None else fallback
                                                   for g in gaps], pa.float64()),
                     "expected_next_purchase": pa.array(expected,
                                                        pa.timestamp("us", tz="UTC"))})


def association_rules(ws: Workspace, segment: str | None = None, item: str = "category",
                      min_support: float = 0.02, min_confidence: float = 0.2
                      ) -> list[dict[str, Any]]:
    """Rules A → B between single items, strongest lift first."""
    if item not in ("category", "product_id"):
        raise TierwiseError("item is category or product_id",
                            zh="item 应为 category 或 product_id")
    table = _orders(ws, segment, f"DISTINCT customer_id, {item} AS item")
    baskets: dict[str, set[str]] = {}
    for cid, value in zip(table["customer_id"].to_pylist(), table["item"].to_pylist(),
                          strict=True):
        if value is not None:
            baskets.setdefault(cid, set()).add(value)
    n = len(baskets)
    if n == 0:
        return []
    singles: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    for items in baskets.values():
        singles.update(items)
        pairs.update(combinations(sorted(items), 2))
    rules = []
    for (a, b), together in pairs.items():
        support = together / n
        if support < min_support:
            continue
        for left, right in ((a, b), (b, a)):
            confidence = together / singles[left]
            if confidence >= min_confidence:
                rules.append({"if": left, "then": right, "support": support,
                              "confidence": confidence,
                              "lift": confidence / (singles[right] / n)})
    return sorted(rules, key=lambda r: (-r["lift"], -r["support"], r["if"], r["then"]))
