"""Summaries of a snapshot that the CLI, the API, the dashboard and the review share:
customers and revenue per value of a column, CLV per tier, the R × F grid, moves between
snapshots, and the expected value at risk of churn."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def breakdown(table: pa.Table, column: str) -> list[dict[str, Any]]:
    """Customers, revenue and their shares per value of ``column``."""
    revenue = pc.fill_null(table.column("revenue_total"), 0.0)
    grouped = pa.table({"key": table.column(column), "revenue": revenue}).group_by(
        "key").aggregate([("revenue", "sum"), ("revenue", "count")])
    total_customers = max(table.num_rows, 1)
    total_revenue = float(pc.sum(revenue).as_py() or 0.0) or 1.0
    rows = [{"value": r["key"], "customers": int(r["revenue_count"]),
             "revenue": float(r["revenue_sum"] or 0.0),
             "customer_share": r["revenue_count"] / total_customers,
             "revenue_share": float(r["revenue_sum"] or 0.0) / total_revenue}
            for r in grouped.to_pylist()]
    return sorted(rows, key=lambda r: (r["value"] is None, str(r["value"])))


#: Lifecycle stages counted as active customers.
ACTIVE_STAGES = ("new", "reactivated", "loyal", "active")


def kpi_parts(table: pa.Table) -> pa.Table:
    """Each customer's part of the headline figures (``kpis``): one row per customer."""
    names = table.column_names
    n = table.num_rows

    def floats(column: str) -> pa.Array:
        return pa.array(np.nan_to_num(column_floats(table, column)) if column in names
                        else np.zeros(n), pa.float64())

    def flags(column: str, wanted: tuple[str, ...]) -> pa.Array:
        if column not in names:
            return pa.array(np.zeros(n, dtype=np.int64))
        return pc.cast(pc.fill_null(pc.is_in(table.column(column), pa.array(wanted)), False),
                       pa.int64())

    return pa.table({"customers": pa.array(np.ones(n, dtype=np.int64)),
                     "active": flags("lifecycle", ACTIVE_STAGES),
                     "revenue": floats("revenue_total"), "orders": floats("orders_total"),
                     "clv": floats("clv"), "churn_high": flags("churn_risk", ("high",)),
                     "value_at_risk": pa.array(np.nan_to_num(stake(table)), pa.float64())})


def _finished(sums: dict[str, Any], has_clv: bool) -> dict[str, Any]:
    customers = int(sums["customers"] or 0)
    revenue = float(sums["revenue"] or 0.0)
    return {"customers": customers, "active": int(sums["active"] or 0), "revenue": revenue,
            "orders": int(sums["orders"] or 0),
            "revenue_per_customer": revenue / customers if customers else None,
            "clv": float(sums["clv"] or 0.0) if has_clv else None,
            "churn_high": int(sums["churn_high"] or 0),
            "value_at_risk": float(sums["value_at_risk"] or 0.0)}


def kpis(table: pa.Table) -> dict[str, Any]:
    """The headline figures of a group of customers (a snapshot, or any part of it): how
    many, how many active, revenue and orders to date, revenue per customer, CLV, how many
    at high churn risk and the expected value at risk. The overview and every group of a
    breakdown show these (``kpis_by`` sums the same parts per group).

    >>> t = pa.table({"lifecycle": ["active", "churned"], "revenue_total": [100.0, None],
    ...               "orders_total": [2, 1], "churn_risk": ["low", "high"],
    ...               "p_alive": [0.9, 0.2], "clv": [50.0, None]})
    >>> k = kpis(t)
    >>> k["customers"], k["active"], k["revenue"], k["churn_high"], k["clv"]
    (2, 1, 100.0, 1, 50.0)
    """
    parts = kpi_parts(table)
    return _finished({c: pc.sum(parts.column(c)).as_py() for c in parts.column_names},
                     "clv" in table.column_names)


def kpis_by(table: pa.Table, keys: pa.Array) -> list[tuple[Any, dict[str, Any]]]:
    """``kpis`` of each group of ``table``'s rows that share a value of ``keys`` (one per
    row; nulls are a group of their own)."""
    parts = kpi_parts(table)
    grouped = parts.append_column("_key", keys).group_by("_key").aggregate(
        [(c, "sum") for c in parts.column_names])
    has_clv = "clv" in table.column_names
    return [(row["_key"], _finished({c: row[f"{c}_sum"] for c in parts.column_names},
                                    has_clv)) for row in grouped.to_pylist()]


