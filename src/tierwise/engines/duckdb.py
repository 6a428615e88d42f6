"""DuckDB as the compute engine: an in-memory database per process, a connection (cursor)
per job, reading Parquet and Arrow.

DuckDB is an engine here, never a store: nothing is kept in a DuckDB file, so any number of
processes can compute over one workspace at once. Within a process the jobs share one
in-memory database (opening one costs ~20 ms, a cursor on it ~0.5 ms, which matters to the
real-time worker's many small jobs); everything a job defines — views over the Parquet
files, registered Arrow tables, temporary tables, the time zone — is local to its cursor
and gone when it closes.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from tierwise.engines.base import Engine, TableScan, sql_literal
from tierwise.errors import TierwiseError


class DuckDBEngine(Engine):
    name = "duckdb"
    in_process = True
    subqueries_in_columns = True
    query_errors: tuple[type[BaseException], ...] = (
        duckdb.BinderException, duckdb.ConversionException, duckdb.OutOfRangeException,
        duckdb.InvalidInputException, duckdb.TypeMismatchException)

    def __init__(self, threads: int | None = None, memory_limit: str | None = None) -> None:
        self.threads = threads
        self.memory_limit = memory_limit
        self._database: tuple[int, duckdb.DuckDBPyConnection] | None = None
        self._lock = threading.Lock()

    def for_staging(self) -> DuckDBEngine:
        return self

    def for_background(self) -> DuckDBEngine:
        """A database of its own with one thread: all of a merge's work stays on the
        yielding thread that runs it (the shared database would run it on its threads)."""
        return DuckDBEngine(threads=1, memory_limit=self.memory_limit)

    def limit_threads(self, threads: int) -> None:
        with self._lock:
            self.threads = threads
            if self._database is not None and self._database[0] == os.getpid():
                self._database[1].execute(f"SET threads = {int(threads)}")

    def _shared(self) -> duckdb.DuckDBPyConnection:
        """This process's database (a forked child opens its own)."""
        with self._lock:
            if self._database is None or self._database[0] != os.getpid():
                database = duckdb.connect(":memory:")
                # every session works in UTC: the database's default, which each cursor
                # starts with, instead of a statement in every session (a session's own
                # SET stays its own)
                database.execute("SET GLOBAL TimeZone = 'UTC'")
                if self.threads:
                    database.execute(f"SET threads = {int(self.threads)}")
                if self.memory_limit:
                    database.execute(f"SET memory_limit = {sql_literal(self.memory_limit)}")
                self._database = (os.getpid(), database)
            return self._database[1]

    @contextmanager
    def session(self, scans: dict[str, TableScan] | None = None,
                arrow: dict[str, pa.Table] | None = None) -> Iterator[DuckDBSession]:
        conn = self._shared().cursor()
        try:
            session = DuckDBSession(conn)
            for name, scan in (scans or {}).items():
                session.register_scan(name, scan)
            for name, table in (arrow or {}).items():
                conn.register(name, table)
            yield session
        finally:
            conn.close()


