"""Shared pieces of the routes: JSON answers and the latest snapshot indexed by customer."""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi.responses import JSONResponse

from tierwise.definitions.json_values import jsonable
from tierwise.store import snapshots as snapshot_store
from tierwise.workspace import Workspace


def json_response(content: Any, status_code: int = 200) -> JSONResponse:
    """An answer from data that is JSON-ready already (``jsonable``), skipping FastAPI's
    generic encoder, which costs more than the query on list routes."""
    return JSONResponse(content, status_code=status_code)


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
            row = snapshot_store.latest(conn)
        return (int(row["snapshot_id"]), row["path"]) if row else None

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
