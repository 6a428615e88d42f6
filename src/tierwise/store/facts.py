"""The fact store: Parquet files in the workspace plus their manifest in the control store.

A file becomes part of a table in exactly one control-store transaction: it is written under
``facts/_staging``, renamed into ``facts/<table>/`` and then registered. A crash before the
registration commits leaves an unregistered file that no reader lists and that the next
``collect_garbage`` deletes.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from tierwise.definitions.schemas import ROLLUPS, TABLES, TableSchema
from tierwise.engines.base import Engine, ScanFile, TableScan
from tierwise.store.backup import backup_running
from tierwise.store.control import ControlStore, as_utc, utcnow
from tierwise.store.customers import contact_links
from tierwise.store.customers import redirects as merge_redirects
from tierwise.store.customers import state as customer_state
from tierwise.store.tables import fact_files

if TYPE_CHECKING:
    from tierwise.store.customer_rows import CustomerRows
    from tierwise.store.key_index import KeyIndex

#: Files removed by compaction stay on disk this long for readers that listed them earlier.
REMOVED_GRACE = timedelta(minutes=30)
#: Staging files older than this belong to a crashed process.
STALE_STAGING = timedelta(hours=6)
COMPRESSION = "zstd"
#: Merges a FactStore remembers for its key indexes (each refresh looks at the newest; one
#: that was forgotten is read like any other file).
MERGES_REMEMBERED = 256


def key_columns(schema: TableSchema) -> tuple[str, ...]:
    """Columns that identify a row in the fact files (``_key`` for tables without a key)."""
    return schema.key if schema.key else ("_key",)


def file_schema(schema: TableSchema) -> pa.Schema:
    fields = schema.arrow_schema()
    if not schema.key:
        fields = fields.append(pa.field("_key", pa.string()))
    return fields


def visible_schema(schema: TableSchema) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.arrow_type) for c in schema.columns])


@dataclass
class StagedFile:
    table: str
    path: Path
    rows: int = 0
    #: Every row has a key and each key is greater than the one before (an export sorted
    #: by its key): no key repeats, which the writer saw without a hash of every key.
    keys_ascending: bool = False


class StagingWriter:
    """Writes validated batches of one table to a staging Parquet file."""

    def __init__(self, staging_dir: Path, schema: TableSchema) -> None:
        staging_dir.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.arrow_schema = file_schema(schema)
        self.staged = StagedFile(schema.name, staging_dir / f"{uuid.uuid4().hex}.parquet")
        self._writer: pq.ParquetWriter | None = None
        #: the key column whose order the writer follows (tables keyed by one column)
        self._key = schema.key[0] if schema.key and len(schema.key) == 1 else None
        self.staged.keys_ascending = self._key is not None
        self._last_key: Any = None

    def write(self, table: pa.Table) -> None:
        table = table.select(self.arrow_schema.names).cast(self.arrow_schema)
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                self.staged.path, self.arrow_schema, compression=COMPRESSION,
                use_dictionary=dictionary_columns(self.schema, table))
        if self._key is not None and self.staged.keys_ascending and table.num_rows:
            self._follow_keys(table.column(self._key).combine_chunks())
        self._writer.write_table(table)
        self.staged.rows += table.num_rows

    def _follow_keys(self, keys: pa.Array) -> None:
        """Whether the keys still ascend strictly, within this batch and from the last one."""
        ascending = (keys.null_count == 0
                     and (self._last_key is None or self._last_key < keys[0].as_py())
                     and pc.all(pc.less(keys.slice(0, len(keys) - 1), keys.slice(1))
                                ).as_py() is not False)
        self.staged.keys_ascending = ascending
        self._last_key = keys[-1].as_py()

    def close(self) -> StagedFile:
        if self._writer is None:  # nothing written: still leave a valid, empty file
            pq.write_table(self.arrow_schema.empty_table(), self.staged.path)
        else:
            self._writer.close()
        return self.staged

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.staged.path.unlink(missing_ok=True)


#: A first batch at least this long tells which columns repeat their values.
_SAMPLE_ROWS = 10_000


def dictionary_columns(schema: TableSchema, first: pa.Table) -> list[str]:
    """The columns worth a Parquet dictionary: not keys and row numbers (unique), and not
    columns whose first batch is mostly distinct values (timestamps, ids of many
    customers), where the dictionary is built only to be dropped when it overflows —
    a third of the writer's time on 10M orders, for a larger file."""
    return repeating_columns(first, {"_row", "_key", *(schema.key or ())})


