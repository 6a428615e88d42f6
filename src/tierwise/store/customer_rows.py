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
as their survivor). So the rows it hands out are the rows a scan of the table gives. A
key stored twice (``TableScan.dedupe``: a changed order stored again, in a newer file) is
resolved the way the engine resolves it, the file with the higher ``seq`` wins: each part
keeps the 64-bit hash of every row's key, sorted, and while the scan has overlapping files
every part added marks the rows of older parts with the same key as superseded (and its own
rows superseded by newer parts). A hash shared by two different keys would hide a row; with
64-bit hashes that is about one chance in 10^10 for a thousand changed rows against
millions stored. A change of the redirects or a column not kept yet starts the copy over,
as does a file removed while keys are stored twice (the marks are then recomputed).

A merge of customers only adds redirects (the merged ids, and the ids merged into them
before, now read as the survivor): the copy does not start over then but keeps a map from
the ids its rows are filed under to the customers they now belong to (``_moved``), asks
for a customer's rows under every id filed for it, and hands them out under its own id.
With customers matched and merged as they arrive, a merge a second had made every
micro-batch read the whole table again (3–5 s a round on 2.8M events). Redirects taken
away (a merge undone) start the copy over, as does a map grown past ``MAX_MOVED``.

Each part also keeps, for each column of instants (``occurred_at``, ``ordered_at``, …), its
values sorted with their rows: the real-time worker's search for the customers on a time
edge (``segments.incremental.crossing``) is then two binary searches a part instead of a scan
of every stored row (it read the whole table every ten seconds, and slowed the rounds
running next to it by half).

Memory: the kept columns of every row (for 2.8M events with customer, time, type and
properties, about 150 MB), plus 12 bytes a row for the key hashes and 12 bytes a row for
each column of instants.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tierwise.engines.base import TableScan

CUSTOMER = "customer_id"
#: The column of key hashes in what a file is read into (dropped once kept as an array).
HASH = "_key_hash"


