"""Customer value: snapshots, computations, RFM / tier / lifecycle / CLV summaries, settings."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, Query, Request
from pydantic import ValidationError

from tierwise.api.auth import require, workspace
from tierwise.api.problems import MAX_ID, RESPONSES, Problem
from tierwise.api.routes_imports import runner
from tierwise.api.views import jsonable
from tierwise.models import compute
from tierwise.security.roles import Principal
from tierwise.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["values"], responses=RESPONSES)


def _snapshot(ws: Workspace, snapshot_id: int | None) -> compute.Snapshot:
    return compute.load_snapshot(ws, snapshot_id)


def _breakdown(table: pa.Table, column: str) -> list[dict[str, Any]]:
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


@router.get("/snapshots", summary="Saved computations, oldest first")
def snapshots(request: Request, principal: Principal = require("values:read")
              ) -> list[dict[str, Any]]:
    return [jsonable({k: v for k, v in s.items() if k != "path"})
            for s in compute.list_snapshots(workspace(request))]


@router.post("/compute", status_code=202, summary="Compute RFM, tiers, lifecycle and CLV "
             "for every customer (a job)")
def run_compute(request: Request, principal: Principal = require("values:write")
                ) -> dict[str, Any]:
    ws = workspace(request)

    def work(job_id: int, progress: Any) -> dict[str, Any]:
        snap = ws.compute()
        return {"snapshot_id": snap.snapshot_id, "customers": snap.table.num_rows,
                "seconds": snap.seconds, "as_of": snap.as_of}

    job_id = runner(request).submit("compute", {}, principal.actor, work)
    return {"job_id": job_id, "status_url": f"/v1/jobs/{job_id}"}


@router.get("/values/summary", summary="Tier, lifecycle, RFM-segment and churn-band mix with "
            "revenue shares")
def summary(request: Request, snapshot_id: int | None = Query(None, ge=1, le=MAX_ID),
            principal: Principal = require("values:read")) -> dict[str, Any]:
    snap = _snapshot(workspace(request), snapshot_id)
    table = snap.table
    out: dict[str, Any] = {"snapshot_id": snap.snapshot_id, "as_of": jsonable(snap.as_of),
                           "customers": table.num_rows}
    for column in ("tier", "lifecycle", "rfm_segment", "churn_risk"):
        if column in table.column_names:
            out[column] = _breakdown(table, column)
    return out


@router.get("/values/rfm/grid", summary="R × F grid: customers and revenue per cell")
def rfm_grid(request: Request, snapshot_id: int | None = Query(None, ge=1, le=MAX_ID),
             principal: Principal = require("values:read")) -> dict[str, Any]:
    snap = _snapshot(workspace(request), snapshot_id)
    t = snap.table.filter(pc.is_valid(snap.table.column("rfm_r")))
    grouped = pa.table({"r": t.column("rfm_r"), "f": t.column("rfm_f"),
                        "revenue": pc.fill_null(t.column("revenue_total"), 0.0)}).group_by(
        ["r", "f"]).aggregate([("revenue", "sum"), ("revenue", "count")])
    cells = [{"r": int(r["r"]), "f": int(r["f"]), "customers": int(r["revenue_count"]),
              "revenue": float(r["revenue_sum"] or 0.0)} for r in grouped.to_pylist()]
    return {"snapshot_id": snap.snapshot_id,
            "cells": sorted(cells, key=lambda c: (c["r"], c["f"]))}


@router.get("/values/clv", summary="CLV distribution: total, mean and quantiles per tier")
def clv(request: Request, snapshot_id: int | None = Query(None, ge=1, le=MAX_ID),
        principal: Principal = require("values:read")) -> dict[str, Any]:
    snap = _snapshot(workspace(request), snapshot_id)
    t = snap.table
    if "clv" not in t.column_names:
        raise Problem(404, "this snapshot has no CLV values")
    out = []
    for tier in sorted({v for v in t.column("tier").to_pylist() if v is not None}):
        values = pc.drop_null(t.filter(pc.equal(t.column("tier"), tier)).column("clv"))
        q = pc.quantile(values, q=[0.1, 0.5, 0.9]).to_pylist() if len(values) else []
        out.append({"tier": tier, "customers": len(values),
                    "total": float(pc.sum(values).as_py() or 0.0),
                    "mean": pc.mean(values).as_py() if len(values) else None,
                    "p10": q[0] if q else None, "median": q[1] if q else None,
                    "p90": q[2] if q else None})
    return {"snapshot_id": snap.snapshot_id, "by_tier": jsonable(out)}


@router.get("/values/migration", summary="Tier migration between two snapshots")
def migration(request: Request, before: int = Query(..., ge=1, le=MAX_ID),
              after: int | None = Query(None, ge=1, le=MAX_ID),
              principal: Principal = require("values:read")) -> dict[str, Any]:
    ws = workspace(request)
    old, new = _snapshot(ws, before), _snapshot(ws, after)
    joined = old.table.select(["customer_id", "tier"]).join(
        new.table.select(["customer_id", "tier"]), "customer_id", join_type="full outer",
        left_suffix="_before", right_suffix="_after")
    grouped = joined.group_by(["tier_before", "tier_after"]).aggregate(
        [("customer_id", "count")])
    moves = [{"from": r["tier_before"], "to": r["tier_after"], "customers": r["customer_id_count"]}
             for r in grouped.to_pylist()]
    return {"before": old.snapshot_id, "after": new.snapshot_id,
            "moves": sorted(moves, key=lambda m: (str(m["from"]), str(m["to"])))}


@router.get("/settings", summary="Current value settings (RFM, tiers, lifecycle, CLV, churn)")
def settings(request: Request, principal: Principal = require("values:read")
             ) -> dict[str, Any]:
    loaded = compute.load_settings(workspace(request))
    return {name: {"version": loaded.versions.get(name, 0),
                   "spec": getattr(loaded, name).model_dump(mode="json")}
            for name in compute.SETTINGS}


@router.put("/settings/{name}", summary="Save a new version of one value setting")
def save_settings(name: str, body: dict[str, Any], request: Request,
                  note: str | None = Query(None, max_length=500),
                  principal: Principal = require("values:write")) -> dict[str, Any]:
    if name not in compute.SETTINGS:
        raise Problem(404, f"no setting {name!r}; expected one of {', '.join(compute.SETTINGS)}")
    model = compute.SETTINGS[name][2]
    try:
        spec = model.model_validate(body)
    except ValidationError as exc:
        raise Problem(422, "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                     for e in exc.errors())) from None
    version = compute.save_setting(workspace(request), name, spec, note)
    return {"name": name, "version": version}