def repeating_columns(first: pa.Table, unique: Collection[str]) -> list[str]:
    """The columns of ``first`` (a table or its first batch) that are not in ``unique``
    and repeat their values: at most half of them distinct (``dictionary_columns``; a
    snapshot's scores and CLV values are mostly distinct, its tiers and stages are not)."""
    names = [n for n in first.column_names if n not in unique]
    if first.num_rows < _SAMPLE_ROWS:
        return names
    sample = first.slice(0, _SAMPLE_ROWS * 10)
    return [n for n in names
            if pc.count_distinct(sample[n]).as_py() * 2 <= sample.num_rows]


def rolled_up(conn: sa.Connection, redirects: tuple[tuple[str, str], ...] | None = None
              ) -> tuple[tuple[str, str], ...]:
    """The merge redirects followed by each contact's link to its account: every id whose
    rows count for an account (a contact, an id merged into a contact or into the account)
    with that account, every other merged id with its survivor.

    Kept for as long as the customers and the redirects stay as they are (their count and
    latest change, ``customers.state``, and the redirects): reading the links of 437,000
    contacts takes 0.6 s, and one ``tierwise compute`` asks four times."""
    pairs_in = merge_redirects(conn) if redirects is None else redirects
    key = (conn.engine.url.render_as_string(hide_password=True), customer_state(conn),
           pairs_in)
    with _rolled_up_lock:
        if _rolled_up_kept is not None and _rolled_up_kept[0] == key:
            return _rolled_up_kept[1]
    links = contact_links(conn)
    if not pairs_in:  # the links as they are: one per contact, ordered by contact
        found = tuple(links)
    else:
        merged = dict(pairs_in)
        accounts = {contact: merged.get(account, account) for contact, account in links}
        pairs = {old: accounts.get(new, new) for old, new in merged.items()}
        pairs.update(accounts)
        found = tuple(sorted(pairs.items()))
    _keep_rolled_up(key, found)
    return found


_rolled_up_lock = threading.Lock()
_rolled_up_kept: tuple[tuple[object, ...], tuple[tuple[str, str], ...]] | None = None


def _keep_rolled_up(key: tuple[object, ...], pairs: tuple[tuple[str, str], ...]) -> None:
    global _rolled_up_kept
    with _rolled_up_lock:
        _rolled_up_kept = (key, pairs)


