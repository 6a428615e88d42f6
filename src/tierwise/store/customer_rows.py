"""The rows of one fact table in memory, grouped by customer, for evaluations of a few
customers at a time.

The real-time worker evaluates segments for the customers of each micro-batch: a thousand
customers, each with a few dozen events among millions. Columnar files cannot hand out
one customer's rows: every such evaluation read the whole table and joined it against the
batch's customers, and that pass was the largest part of a micro-batch (0.1 s on 2.8M
events, growing with the history). ``CustomerRows`` keeps the columns rules read in memory,
each file's rows sorted by customer with an offset per customer, so the rows of a batch's
customers are a binary search and a ``take`` per file.

The copy follows the manifest exactly: each ``refresh`` drops the files no longer listed
(merged by compaction, rewritten by retention or erasure) and reads the files it has not
seen, one at a time, through the same redirects the engine applies (merged customers read
as their survivor). So the rows it hands out are the rows a scan of the table gives, as
long as no key is stored twice: when some file overlaps another (``TableScan.dedupe``, a
changed row stored again) the newest version must win across files, and ``refresh``
declines — callers then read the files as before. A change of the redirects or a column
not kept yet starts the copy over.

Memory: the kept columns of every row (for 2.8M events with customer, time, type and
properties, about 150 MB).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tierwise.engines.base import TableScan

CUSTOMER = "customer_id"


@dataclass
class _Part:
    """One file's rows sorted by customer: ``ids[i]``'s rows are
    ``table[starts[i]:starts[i + 1]]``."""

    table: pa.Table
    ids: np.ndarray
    starts: np.ndarray


def _part(table: pa.Table) -> _Part:
    table = table.combine_chunks()
    ids_all = table[CUSTOMER].to_numpy(zero_copy_only=False).astype(str)
    if len(ids_all) == 0:
        return _Part(table, ids_all, np.zeros(1, np.int64))
    change = np.flatnonzero(ids_all[1:] != ids_all[:-1]) + 1
    starts = np.concatenate([[0], change, [len(ids_all)]]).astype(np.int64)
    return _Part(table, ids_all[starts[:-1]], starts)


def columns_read(schema: pa.Schema, *sql: str) -> tuple[str, ...]:
    """The columns of ``schema`` that the SQL texts may read: every column whose name occurs
    as a word, or all of them when a ``*`` other than ``COUNT(*)`` occurs (a superset is
    only memory; a column missed would be an error)."""
    text = " ".join(sql)
    if re.search(r"\*", re.sub(r"(?i)count\(\s*\*\s*\)", "", text)):
        return tuple(schema.names)
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    return tuple(n for n in schema.names if n in words or n == CUSTOMER)


class CustomerRows:
    def __init__(self, table: str) -> None:
        self.table = table
        self._lock = threading.Lock()
        self._parts: dict[str, _Part] = {}
        self._columns: tuple[str, ...] = ()
        self._redirects: tuple[tuple[str, str], ...] = ()
        self._schema = pa.schema([])

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns kept (none before the first ``refresh``)."""
        return self._columns

    @property
    def rows(self) -> int:
        return sum(p.table.num_rows for p in self._parts.values())

    def refresh(self, engine: Any, scan: TableScan, columns: tuple[str, ...]) -> bool:
        """Follow ``scan``'s files, keeping at least ``columns``; False when the copy cannot
        stand for the scan (some key is stored twice)."""
        if scan.dedupe or CUSTOMER not in scan.schema.names:
            return False
        with self._lock:
            missing = [c for c in columns if c not in self._columns]
            if missing or scan.redirects != self._redirects:
                self._parts = {}
                self._columns = tuple(n for n in scan.schema.names
                                      if n in self._columns or n in columns)
                self._redirects = scan.redirects
            self._schema = scan.schema
            listed = {f.path for f in scan.files}
            for path in [p for p in self._parts if p not in listed]:
                del self._parts[path]
            new = [f for f in scan.files if f.path not in self._parts]
            if new:
                wanted = ", ".join('"' + c + '"' for c in self._columns)
                with engine.session() as session:
                    for file in new:
                        one = TableScan(scan.table, (file,), scan.key, False, scan.schema,
                                        scan.redirects, scan.refs)
                        session.register_scan("_file", one)
                        rows = session.query(
                            f"SELECT {wanted} FROM _file WHERE {CUSTOMER} IS NOT NULL "
                            f"ORDER BY {CUSTOMER}")
                        self._parts[file.path] = _part(rows.cast(pa.schema(
                            [scan.schema.field(c) for c in self._columns])))
            return True

    def of(self, customers: np.ndarray, columns: tuple[str, ...]) -> pa.Table:
        """The rows of ``customers`` (a sorted array of unique ids), ``columns`` only."""
        with self._lock:
            pieces = []
            for part in self._parts.values():
                if len(part.ids) == 0:
                    continue
                at = np.searchsorted(part.ids, customers)
                inside = at < len(part.ids)
                at = at[inside][part.ids[at[inside]] == customers[inside]]
                if len(at) == 0:
                    continue
                lows, highs = part.starts[at], part.starts[at + 1]
                counts = highs - lows
                index = np.repeat(lows - np.cumsum(counts) + counts, counts) + np.arange(
                    counts.sum())
                pieces.append(part.table.select(list(columns)).take(pa.array(index)))
            if not pieces:
                return pa.schema([self._schema.field(c) for c in columns]).empty_table()
            return pa.concat_tables(pieces)


__all__ = ["CustomerRows", "columns_read"]