def clv_by_tier(table: pa.Table) -> list[dict[str, Any]]:
    """CLV total, mean and 10/50/90 % quantiles per tier."""
    out = []
    for tier in sorted({v for v in table.column("tier").to_pylist() if v is not None}):
        values = pc.drop_null(table.filter(pc.equal(table.column("tier"), tier)).column("clv"))
        q = pc.quantile(values, q=[0.1, 0.5, 0.9]).to_pylist() if len(values) else []
        out.append({"tier": tier, "customers": len(values),
                    "total": float(pc.sum(values).as_py() or 0.0),
                    "mean": pc.mean(values).as_py() if len(values) else None,
                    "p10": q[0] if q else None, "median": q[1] if q else None,
                    "p90": q[2] if q else None})
    return out


def rf_grid(table: pa.Table) -> list[dict[str, Any]]:
    """Customers and revenue per (R score, F score) cell."""
    t = table.filter(pc.is_valid(table.column("rfm_r")))
    grouped = pa.table({"r": t.column("rfm_r"), "f": t.column("rfm_f"),
                        "revenue": pc.fill_null(t.column("revenue_total"), 0.0)}).group_by(
        ["r", "f"]).aggregate([("revenue", "sum"), ("revenue", "count")])
    cells = [{"r": int(r["r"]), "f": int(r["f"]), "customers": int(r["revenue_count"]),
              "revenue": float(r["revenue_sum"] or 0.0)} for r in grouped.to_pylist()]
    return sorted(cells, key=lambda c: (c["r"], c["f"]))


def moves(before: pa.Table, after: pa.Table, column: str) -> list[dict[str, Any]]:
    """Customers per (value before, value after) of ``column`` between two snapshots."""
    joined = before.select(["customer_id", column]).join(
        after.select(["customer_id", column]), "customer_id", join_type="full outer",
        left_suffix="_before", right_suffix="_after")
    grouped = joined.group_by([f"{column}_before", f"{column}_after"]).aggregate(
        [("customer_id", "count")])
    found = [{"from": r[f"{column}_before"], "to": r[f"{column}_after"],
              "customers": int(r["customer_id_count"])} for r in grouped.to_pylist()]
    return sorted(found, key=lambda m: (str(m["from"]), str(m["to"])))


def column_floats(table: pa.Table, name: str) -> np.ndarray:
    """A snapshot column as floats, NaN where empty (all NaN when the column is absent)."""
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    return np.asarray(pc.fill_null(table.column(name).cast(pa.float64()), np.nan)
                      .to_numpy(zero_copy_only=False), dtype=float)


def annual_run_rate(t: pa.Table) -> np.ndarray:
    """Revenue per year of each customer since the first order (tenure under a year counts
    as a year, so a new customer's first order is not multiplied)."""
    revenue = np.nan_to_num(column_floats(t, "revenue_total"))
    if "first_order_at" not in t.column_names:
        return revenue
    first = pc.cast(t.column("first_order_at"), pa.timestamp("us", "UTC"))
    as_of = pc.cast(t.column("as_of"), pa.timestamp("us", "UTC"))
    micros = pc.cast(pc.cast(pc.subtract(as_of, first), pa.int64()), pa.float64())
    days = np.asarray(pc.fill_null(pc.divide(micros, 86_400_000_000.0), 0.0)
                      .to_numpy(zero_copy_only=False), dtype=float)
    return revenue / np.maximum(days / 365.25, 1.0)


def stake(t: pa.Table) -> np.ndarray:
    """(1 − P(alive)) × annual run-rate per customer (NaN where P(alive) is unknown)."""
    return (1 - column_floats(t, "p_alive")) * annual_run_rate(t)


def value_at_risk(table: pa.Table) -> float:
    """The expected value at risk of churn: Σ (1 − P(alive)) × annual revenue run-rate over
    the customers with a P(alive) — a year's revenue the business can expect to lose to
    churn. The one definition the CLI, the API, the dashboard and the review show.

    >>> t = pa.table({"p_alive": [0.9, 0.5, None], "revenue_total": [100.0, 200.0, 50.0]})
    >>> value_at_risk(t)  # 0.1 × 100 + 0.5 × 200; the third has no P(alive)
    110.0
    """
    return float(np.nansum(stake(table)))


def at_risk(t: pa.Table, limit: int) -> list[dict[str, Any]]:
    """The high-risk customers with the most value at stake first (``limit`` of them), each
    with its value at risk."""
    high = t.filter(pc.equal(t.column("churn_risk"), "high"))
    if not high.num_rows:
        return []
    at_stake = np.nan_to_num(stake(high))
    order = np.argsort(-at_stake, kind="stable")[:limit]
    picked = high.take(pa.array(order)).select([c for c in (
        "customer_id", "tier", "lifecycle", "recency_days", "typical_gap_days", "orders_total",
        "revenue_total", "p_alive", "clv", "churn_probability") if c in high.column_names])
    rows = picked.to_pylist()
    for row, value in zip(rows, at_stake[order], strict=True):
        row["value_at_risk"] = float(value)
    return rows
