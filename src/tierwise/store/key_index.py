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
(imports by other processes, files rewritten by retention or erasure) and starts over
once files it read have been replaced for more than half its size. Two kinds of file are
not read:

* the file an import is about to publish: the import hands over the hashes of its keys
  (it computed them for its own question), so the worker's micro-batches are never read
  back;
* a file that compaction in this process merged from files whose keys the index holds:
  its keys are theirs, and it takes their place (the FactStore tells which files a merge
  replaced). The worker merges its micro-batches every ten seconds; reading each merged
  file (up to 200k rows) again, and starting over once the replaced files added up, made
  one micro-batch in a few hundred take a second.

Hashes are DuckDB's ``hash()`` of the key columns, computed in this process.

>>> index = KeyIndex("events")  # doctest: +SKIP
>>> index.refresh(session, ws.facts.scan("events"))  # doctest: +SKIP
>>> index.any_of(staged_hashes)  # doctest: +SKIP
False
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
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
    def __init__(self, table: str, merged: Mapping[str, tuple[str, ...]] | None = None
                 ) -> None:
        self.table = table
        #: path of a merged file → the paths of the files it replaced
        self._merged: Mapping[str, tuple[str, ...]] = merged if merged is not None else {}
        self._lock = threading.Lock()
        #: Sorted runs, each at least four times longer than the next: a micro-batch's
        #: keys add a short run, and runs merge as they grow (a handful however many
        #: files), so a lookup is a few binary searches.
        self._runs: list[np.ndarray] = []
        #: path → rows of every file whose keys are in the index
        self._files: dict[str, int] = {}
        #: path → the hashes of its keys (one a row) read ahead by ``prefetch`` or given
        #: by the import about to publish it (``expect``); only ``refresh`` adds them
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
        """Add the keys of the scan's files not in the index yet; returns how many files
        it added (read, read ahead, handed over by an import, or merged from others)."""
        with self._lock:
            taken = self._take_merges(scan)
            current = {f.path for f in scan.files}
            gone = sum(rows for path, rows in self._files.items() if path not in current)
            if gone and gone * 2 > len(self):
                self._runs, self._files = [], {}
            new = [f.path for f in scan.files if f.path not in self._files]
            if not new:
                return taken
            ahead = {p: self._prefetched.pop(p) for p in new if p in self._prefetched}
            rest = [p for p in new if p not in ahead]
            runs = list(ahead.values())
            if rest:
                runs.append(self._read(session, rest, scan.key))
            for path in new:
                self._files[path] = len(ahead[path]) if path in ahead else \
                    pq.ParquetFile(path).metadata.num_rows
            self._add(np.concatenate(runs) if len(runs) > 1 else runs[0])
            return taken + len(new)

    def _covered(self, path: str) -> tuple[str, ...] | None:
        """The files merged into ``path`` when the index holds the keys of each of them
        (or has them at hand, read ahead or expected)."""
        parts = self._merged.get(path)
        return parts if parts and all(p in self._files or p in self._prefetched
                                      for p in parts) else None

    def _take_merges(self, scan: TableScan) -> int:
        """Let the scan's merged files whose parts the index holds take their place;
        returns how many."""
        outputs: dict[tuple[str, ...], list[str]] = {}
        for f in scan.files:
            if f.path not in self._files and (parts := self._covered(f.path)):
                outputs.setdefault(parts, []).append(f.path)
        for parts, paths in outputs.items():
            # a part at hand but not in the index yet: the worker's latest micro-batch,
            # merged before the next import refreshed the index
            fresh = [self._prefetched.pop(p) for p in parts if p not in self._files]
            if fresh:
                self._add(np.concatenate(fresh))
            rows = sum(self._files.pop(p) for p in parts if p in self._files) + \
                sum(len(hashes) for hashes in fresh)
            for i, path in enumerate(paths):  # a merge writes one file or a few
                self._files[path] = rows if i == 0 else 0
                self._prefetched.pop(path, None)
        return sum(len(paths) for paths in outputs.values())

    def expect(self, path: str, hashes: np.ndarray) -> None:
        """The hashes of every key the file ``path`` will hold (an import about to publish
        it; more is harmless): a refresh takes them instead of reading the file."""
        with self._lock:
            self._keep_ahead(path, hashes)

    def _keep_ahead(self, path: str, hashes: np.ndarray) -> None:
        self._prefetched[path] = hashes
        while len(self._prefetched) > 8:
            self._prefetched.pop(next(iter(self._prefetched)))

    @staticmethod
    def _read(session: Any, paths: list[str], key: tuple[str, ...]) -> np.ndarray:
        files = "[" + ", ".join(sql_literal(p) for p in paths) + "]"
        return key_hashes(session, f"read_parquet({files}, union_by_name = true)", key)

    def prefetch(self, session: Any, scan: TableScan) -> None:
        """Hash the keys of the scan's files not in the index yet, on the caller's thread,
        for the next ``refresh`` to add (the index itself changes only there, so that a
        scan older than the last one refreshed cannot drop keys the newer one added)."""
        with self._lock:
            new = [f.path for f in scan.files if f.path not in self._files
                   and f.path not in self._prefetched and self._covered(f.path) is None]
        for path in new:
            hashes = self._read(session, [path], scan.key)
            with self._lock:
                self._keep_ahead(path, hashes)

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
