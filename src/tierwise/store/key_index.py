"""Which keys a fact table holds, as 64-bit hashes in memory, for imports of a few rows.

An import compares its keys with the stored rows to tell new rows from changed and
unchanged ones. For the real-time worker's micro-batches — a few thousand events against
millions stored — reading every stored key costs more than the rest of the import
together, and almost always finds nothing. A ``KeyIndex`` keeps the hash of every stored
key of one table (8 bytes a row) in a few sorted runs; an import asks it first: when none
of its keys hashes to a stored one, every row is new and the comparison is skipped. A match only
means "maybe" (another key can share the hash), and the import then compares with the
stored rows as always, so the index can make an import faster but never different.

The index follows the manifest: each ``refresh`` reads the keys of files it has not seen
(the worker's own micro-batches, imports by other processes, compacted files) and starts
over once files it read have been replaced by compaction or retention for more than half
its size. Hashes are DuckDB's ``hash()`` of the key columns, computed in this process.

>>> index = KeyIndex("events")  # doctest: +SKIP
>>> index.refresh(session, ws.facts.scan("events"))  # doctest: +SKIP
>>> index.any_of(staged_hashes)  # doctest: +SKIP
False
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from tierwise.engines.base import TableScan, sql_literal
from tierwise.engines.duckdb import ident


def key_hashes(session: Any, relation: str, key: tuple[str, ...]) -> np.ndarray:
    """``hash(key columns)`` of every row of ``relation`` (a table, view or read_parquet)."""
    columns = ", ".join(ident(k) for k in key)
    column = session.query(f"SELECT hash({columns}) AS h FROM {relation}").column(0)
    return column.to_numpy(zero_copy_only=False).astype(np.uint64, copy=False)


class KeyIndex:
    def __init__(self, table: str) -> None:
        self.table = table
        self._lock = threading.Lock()
        #: Sorted runs, each at least four times longer than the next: a micro-batch's
        #: keys add a short run, and runs merge as they grow (a handful however many
        #: files), so a lookup is a few binary searches.
        self._runs: list[np.ndarray] = []
        #: path → rows of every file whose keys are in the index
        self._files: dict[str, int] = {}
        #: path → the hashes of its keys (one a row) read ahead by ``prefetch``; only
        #: ``refresh`` adds them
        self._prefetched: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    def _add(self, hashes: np.ndarray) -> None:
        self._runs.append(np.sort(hashes))
        while len(self._runs) > 1 and len(self._runs[-1]) * 4 >= len(self._runs[-2]):
            last = self._runs.pop()
            # two sorted runs: a stable sort (timsort) merges them in one pass
            self._runs[-1] = np.sort(np.concatenate([self._runs[-1], last]), kind="stable")

    def refresh(self, session: Any, scan: TableScan) -> int:
        """Add the keys of the scan's files not read yet; returns how many files it read."""
        with self._lock:
            current = {f.path for f in scan.files}
            gone = sum(rows for path, rows in self._files.items() if path not in current)
            if gone and gone * 2 > len(self):
                self._runs, self._files = [], {}
            new = [f.path for f in scan.files if f.path not in self._files]
            if not new:
                return 0
            ahead = {p: self._prefetched.pop(p) for p in new if p in self._prefetched}
            rest = [p for p in new if p not in ahead]
            runs = list(ahead.values())
            if rest:
                runs.append(self._read(session, rest, scan.key))
            for path in new:
                self._files[path] = len(ahead[path]) if path in ahead else \
                    pq.ParquetFile(path).metadata.num_rows
            self._add(np.concatenate(runs) if len(runs) > 1 else runs[0])
            return len(new)

    @staticmethod
    def _read(session: Any, paths: list[str], key: tuple[str, ...]) -> np.ndarray:
        files = "[" + ", ".join(sql_literal(p) for p in paths) + "]"
        return key_hashes(session, f"read_parquet({files}, union_by_name = true)", key)

    def prefetch(self, session: Any, scan: TableScan) -> None:
        """Hash the keys of the scan's files not in the index yet, on the caller's thread,
        for the next ``refresh`` to add (the index itself changes only there, so that a
        scan older than the last one refreshed cannot drop keys the newer one added)."""
        with self._lock:
            new = [f.path for f in scan.files
                   if f.path not in self._files and f.path not in self._prefetched]
        for path in new:
            hashes = self._read(session, [path], scan.key)
            with self._lock:
                self._prefetched[path] = hashes
                while len(self._prefetched) > 8:
                    self._prefetched.pop(next(iter(self._prefetched)))

    def any_of(self, hashes: np.ndarray) -> bool:
        """True when some of ``hashes`` may be a stored key."""
        with self._lock:
            for run in self._runs:
                at = np.searchsorted(run, hashes)
                at[at == len(run)] = 0
                if bool(np.any(run[at] == hashes)):
                    return True
            return False


__all__ = ["KeyIndex", "key_hashes"]
