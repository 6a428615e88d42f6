"""Per-customer features for clustering, by group, from the latest snapshot and the facts.

Each feature knows the segment-language expression that computes it, so a rule learnt on
features can be saved as a segment; features with no such expression (category shares)
describe clusters but are left out of rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tierwise.errors import TierwiseError
from tierwise.workspace import Workspace


@dataclass(frozen=True)
class Feature:
    name: str
    expression: str | None  # in the segment language; None: not expressible
    log: bool  # skewed and non-negative: log1p before standardising
    labels: tuple[str, str]  # (zh-CN, en) for profiles and names


FEATURES: dict[str, tuple[Feature, ...]] = {
    "rfm": (
        Feature("recency_days", "DAYS_SINCE_LAST(orders)", True, ("距上次购买天数",
                                                                   "days since last order")),
        Feature("orders_total", "COUNT(orders)", True, ("订单数", "orders")),
        Feature("revenue_total", "SUM(orders.amount)", True, ("消费总额", "revenue")),
        Feature("average_order", "AVG(orders.amount)", True, ("客单价", "average order")),
    ),
    "value": (
        Feature("clv", "clv", True, ("客户终身价值", "CLV")),
        Feature("p_alive", "p_alive", False, ("存活概率", "P(alive)")),
    ),
    "engagement": (
        Feature("events_90d", "COUNT(events, LAST 90d)", True, ("近90天行为数",
                                                               "events in 90 days")),
        Feature("orders_365d", "COUNT(orders, LAST 365d)", True, ("近一年订单数",
                                                                 "orders in a year")),
    ),
}
GROUPS = (*FEATURES, "categories", "firmographics")
#: Firmographic columns, one-hot encoded for the most common values.
FIRMOGRAPHICS = ("industry", "company_size")
TOP_VALUES = 5
TOP_CATEGORIES = 6


@dataclass
class FeatureMatrix:
    customer_ids: list[str]
    features: list[Feature]
    values: np.ndarray  # customers × features, raw (not transformed)


def _snapshot_columns(ws: Workspace) -> pa.Table:
    from tierwise.models.compute import load_snapshot

    snap = load_snapshot(ws)
    table = snap.table
    revenue = pc.fill_null(table["revenue_total"], 0.0)
    orders = pc.cast(pc.fill_null(table["orders_total"], 0), pa.float64())
    average = pc.divide(revenue, pc.if_else(pc.equal(orders, 0.0), None, orders))
    return table.append_column("average_order", average)


def customer_features(ws: Workspace, groups: list[str], buyers_only: bool = True
                      ) -> FeatureMatrix:
    """The chosen feature groups (``rfm``, ``value``, ``engagement``, ``categories``)."""
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown or not groups:
        raise TierwiseError(f"unknown feature group(s) {', '.join(unknown) or '(none)'}; "
                            f"expected some of {', '.join(GROUPS)}",
                            zh=f"未知的特征组 {', '.join(unknown) or '（无）'}："
                            f"可用的有 {', '.join(GROUPS)}")
    table = _snapshot_columns(ws)
    if buyers_only:
        table = table.filter(pc.greater(pc.fill_null(table["orders_total"], 0), 0))
    if table.num_rows == 0:
        raise TierwiseError("no customers with orders in the latest snapshot to cluster",
                            zh="最新快照中没有有订单的客户可供聚类")
    ids = table["customer_id"].to_pylist()
    features: list[Feature] = []
    columns: list[np.ndarray] = []
    as_of = table["as_of"][0].as_py()
    for group in groups:
        if group in ("rfm", "value"):
            for feature in FEATURES[group]:
                features.append(feature)
                columns.append(_numbers(table[feature.name]))
        elif group == "engagement":
            counts = _engagement(ws, as_of)
            for feature in FEATURES[group]:
                features.append(feature)
                column = counts.get(feature.name, {})
                columns.append(np.array([column.get(i, 0.0) for i in ids], dtype=float))
        elif group == "firmographics":
            for feature, indicator in _firmographics(ws, ids):
                features.append(feature)
                columns.append(indicator)
        else:
            shares, names = _category_shares(ws, as_of)
            for name in names:
                features.append(Feature(f"share_{name}", None, False,
                                        (f"{name}占比", f"share of {name}")))
                column = shares.get(name, {})
                columns.append(np.array([column.get(i, 0.0) for i in ids], dtype=float))
    values = np.column_stack(columns)
    # A missing value (no order for recency, no model for CLV) takes the column median.
    for j in range(values.shape[1]):
        missing = np.isnan(values[:, j])
        if missing.any():
            values[missing, j] = np.nanmedian(values[:, j]) if (~missing).any() else 0.0
    return FeatureMatrix(ids, features, values)


def _firmographics(ws: Workspace, ids: list[str]) -> list[tuple[Feature, np.ndarray]]:
    """0/1 indicators for the most common industries and company sizes."""
    people = {r["customer_id"]: r for r in ws.table("customers").select(
        ["customer_id", *FIRMOGRAPHICS]).to_pylist()}
    out = []
    for name in FIRMOGRAPHICS:
        values = [people.get(i, {}).get(name) for i in ids]
        tally: dict[str, int] = {}
        for v in values:
            if v:
                tally[v] = tally.get(v, 0) + 1
        for value in sorted(tally, key=lambda v: (-tally[v], v))[:TOP_VALUES]:
            out.append((Feature(f"{name}={value}", None, False,
                                (f"{name}为{value}", f"{name} {value}")),
                        np.array([1.0 if v == value else 0.0 for v in values])))
    return out


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False),
                      dtype=float)


def _engagement(ws: Workspace, as_of: object) -> dict[str, dict[str, float]]:
    with ws.engine.session(ws.facts.scans()) as s:
        events = s.query(
            "SELECT customer_id, count(*) AS n FROM events WHERE occurred_at <= $1 AND "
            "occurred_at > $1::TIMESTAMPTZ - INTERVAL 90 DAY GROUP BY 1", [as_of])
        orders = s.query(
            "SELECT customer_id, count(*) AS n FROM orders WHERE status = 'paid' AND "
            "ordered_at <= $1 AND ordered_at > $1::TIMESTAMPTZ - INTERVAL 365 DAY "
            "GROUP BY 1", [as_of])
    return {"events_90d": dict(zip(events["customer_id"].to_pylist(),
                                   events["n"].to_pylist(), strict=True)),
            "orders_365d": dict(zip(orders["customer_id"].to_pylist(),
                                    orders["n"].to_pylist(), strict=True))}


def _category_shares(ws: Workspace, as_of: object
                     ) -> tuple[dict[str, dict[str, float]], list[str]]:
    with ws.engine.session(ws.facts.scans()) as s:
        rows = s.query(
            "SELECT customer_id, coalesce(category, '?') AS category, sum(amount) AS spend "
            "FROM orders WHERE status = 'paid' AND ordered_at <= $1 GROUP BY 1, 2", [as_of])
    spend = rows.group_by("category").aggregate([("spend", "sum")]).sort_by(
        [("spend_sum", "descending")])
    top = [c for c in spend["category"].to_pylist() if c != "?"][:TOP_CATEGORIES]
    totals: dict[str, float] = {}
    for cid, amount in zip(rows["customer_id"].to_pylist(), rows["spend"].to_pylist(),
                           strict=True):
        totals[cid] = totals.get(cid, 0.0) + (amount or 0.0)
    shares: dict[str, dict[str, float]] = {c: {} for c in top}
    for cid, category, amount in zip(rows["customer_id"].to_pylist(),
                                     rows["category"].to_pylist(),
                                     rows["spend"].to_pylist(), strict=True):
        if category in shares and totals.get(cid):
            shares[category][cid] = (amount or 0.0) / totals[cid]
    return shares, top
