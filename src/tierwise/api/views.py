"""Shared pieces of the routes: how a customer is shown to a principal, the latest snapshot
indexed by customer, JSON-safe conversion."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from fastapi.responses import JSONResponse

from tierwise.definitions.roles import Principal
from tierwise.services.customers import CustomerProfile
from tierwise.store.tables import snapshots
from tierwise.workspace import Workspace

_PLAIN = (str, int, bool, type(None))


def jsonable(value: Any) -> Any:
    """Values from Arrow and the control store as JSON-ready data (NaN → null)."""
    if type(value) in _PLAIN:  # the common case first: this runs for every value shown
        return value
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):  # DuckDB's HUGEINT sums arrive as decimals
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def json_response(content: Any, status_code: int = 200) -> JSONResponse:
    """An answer from data that is JSON-ready already (``jsonable``), skipping FastAPI's
    generic encoder, which costs more than the query on list routes."""
    return JSONResponse(content, status_code=status_code)


def present_customer(ws: Workspace, principal: Principal, row: dict[str, Any]
                     ) -> dict[str, Any]:
    """A customer row as this principal may see it: PII and sensitive attributes masked
    without the right to see this customer's PII."""
    out = {k: v for k, v in row.items() if not k.endswith("_hash")}
    for key, empty in (("tags", []), ("attributes", {})):
        text = out.get(key)
        if isinstance(text, str):
            try:
                out[key] = json.loads(text)
            except ValueError:
                out[key] = text
        elif text is None:
            out[key] = empty
    visible = principal.sees_pii_of(out.get("owner"))
    if not visible:
        ws.personal_data.mask_customer(out)
    out["pii_masked"] = not visible
    return jsonable(out)  # type: ignore[no-any-return]


def present_profile(ws: Workspace, principal: Principal, found: CustomerProfile
                    ) -> CustomerProfile:
    """A 360° profile as this principal may see it: the customer as ``present_customer``
    shows it and, without the right to this customer's PII, the sensitive keys of event
    properties masked."""
    visible = principal.sees_pii_of(found.customer.get("owner"))
    events = found.recent_events if visible else [
        {**e, "properties": ws.personal_data.mask_json(e.get("properties"))}
        for e in found.recent_events]
    return dataclasses.replace(found, customer=present_customer(ws, principal, found.customer),
                               recent_events=events)


class LatestValues:
    """The latest snapshot's computed values, indexed by customer id, reloaded when a newer
    snapshot is saved (one cheap query per lookup)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._lock = threading.Lock()
        self._snapshot_id: int | None = None
        self._table: pa.Table | None = None
        self._index: dict[str, int] = {}
        self._version: tuple[int, int] | None = None

    def _latest(self) -> tuple[int, str] | None:
        with self.ws.control.read() as conn:
            row = conn.execute(sa.select(snapshots.c.snapshot_id, snapshots.c.path)
                               .order_by(snapshots.c.snapshot_id.desc()).limit(1)).first()
        return (int(row.snapshot_id), row.path) if row else None

    def table(self) -> tuple[int | None, pa.Table | None]:
        latest = self._latest()
        if latest is None:
            return None, None
        # The file can be rewritten in place (the churn model adds its probabilities).
        version = (latest[0], (self.ws.root / latest[1]).stat().st_mtime_ns)
        with self._lock:
            if version != self._version:
                table = pq.read_table(self.ws.root / latest[1])
                self._index = {cid: i for i, cid in enumerate(
                    table.column("customer_id").to_pylist())}
                self._table, self._snapshot_id, self._version = table, latest[0], version
            return self._snapshot_id, self._table

    def of(self, customer_id: str) -> dict[str, Any] | None:
        snapshot_id, table = self.table()
        if table is None:
            return None
        i = self._index.get(customer_id)
        if i is None:
            return None
        row = table.slice(i, 1).to_pylist()[0]
        row["snapshot_id"] = snapshot_id
        return jsonable(row)  # type: ignore[no-any-return]