class FactStore:
    """Parquet facts of one workspace. Readers take a ``TableScan`` snapshot of the manifest."""

    def __init__(self, root: Path, control: ControlStore) -> None:
        self.root = root
        self.dir = root / "facts"
        self.staging_dir = self.dir / "_staging"
        self.control = control
        self._key_indexes: dict[str, KeyIndex] = {}
        self._indexes_lock = threading.Lock()
        #: path of a file ``compact`` wrote → the paths of the files it replaced, for the
        #: key indexes (a merged file holds no key its parts did not); the newest
        #: ``MERGES_REMEMBERED``
        self._merged: dict[str, tuple[str, ...]] = {}
        #: Keep the rows of the tables segment rules read in memory, by customer, for
        #: evaluations of a few customers (``store.customer_rows``): set by the real-time
        #: worker, whose every micro-batch is such an evaluation.
        self.keep_rows = False
        self._customer_rows: dict[str, CustomerRows] = {}

    def key_index(self, table: str) -> KeyIndex:
        """The in-memory index of ``table``'s stored keys (built on first use and kept
        for this FactStore's life: the real-time worker's imports use it)."""
        from tierwise.store.key_index import KeyIndex

        with self._indexes_lock:
            return self._key_indexes.setdefault(table, KeyIndex(table, self._merged))

    def customer_rows(self, table: str) -> CustomerRows:
        """The in-memory copy of ``table``'s rows by customer (see ``keep_rows``)."""
        from tierwise.store.customer_rows import CustomerRows

        with self._indexes_lock:
            return self._customer_rows.setdefault(table, CustomerRows(table))

    def follow(self, engine: Engine, table: str, *, ahead: bool = False) -> None:
        """Bring the in-memory copies of ``table`` that exist (its key index, its rows by
        customer) up to the manifest now, so that the next reader does not pay for it; with
        ``ahead``, only read the new files for the next refresh to take (what another
        thread may do while the reader's own scans are older or newer than this one)."""
        scan = self.scan(table)
        with self._indexes_lock:
            index = self._key_indexes.get(table)
            rows = self._customer_rows.get(table)
        if index is not None:
            with engine.session() as session:
                if ahead:
                    index.prefetch(session, scan)
                else:
                    index.refresh(session, scan)
        if rows is not None and rows.columns:
            if ahead:
                rows.prefetch(engine, scan)
            else:
                rows.refresh(engine, scan, rows.columns)

    def staging_path(self) -> Path:
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        return self.staging_dir / f"{uuid.uuid4().hex}.parquet"

    # -- reading -------------------------------------------------------------------------
    def scan(self, table: str, conn: sa.Connection | None = None, *,
             accounts: bool = False) -> TableScan:
        """The live files of ``table``; with ``accounts``, contacts' rows read as their
        accounts' (what account-level measures count)."""
        if conn is None:
            with self.control.read() as c:
                return self.scan(table, c, accounts=accounts)
        return self._scan(conn, table, rolled_up(conn) if accounts else None)

    def _scan(self, conn: sa.Connection, table: str,
              redirects: tuple[tuple[str, str], ...] | None) -> TableScan:
        if table in ROLLUPS:  # the table's rows, contacts' counted for their accounts
            return self._scan(conn, ROLLUPS[table], rolled_up(conn, redirects))
        schema = TABLES[table]
        rows = conn.execute(
            sa.select(fact_files.c.path, fact_files.c.seq, fact_files.c.overlaps)
            .where(fact_files.c.table_name == table, fact_files.c.removed_at.is_(None))
            .order_by(fact_files.c.seq)).all()
        files = tuple(ScanFile(self._absolute(r.path), r.seq) for r in rows)
        if not schema.customer_refs:
            redirects = ()
        elif redirects is None:
            redirects = merge_redirects(conn)
        return TableScan(table, files, key_columns(schema), any(r.overlaps for r in rows),
                         visible_schema(schema), redirects, schema.customer_refs)

    def _absolute(self, relative: str) -> str:
        """The path a ``ScanFile`` carries for a manifest path (readers and the in-memory
        copies compare these strings). ``os.path.join``: ``Path``'s ``/`` cost more than
        the manifest query for a table of a few dozen files."""
        return os.path.join(str(self.root), relative)

    def scans(self, tables: Iterable[str] | None = None, *,
              accounts: bool = False) -> dict[str, TableScan]:
        """Scans of several fact tables (all of them by default), read in one go; with
        ``accounts``, contacts' rows read as their accounts'."""
        with self.control.read() as conn:
            return self.scans_in(conn, tables, accounts=accounts)

    def scans_in(self, conn: sa.Connection, tables: Iterable[str] | None = None, *,
                 accounts: bool = False) -> dict[str, TableScan]:
        """``scans`` as the manifest is seen by ``conn`` (a backup's instant, for one)."""
        names = [t.name for t in TABLES.values() if t.home == "facts"] if tables is None \
            else list(tables)
        redirects = merge_redirects(conn)
        rollup = rolled_up(conn, redirects) if accounts or set(names) & set(ROLLUPS) else ()
        if accounts:
            redirects = rollup
        return {name: self._scan(conn, ROLLUPS[name], rollup) if name in ROLLUPS
                else self._scan(conn, name, redirects) for name in names}

    def live_files(self, conn: sa.Connection, table: str) -> tuple[int, int]:
        """How many live files ``table`` has and their bytes."""
        found = conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(fact_files.c.bytes), 0))
            .where(fact_files.c.table_name == table, fact_files.c.removed_at.is_(None))).one()
        return int(found[0]), int(found[1])

    def max_file_id(self, conn: sa.Connection, table: str) -> int:
        value = conn.execute(sa.select(sa.func.max(fact_files.c.file_id))
                             .where(fact_files.c.table_name == table)).scalar()
        return int(value or 0)

    def imported_since(self, conn: sa.Connection, table: str, file_id: int) -> bool:
        """Whether an import published a file of ``table`` after ``file_id``: new rows, as
        opposed to a merge (compaction) or a rewrite (retention, erasure) of stored ones,
        which keep an older ``seq`` and bring no key that was not stored before."""
        f = fact_files.c
        return conn.execute(sa.select(f.file_id).where(
            f.table_name == table, f.file_id > file_id, f.seq == f.file_id).limit(1)
        ).first() is not None

    # -- writing -------------------------------------------------------------------------
    def publish(self, conn: sa.Connection, staged: StagedFile, *, import_id: int | None,
                overlaps: bool, seq: int | None = None) -> str:
        """Move a staged file into the table and register it inside ``conn``'s transaction.

        The caller commits. If the transaction rolls back, call ``unpublish`` with the
        returned path: the file is then unregistered and removed.
        """
        relative = self._relative(staged)
        final = self.root / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.path, final)
        try:
            meta = pq.read_metadata(final)
            min_time, max_time = _time_range(final, TABLES[staged.table])
            result = conn.execute(fact_files.insert().values(
                table_name=staged.table, path=relative, rows=meta.num_rows,
                bytes=final.stat().st_size, min_time=min_time, max_time=max_time,
                overlaps=overlaps, import_id=import_id, added_at=utcnow(), seq=seq,
            ))
            file_id = result.inserted_primary_key[0]  # type: ignore[index]
            if seq is None:
                conn.execute(fact_files.update().where(fact_files.c.file_id == file_id)
                             .values(seq=file_id))
        except BaseException:
            self.unpublish(relative)
            raise
        return relative

    def _relative(self, staged: StagedFile) -> str:
        return (self.dir / staged.table / staged.path.name).relative_to(self.root).as_posix()

    def published_path(self, staged: StagedFile) -> str:
        """The path scans will list for ``staged`` once it is published."""
        return self._absolute(self._relative(staged))

    def unpublish(self, relative: str) -> None:
        (self.root / relative).unlink(missing_ok=True)

    # -- maintenance ---------------------------------------------------------------------
    def compact(self, engine: Engine, table: str, *, min_files: int = 2,
                target_rows: int = 8_000_000, small_rows: int | None = None,
                min_rows: int = 0
                ) -> tuple[int, int]:
        """Merge a table's live files into as few as possible; returns (files in, files out).

        Superseded rows are dropped. The merged file keeps the highest ``seq`` it replaced,
        so an import committed meanwhile (higher seq) still wins.

        ``small_rows``: merge only the newest run of files with at most that many rows each
        (the micro-batches of real-time intake), leaving the large files alone. Only a run
        of the *newest* files may be merged on its own: its rows then keep winning over
        every older file, as they did.
        ``min_rows``: merge that run only once its files hold this many rows together.
        """
        schema = TABLES[table]
        with self.control.read() as conn:
            scan = listed = self.scan(table, conn)
            rows = conn.execute(sa.select(fact_files.c.file_id, fact_files.c.rows,
                                          fact_files.c.seq, fact_files.c.overlaps,
                                          fact_files.c.path)
                                .where(fact_files.c.table_name == table,
                                       fact_files.c.removed_at.is_(None))
                                .order_by(fact_files.c.seq.desc())).all()
        overlaps = False
        if small_rows is not None:
            tail = []
            for r in rows:
                if r.rows > small_rows:
                    break
                tail.append(r)
            if len(tail) < min_files or sum(r.rows for r in tail) < min_rows:
                return len(tail), len(tail)
            kept = {self._absolute(r.path) for r in tail}
            scan = TableScan(scan.table, tuple(f for f in scan.files if f.path in kept),
                             scan.key, True, scan.schema)
            # each part was checked against every older file when it was imported: the
            # merged file overlaps an older one only if some part did
            overlaps = any(r.overlaps for r in tail)
            rows = tail
        if len(scan.files) < min_files:
            return len(scan.files), len(scan.files)
        replaced = [r.file_id for r in rows]
        top_seq = max(f.seq for f in scan.files)
        hidden = file_schema(schema).names
        full_scan = TableScan(scan.table, scan.files, scan.key, scan.dedupe, file_schema(schema))
        outputs: list[StagedFile] = []
        with engine.session() as session:
            session.register_scan("facts", full_scan)
            # the files' rows bound the merged count: no counting pass (it dedupes every
            # row, as the merge does again) when they fit in one file anyway
            upper = sum(int(r.rows or 0) for r in rows)
            total = upper if upper <= target_rows else int(
                session.scalar("SELECT count(*) FROM facts"))
            parts = max(1, -(-total // target_rows))
            for part in range(parts):
                path = self.staging_path()
                order = ", ".join(f'"{k}"' for k in scan.key)
                session.copy_to_parquet(
                    f"SELECT {', '.join(chr(34) + n + chr(34) for n in hidden)} FROM facts "
                    f"ORDER BY {order} LIMIT {target_rows} OFFSET {part * target_rows}",
                    str(path),
                )
                outputs.append(StagedFile(table, path, 0))
        self._read_ahead(engine, listed, outputs, top_seq)
        published: list[str] = []
        try:
            with self.control.write() as conn:
                now = utcnow()
                done = conn.execute(
                    fact_files.update()
                    .where(fact_files.c.file_id.in_(replaced), fact_files.c.removed_at.is_(None))
                    .values(removed_at=now)
                )
                if done.rowcount != len(replaced):
                    raise RuntimeError("another compaction of this table ran at the same time")
                for staged in outputs:
                    published.append(self.publish(conn, staged, import_id=None,
                                                  overlaps=overlaps, seq=top_seq))
                # before the commit, so that no reader sees a merged file without its
                # parts (a path that never commits is never looked up)
                sources = tuple(self._absolute(r.path) for r in rows)
                for relative in published:
                    self._merged[self._absolute(relative)] = sources
                while len(self._merged) > MERGES_REMEMBERED:
                    self._merged.pop(next(iter(self._merged)))
        except BaseException:
            for staged in outputs:
                staged.path.unlink(missing_ok=True)
            for relative in published:
                self.unpublish(relative)
            raise
        return len(replaced), len(outputs)

    def _read_ahead(self, engine: Engine, listed: TableScan, outputs: list[StagedFile],
                    seq: int) -> None:
        """Let the in-memory rows by customer of the table, if kept, read merged files
        before the manifest lists them: the reader's next refresh finds them ready. Read
        after the commit instead, the reader often got there first and read the 200k rows
        of the worker's tail file itself, in a micro-batch."""
        with self._indexes_lock:
            copy = self._customer_rows.get(listed.table)
        if copy is None or not outputs:
            return
        files = tuple(ScanFile(str(o.path), seq) for o in outputs)
        copy.prefetch(engine, TableScan(listed.table, files, listed.key, False, listed.schema,
                                        listed.redirects, listed.refs),
                      names={str(o.path): self.published_path(o) for o in outputs})

    def drop_rows(self, table: str, drop: pc.Expression, immediate: bool = True) -> int:
        """Rewrite every file of ``table`` holding rows that match ``drop``, without them.

        ``immediate`` (erasure, where no copy may stay behind): the replaced files, and files
        an earlier compaction replaced that still hold matching rows, are deleted at once,
        so a query running at that moment may fail and must be repeated. Otherwise
        (retention) replaced files are retired like compaction's and deleted after the grace
        period. Returns the number of rows dropped.
        """
        import pyarrow.dataset as pa_dataset  # not on import: it loads pandas (0.2 s)

        with self.control.read() as conn:
            rows = conn.execute(sa.select(fact_files).where(
                fact_files.c.table_name == table)).all()
        dropped = 0
        changes: list[tuple[Any, StagedFile | None]] = []  # (old row, replacement)
        published: list[str] = []
        try:
            for row in rows:
                path = self.root / row.path
                if not path.exists():
                    continue
                data = pa_dataset.dataset(pq.read_table(path))
                # ``drop`` must never be null (is_in, comparisons of required columns)
                if data.count_rows(filter=drop) == 0:
                    continue
                if row.removed_at is not None:  # superseded already: just delete it
                    changes.append((row, None))
                    continue
                keep = data.to_table(filter=~drop)
                dropped += data.count_rows() - keep.num_rows
                staged: StagedFile | None = None
                if keep.num_rows:
                    target = self.staging_path()
                    pq.write_table(keep, target, compression=COMPRESSION)
                    staged = StagedFile(table, target, keep.num_rows)
                changes.append((row, staged))
            if not changes:
                return 0
            with self.control.write() as conn:
                self.control.lock(conn, f"facts:{table}")
                for row, staged in changes:
                    if immediate or row.removed_at is not None:
                        gone = conn.execute(fact_files.delete().where(
                            fact_files.c.file_id == row.file_id))
                    else:
                        gone = conn.execute(fact_files.update().where(
                            fact_files.c.file_id == row.file_id,
                            fact_files.c.removed_at.is_(None)).values(removed_at=utcnow()))
                    if gone.rowcount != 1:  # another rewrite or compaction got there first
                        raise RuntimeError(f"{row.path} changed while its rows were being "
                                           "dropped; run it again")
                    if staged is not None:
                        published.append(self.publish(conn, staged, import_id=row.import_id,
                                                      overlaps=row.overlaps, seq=row.seq))
        except BaseException:
            for _, staged in changes:
                if staged is not None:
                    staged.path.unlink(missing_ok=True)
            for relative in published:
                self.unpublish(relative)
            raise
        for row, _ in changes:
            if immediate or row.removed_at is not None:
                (self.root / row.path).unlink(missing_ok=True)
        return dropped

    def collect_garbage(self, *, now_grace: timedelta = REMOVED_GRACE,
                        strays: bool = True) -> int:
        """Delete files compaction replaced long enough ago, and (``strays``) abandoned
        staging files. The manifest rows go in a short transaction and the files after
        it: a write transaction held while unlinking them (82 ms for 51 files on a disk
        mounted with ``discard``) held up every writer meanwhile, the real-time intake and
        rounds among them. A file whose row is gone but which is still on disk (a crash
        in between) is a stray the next sweep deletes."""
        cutoff = utcnow() - now_grace
        with self.control.read() as conn:
            if backup_running(conn):  # it may still copy a file live at its instant
                return 0
            rows = conn.execute(sa.select(fact_files.c.file_id, fact_files.c.path,
                                          fact_files.c.removed_at)
                                .where(fact_files.c.removed_at.is_not(None))).all()
        gone = [r for r in rows if (as_utc(r.removed_at) or cutoff) <= cutoff]
        if gone:
            with self.control.write() as conn:
                conn.execute(fact_files.delete().where(
                    fact_files.c.file_id.in_([r.file_id for r in gone])))
        for r in gone:
            (self.root / r.path).unlink(missing_ok=True)
        removed = len(gone)
        if not strays:
            return removed
        with self.control.read() as conn:
            registered = {r.path for r in conn.execute(sa.select(fact_files.c.path))}
        stale = time.time() - STALE_STAGING.total_seconds()
        for table_dir in self.dir.glob("*"):
            if not table_dir.is_dir():
                continue
            for path in table_dir.glob("*.parquet"):
                relative = path.relative_to(self.root).as_posix()
                if relative not in registered and path.stat().st_mtime < stale:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed


def _time_range(path: Path, schema: TableSchema) -> tuple[object, object]:
    """Min and max of the table's time column from the Parquet statistics."""
    if not schema.time_column:
        return None, None
    from tierwise.store.customer_rows import from_ticks

    meta = pq.read_metadata(path)
    arrow_schema = meta.schema.to_arrow_schema()
    index = arrow_schema.get_field_index(schema.time_column)
    type_ = arrow_schema.field(index).type
    lows, highs = [], []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(index).statistics
        if stats is not None and stats.has_min_max:
            if pa.types.is_timestamp(type_):  # the raw numbers: pyarrow's own conversion
                # of a timestamp statistic imports pandas (0.3 s of an import that needs it
                # nowhere else)
                lows.append(from_ticks(stats.min_raw, type_.unit))
                highs.append(from_ticks(stats.max_raw, type_.unit))
            else:
                lows.append(stats.min)
                highs.append(stats.max)
    return (min(lows), max(highs)) if lows else (None, None)
