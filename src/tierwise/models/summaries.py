"""Summaries of a snapshot that the API, the dashboard and the review share: customers and
revenue per value of a column, CLV per tier, the R × F grid, and moves between snapshots."""

from __future__ import annotations

from typing import Any

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