class DuckDBSession:
    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn

    def register_scan(self, name: str, scan: TableScan) -> None:
        sql = scan_sql(scan)
        if scan.redirects and scan.refs:
            redirects = f"_redirects_{name}"
            self.conn.register(redirects, scan.redirect_table())
            sql = redirected_sql(scan, sql, redirects)
        self.execute(f"CREATE OR REPLACE TEMP VIEW {ident(name)} AS {sql}")

    def register_arrow(self, name: str, table: pa.Table) -> None:
        self.conn.register(name, table)

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pa.Table:
        relation = self.conn.sql(sql, params=params or None)
        return relation.to_arrow_table() if relation is not None else pa.table({})

    def scalar(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> Any:
        relation = self.conn.sql(sql, params=params or None)
        rows = relation.fetchall() if relation is not None else []
        return rows[0][0] if rows else None

    def execute(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> None:
        relation = self.conn.sql(sql, params=params or None)
        if relation is not None:
            relation.fetchall()

    def materialize(self, name: str, sql: str, params: dict[str, Any] | None = None) -> None:
        """Run ``sql`` once and keep its result as table ``name`` for later queries."""
        self.conn.execute(f"CREATE OR REPLACE TEMP TABLE {ident(name)} AS {sql}",
                          params or None)

    def copy_to_parquet(self, sql: str, path: str) -> None:
        self.execute(f"COPY ({sql}) TO {sql_literal(path)} (FORMAT parquet, COMPRESSION zstd)")


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@functools.lru_cache(maxsize=8192)
def _file_columns(path: str) -> frozenset[str]:
    """The columns of a fact file (files are written once and never changed)."""
    return frozenset(pq.read_schema(path).names)


def scan_sql(scan: TableScan) -> str:
    """A SELECT over the scan's Parquet files giving the current row for every key."""
    if not scan.files:
        cols = ", ".join(
            f"CAST(NULL AS {_duck_type(f.type)}) AS {ident(f.name)}" for f in scan.schema
        )
        return f"SELECT {cols} WHERE false"
    files = "[" + ", ".join(sql_literal(f.path) for f in scan.files) + "]"
    present = set().union(*(_file_columns(f.path) for f in scan.files))
    # a column added to the schema after every file was written reads as NULL
    wanted = ", ".join(ident(f.name) if f.name in present else
                       f"CAST(NULL AS {_duck_type(f.type)}) AS {ident(f.name)}"
                       for f in scan.schema)
    if not scan.dedupe:
        return f"SELECT {wanted} FROM read_parquet({files}, union_by_name = true)"
    seqs = ", ".join(f"({sql_literal(f.path)}, {int(f.seq)})" for f in scan.files)
    key = ", ".join(ident(k) for k in scan.key)
    return (
        f"SELECT {wanted} FROM (SELECT t.*, row_number() OVER (PARTITION BY {key} "
        f"ORDER BY m.seq DESC, t._row DESC) AS _rank "
        f"FROM read_parquet({files}, union_by_name = true, filename = true) AS t "
        f"JOIN (VALUES {seqs}) AS m(path, seq) ON t.filename = m.path) WHERE _rank = 1"
    )


def redirected_sql(scan: TableScan, inner: str, redirects: str) -> str:
    """``inner`` with each customer reference read through the merge redirects."""
    joins, columns = [], []
    for i, ref in enumerate(scan.refs):
        joins.append(f"LEFT JOIN {ident(redirects)} AS r{i} ON f.{ident(ref)} = "
                     f"r{i}.customer_id")
    for f in scan.schema:
        if f.name in scan.refs:
            i = scan.refs.index(f.name)
            columns.append(f"coalesce(r{i}.survivor_id, f.{ident(f.name)}) AS {ident(f.name)}")
        else:
            columns.append(f"f.{ident(f.name)}")
    return f"SELECT {', '.join(columns)} FROM ({inner}) AS f {' '.join(joins)}"


_TYPES = {
    pa.string(): "VARCHAR",
    pa.float64(): "DOUBLE",
    pa.int64(): "BIGINT",
    pa.date32(): "DATE",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
}


def _duck_type(dtype: pa.DataType) -> str:
    return _TYPES[dtype]


class ReadOnlyQuery(TierwiseError):
    """SQL a person wrote that the sandbox refuses or that fails: one line saying why."""


@contextmanager
def sandbox(scans: dict[str, TableScan], arrow: dict[str, pa.Table] | None = None,
            memory_limit: str = "2GB") -> Iterator[Sandbox]:
    """A session for SQL written by people (``tierwise sql``, ``Workspace.sql``).

    It is a database of its own, not the shared one: after the views over the fact files
    and the Arrow tables are registered, it may read exactly those files and nothing else
    of the file system (no other files, no writing, no extensions, no attaching), and its
    configuration is locked so that a query cannot undo that. ``Sandbox.select`` runs one
    SELECT and refuses every other kind of statement.
    """
    database = duckdb.connect(":memory:")
    try:
        files = sorted({f.path for scan in scans.values() for f in scan.files})
        database.execute("SET TimeZone = 'UTC'")
        database.execute(f"SET memory_limit = {sql_literal(memory_limit)}")
        database.execute("SET allowed_paths = [" + ", ".join(sql_literal(f) for f in files)
                         + "]")
        database.execute("SET enable_external_access = false")
        database.execute("SET autoinstall_known_extensions = false")
        database.execute("SET autoload_known_extensions = false")
        session = DuckDBSession(database)
        for name, scan in scans.items():
            session.register_scan(name, scan)
        for name, table in (arrow or {}).items():
            database.register(name, table)
        database.execute("SET lock_configuration = true")
        yield Sandbox(database)
    finally:
        database.close()


class Sandbox:
    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn

    def select(self, sql: str, params: list[Any] | dict[str, Any] | None = None,
               limit: int | None = None) -> pa.Table:
        """The result of one SELECT (WITH … SELECT, UNION, VALUES are SELECTs too), its first
        ``limit`` rows when given (the rest is never computed)."""
        try:
            statements = self.conn.extract_statements(sql)
        except duckdb.Error as exc:
            raise ReadOnlyQuery(_first_line(exc)) from None
        if len(statements) != 1:
            raise ReadOnlyQuery(f"give one SELECT statement, not {len(statements)}")
        kind = statements[0].type
        if kind != duckdb.StatementType.SELECT:
            raise ReadOnlyQuery(f"only SELECT is allowed here, not {kind.name}: this SQL "
                                "reads the workspace's tables and changes nothing")
        try:
            relation = self.conn.sql(sql, params=params or None)
            if relation is None:
                return pa.table({})
            return (relation.limit(limit) if limit is not None else relation).to_arrow_table()
        except duckdb.Error as exc:
            raise ReadOnlyQuery(_first_line(exc)) from None


def _first_line(exc: Exception) -> str:
    """DuckDB's message without the echo of the query and the caret lines."""
    text = str(exc).strip()
    lines = []
    for line in text.splitlines():
        if line.startswith("LINE "):
            break
        if line.strip():
            lines.append(line.strip())
    first = " ".join(lines) if lines else type(exc).__name__
    if "file system operations are disabled" in text or "Permission Error" in text:
        return (f"{first} (queries read the registered tables only: orders, events, "
                "tickets, feedback, referrals, opportunities, opportunity_stages, customers)")
    return first


def separate_database(memory_limit: str = "1500MB") -> duckdb.DuckDBPyConnection:
    """An in-memory database of its own for a library that runs its own SQL on it (the
    duplicate matcher's splink), with a memory limit so that its big joins spill to a
    temporary folder instead of growing the process past what a laptop has."""
    database = duckdb.connect(":memory:")
    database.execute(f"SET memory_limit = {sql_literal(memory_limit)}")
    database.execute("SET enable_progress_bar = false")  # not on the caller's terminal
    return database
