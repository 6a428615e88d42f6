"""A Parquet copy of the customers table for the compute engines.

The control store stays the system of record. Engines (DuckDB, and Spark on another
machine) read customers far faster from Parquet than through SQLAlchemy, so the workspace
keeps ``facts/_mirror/customers-<token>.parquet``, where the token is derived from the
table's row count and latest ``updated_at``: any import or edit changes the token and the
next reader rebuilds the copy. Old copies are deleted when a new one is written.

Anything that changes customers without touching ``updated_at`` (none today; erasure
will) must call ``invalidate``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from tierwise.store import customers as customer_store
from tierwise.store.control import ControlStore
from tierwise.store.tables import customers


def _token(control: ControlStore) -> str:
    with control.read() as conn:
        # two queries: alone, max() is one step down the updated_at index
        count = conn.execute(sa.select(sa.func.count()).select_from(customers)).scalar()
        latest = conn.execute(sa.select(sa.func.max(customers.c.updated_at))).scalar()
    return hashlib.sha1(f"{count}|{latest}".encode()).hexdigest()[:16]


def folder(root: Path) -> Path:
    return root / "facts" / "_mirror"


def path_for(root: Path, control: ControlStore) -> Path:
    """The mirror file for the current customers, built first if needed."""
    target = folder(root) / f"customers-{_token(control)}.parquet"
    if target.exists():
        return target
    folder(root).mkdir(parents=True, exist_ok=True)
    with control.read() as conn:
        table = customer_store.as_arrow(conn)
    tmp = folder(root) / f".{uuid.uuid4().hex}.parquet"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, target)  # concurrent builders write identical content
    for old in folder(root).glob("customers-*.parquet"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


_cache: dict[Path, pa.Table] = {}
_cache_lock = threading.Lock()


def read(root: Path, control: ControlStore) -> pa.Table:
    """The current customers as Arrow; the last copy read stays in memory (the server's
    worker reads it for every micro-batch, and it changes only when customers do)."""
    path = path_for(root, control)
    with _cache_lock:
        cached = _cache.get(path)
    if cached is not None:
        return cached
    table = pq.read_table(path)
    with _cache_lock:
        _cache.clear()
        _cache[path] = table
    return table


_sorted: dict[int, tuple[pa.Table, np.ndarray, np.ndarray]] = {}


def rows_of(table: pa.Table, ids: list[str]) -> pa.Table:
    """The rows of ``table`` (a copy ``read`` returned) whose ``customer_id`` is in ``ids``,
    in the table's order: a binary search in the ids sorted once per copy (the real-time
    worker asks this for a few hundred ids several times a second; hashing the 100k ids of
    the copy each time cost more than the rest of the lookup)."""
    with _cache_lock:
        found = _sorted.get(id(table))
        if found is None or found[0] is not table:
            column = np.array(table["customer_id"].to_pylist(), dtype=str)
            order = np.argsort(column, kind="stable")
            _sorted.clear()
            found = _sorted[id(table)] = (table, column[order], order)
    _, ordered, order = found
    wanted = np.unique(np.array(ids, dtype=str))
    at = np.searchsorted(ordered, wanted)
    inside = at < len(ordered)
    at = at[inside][ordered[at[inside]] == wanted[inside]]
    return table.take(pa.array(np.sort(order[at])))


def read_if_kept(root: Path, control: ControlStore) -> pa.Table | None:
    """``read``, but only in a process that keeps a copy in memory already (one that
    evaluates segments, like the real-time worker); None elsewhere, where building the
    copy for one question would cost more than asking the control store."""
    with _cache_lock:
        kept = bool(_cache)
    return read(root, control) if kept else None


def invalidate(root: Path) -> None:
    with _cache_lock:
        _cache.clear()
    for old in folder(root).glob("customers-*.parquet"):
        old.unlink(missing_ok=True)