@dataclass
class _Part:
    """One file's rows sorted by customer: ``ids[i]``'s rows are
    ``table[starts[i]:starts[i + 1]]``; ``sorted_hashes`` the hashes of the rows' keys,
    sorted, with their rows ``by_hash``; ``alive`` False for rows a newer file supersedes
    (None: all alive); ``instants`` for each column of instants, its values as integers
    (nulls lowest), sorted, and their rows."""

    table: pa.Table
    ids: np.ndarray
    starts: np.ndarray
    seq: int
    sorted_hashes: np.ndarray
    by_hash: np.ndarray
    alive: np.ndarray | None = None
    instants: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def customers_between(self, column: str, lows: list[int], highs: list[int]
                          ) -> np.ndarray:
        """The customers of the rows whose ``column`` lies in one of the ranges (both
        ends included; values as ``_ticks`` gives them), repeated as often as they occur."""
        return self.values_between(column, lows, highs)[0]

    def values_between(self, column: str, lows: list[int], highs: list[int]
                       ) -> tuple[np.ndarray, np.ndarray]:
        """The customers of the rows whose ``column`` lies in one of the ranges, with each
        row's value: (customers, values as ticks)."""
        values, rows = self.instants[column]
        picked, found = [], []
        for low, high in zip(lows, highs, strict=True):
            a, b = np.searchsorted(values, low, "left"), np.searchsorted(values, high, "right")
            if b > a:
                picked.append(rows[a:b])
                found.append(values[a:b])
        if not picked:
            return self.ids[:0], values[:0]
        at = np.searchsorted(self.starts, np.concatenate(picked), "right") - 1
        return self.ids[at], np.concatenate(found)

    def rows_with(self, hashes: np.ndarray) -> np.ndarray:
        """Positions of this part's rows whose key hash is among ``hashes``."""
        if len(self.sorted_hashes) == 0 or len(hashes) == 0:
            return np.zeros(0, np.int64)
        lo = np.searchsorted(self.sorted_hashes, hashes, "left")
        hi = np.searchsorted(self.sorted_hashes, hashes, "right")
        hit = hi > lo
        if not hit.any():
            return np.zeros(0, np.int64)
        return self.by_hash[_ranges(lo[hit], hi[hit])].astype(np.int64)

    def supersede(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        if self.alive is None:
            self.alive = np.ones(self.table.num_rows, dtype=bool)
        self.alive[rows] = False


def _ranges(lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
    """The positions ``lows[i] … highs[i] - 1`` of every range, one after the other."""
    counts = highs - lows
    return np.repeat(lows - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())


def _part(table: pa.Table, seq: int) -> _Part:
    hashes = table[HASH].to_numpy(zero_copy_only=False).astype(np.uint64)
    table = table.drop_columns([HASH]).combine_chunks()
    order = np.argsort(hashes, kind="stable").astype(np.int32)
    ids_all = table[CUSTOMER].to_numpy(zero_copy_only=False).astype(str)
    instants = {}
    for column in table.schema:
        if _instant(column.type):
            values = pc.fill_null(table[column.name].cast(pa.int64()), NO_INSTANT
                                  ).to_numpy(zero_copy_only=False)
            by_value = np.argsort(values, kind="stable")
            instants[column.name] = values[by_value], by_value.astype(np.int32)
    if len(ids_all) == 0:
        return _Part(table, ids_all, np.zeros(1, np.int64), seq, hashes, order,
                     instants=instants)
    change = np.flatnonzero(ids_all[1:] != ids_all[:-1]) + 1
    starts = np.concatenate([[0], change, [len(ids_all)]]).astype(np.int64)
    return _Part(table, ids_all[starts[:-1]], starts, seq, hashes[order], order,
                 instants=instants)


#: Customers moved by merges since the copy was read, at most; past it the copy starts over
#: (the map is looked up for every batch, the rows re-read take seconds).
MAX_MOVED = 20_000


def _moved(old: tuple[tuple[str, str], ...], new: tuple[tuple[str, str], ...]
           ) -> dict[str, str] | None:
    """How the ids rows were filed under with redirects ``old`` map to those of ``new``
    ({old id: new id}, only ids that change); None when ``new`` does not just add to
    ``old`` (a redirect removed, or one old id going two ways)."""
    before, after = dict(old), dict(new)
    if any(merged not in after for merged in before):
        return None
    moved: dict[str, str] = {}
    for merged, survivor in after.items():
        filed = before.get(merged, merged)
        if filed != survivor and moved.setdefault(filed, survivor) != survivor:
            return None
    return moved


#: What a null instant counts as: below every range a search asks for.
NO_INSTANT = np.iinfo(np.int64).min
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _instant(kind: pa.DataType) -> bool:
    """Instants with a zone: stored as UTC ticks, comparable with any aware datetime."""
    return pa.types.is_timestamp(kind) and kind.tz is not None


def from_ticks(ticks: int, unit: str) -> datetime:
    """``ticks`` of ``unit`` since the epoch (a timestamp's stored number) as a UTC datetime,
    to the microsecond below.

    >>> from_ticks(1_500, "ms").isoformat(), from_ticks(-1, "ns").isoformat()
    ('1970-01-01T00:00:01.500000+00:00', '1969-12-31T23:59:59.999999+00:00')
    """
    return _EPOCH + timedelta(microseconds=int(ticks) * 10**6 // _PER_SECOND[unit])


def _ticks(at: datetime, unit: str, *, up: bool) -> int:
    """``at`` in ``unit`` ticks since the epoch, rounded down (or ``up``)."""
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    per = _PER_SECOND[unit]
    if per >= 10**6:
        return micros * (per // 10**6)
    step = 10**6 // per
    return -(-micros // step) if up else micros // step


class CustomerRows:
    def __init__(self, table: str) -> None:
        self.table = table
        self._lock = threading.Lock()
        self._parts: dict[str, _Part] = {}
        self._columns: tuple[str, ...] = ()
        self._redirects: tuple[tuple[str, str], ...] = ()
        #: Ids rows are filed under → the customer they belong to now (merged since they
        #: were read), and the other way round.
        self._moved: dict[str, str] = {}
        self._filed: dict[str, list[str]] = {}
        self._schema = pa.schema([])
        #: Parts read ahead by ``prefetch`` (another thread), by path, with the columns and
        #: redirects they were read with; only ``refresh`` installs them.
        self._prefetched: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...],
                                          _Part]] = {}

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns kept (none before the first ``refresh``)."""
        return self._columns

    @property
    def rows(self) -> int:
        return sum(p.table.num_rows for p in self._parts.values())

    def refresh(self, engine: Any, scan: TableScan, columns: tuple[str, ...]) -> bool:
        """Follow ``scan``'s files, keeping at least ``columns``; False when the copy cannot
        stand for the scan (the table has no customer column)."""
        if CUSTOMER not in scan.schema.names:
            return False
        with self._lock:
            missing = [c for c in columns if c not in self._columns]
            if missing or (scan.redirects != self._redirects
                           and not self._follow_merges(scan.redirects)):
                self._parts = {}
                self._moved, self._filed = {}, {}
                self._columns = tuple(n for n in scan.schema.names
                                      if n in self._columns or n in columns)
                self._redirects = scan.redirects
            self._schema = scan.schema
            listed = {f.path for f in scan.files}
            gone = [p for p in self._parts if p not in listed]
            for path in gone:
                del self._parts[path]
            if gone and scan.dedupe:  # what the removed files superseded: mark afresh
                for part in self._parts.values():
                    part.alive = None
                self._supersede(list(self._parts.values()))
            new = [f for f in scan.files if f.path not in self._parts]
            if new:
                added = {}
                for file in new:
                    ahead = self._prefetched.pop(file.path, None)
                    if ahead is not None and ahead[:2] == (self._columns, self._redirects):
                        added[file.path] = ahead[2]
                rest = [f for f in new if f.path not in added]
                if rest:
                    added.update(self._read(engine, scan, rest, self._columns))
                self._parts.update(added)
                if scan.dedupe:
                    self._supersede(list(added.values()))
            return True

    def _follow_merges(self, redirects: tuple[tuple[str, str], ...]) -> bool:
        """Take in redirects that only add merges (see the module); False when the copy
        must start over."""
        moved = _moved(self._redirects, redirects)
        if moved is None or len(self._moved) + len(moved) > MAX_MOVED:
            return False
        # ids filed before an earlier merge follow their customer into this one
        self._moved = {filed: moved.get(now, now) for filed, now in self._moved.items()}
        for filed, now in moved.items():
            self._moved.setdefault(filed, now)
        self._filed = {}
        for filed, now in self._moved.items():
            self._filed.setdefault(now, []).append(filed)
        self._redirects = redirects
        return True

    def prefetch(self, engine: Any, scan: TableScan, names: dict[str, str] | None = None
                 ) -> None:
        """Read the files of ``scan`` not kept yet (a merged file, up to 200k rows) ahead,
        on the caller's thread, for the next ``refresh`` to install: the thread that reads
        from the copy then does not wait for the reading. Nothing changes what the copy
        hands out until ``refresh`` (whose caller's scan decides which files count).
        ``names``: the path a file will be listed under, when it is read before it is
        published (a merge about to commit)."""
        names = names or {}
        with self._lock:
            columns, redirects = self._columns, self._redirects
            new = [f for f in scan.files if names.get(f.path, f.path) not in self._parts
                   and names.get(f.path, f.path) not in self._prefetched]
        if not columns or redirects != scan.redirects or not new:
            return
        parts = self._read(engine, scan, new, columns)
        with self._lock:
            for path, part in parts.items():
                self._prefetched[names.get(path, path)] = (columns, redirects, part)
            while len(self._prefetched) > 8:  # never installed (their files went away)
                self._prefetched.pop(next(iter(self._prefetched)))

    def _read(self, engine: Any, scan: TableScan, files: list[Any],
              columns: tuple[str, ...]) -> dict[str, _Part]:
        wanted = ", ".join('"' + c + '"' for c in columns)
        keys = ", ".join('"' + k + '"' for k in scan.key)
        # the key columns a query of the table does not show (``_key``) are in the files
        schema = pa.schema(list(scan.schema) + [pa.field(k, pa.string()) for k in scan.key
                                                if k not in scan.schema.names])
        kept = pa.schema([scan.schema.field(c) for c in columns]
                         + [pa.field(HASH, pa.uint64())])
        parts = {}
        with engine.session() as session:
            for file in files:
                one = TableScan(scan.table, (file,), scan.key, False, schema, scan.redirects,
                                scan.refs)
                session.register_scan("_file", one)
                rows = session.query(
                    f"SELECT {wanted}, hash({keys}) AS {HASH} FROM _file "
                    f"WHERE {CUSTOMER} IS NOT NULL ORDER BY {CUSTOMER}")
                parts[file.path] = _part(rows.cast(kept), file.seq)
        return parts

    def _supersede(self, added: list[_Part]) -> None:
        """Mark, for each part in ``added``, the rows of older parts with one of its keys,
        and its own rows whose key a newer part holds (the newest version wins)."""
        for part in added:
            for other in self._parts.values():
                if other is part:
                    continue
                if other.seq < part.seq:
                    other.supersede(other.rows_with(part.sorted_hashes))
                elif other.seq > part.seq:
                    part.supersede(part.rows_with(other.sorted_hashes))

    def customers_between(self, column: str, ranges: list[tuple[datetime, datetime]]
                          ) -> set[str] | None:
        """The customers with a row whose ``column`` lies in one of ``ranges`` (pairs of
        aware instants, both ends included), through the same files and redirects as the
        last ``refresh``; None when the copy cannot tell (the column is not kept, or is not
        an instant with a zone). Rows a newer version supersedes count too: a customer
        too many is only looked at again (the edge search asks for who *may* have
        changed)."""
        with self._lock:
            if column not in self._columns:
                return None
            kind = self._schema.field(column).type
            parts = list(self._parts.values())
        if not _instant(kind):
            return None
        lows = [_ticks(low, kind.unit, up=False) for low, _ in ranges]
        highs = [_ticks(high, kind.unit, up=True) for _, high in ranges]
        found = [part.customers_between(column, lows, highs) for part in parts
                 if len(part.ids)]
        hits = set(np.concatenate(found).tolist()) if found else set()
        moved = self._moved
        return {moved.get(c, c) for c in hits} if moved else hits

    def instants_between(self, column: str, ranges: list[tuple[datetime, datetime]]
                         ) -> list[tuple[str, datetime]] | None:
        """The (customer, value) of every row whose ``column`` lies in one of ``ranges``,
        values as aware instants; None when the copy cannot tell (as
        ``customers_between``). For scheduling: when a value will cross a time edge."""
        with self._lock:
            if column not in self._columns:
                return None
            kind = self._schema.field(column).type
            parts = list(self._parts.values())
            moved = self._moved
        if not _instant(kind):
            return None
        lows = [_ticks(low, kind.unit, up=False) for low, _ in ranges]
        highs = [_ticks(high, kind.unit, up=True) for _, high in ranges]
        found = []
        for part in parts:
            if len(part.ids):
                ids, values = part.values_between(column, lows, highs)
                found += [(moved.get(c, c), from_ticks(v, kind.unit))
                          for c, v in zip(ids.tolist(), values.tolist(), strict=True)]
        return found

    def of(self, customers: np.ndarray, columns: tuple[str, ...]) -> pa.Table:
        """The rows of ``customers`` (a sorted array of unique ids), ``columns`` only."""
        with self._lock:
            if not self._moved:
                return self._of(customers, columns)
            # a merged id has no rows of its own any more; a survivor has its merged ids'
            filed = [c for c in customers.tolist() if c not in self._moved]
            extra = [f for c in filed for f in self._filed.get(c, ())]
            # (the array's own width: a merged id may be longer than the ids asked for)
            wanted = np.unique(np.array(filed + extra, dtype=str)
                               if filed or extra else customers[:0])
            table = self._of(wanted, columns)
            if extra and CUSTOMER in columns and table.num_rows:
                at = table.schema.get_field_index(CUSTOMER)
                owners = [self._moved.get(c, c) for c in table[CUSTOMER].to_pylist()]
                table = table.set_column(at, table.schema.field(at),
                                         pa.array(owners, table.schema.field(at).type))
            return table

    def _of(self, customers: np.ndarray, columns: tuple[str, ...]) -> pa.Table:
        """The rows filed under ``customers`` (sorted, unique), with the lock held."""
        pieces = []
        for part in self._parts.values():
            if len(part.ids) == 0:
                continue
            at = np.searchsorted(part.ids, customers)
            inside = at < len(part.ids)
            at = at[inside][part.ids[at[inside]] == customers[inside]]
            if len(at) == 0:
                continue
            index = _ranges(part.starts[at], part.starts[at + 1])
            if part.alive is not None:
                index = index[part.alive[index]]
            pieces.append(part.table.select(list(columns)).take(pa.array(index)))
        if not pieces:
            return pa.schema([self._schema.field(c) for c in columns]).empty_table()
        return pa.concat_tables(pieces)

__all__ = ["CustomerRows"]
