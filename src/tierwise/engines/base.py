"""What every compute engine offers, and the description of a fact table it reads."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import pyarrow as pa


@dataclass(frozen=True)
class ScanFile:
    path: str  # absolute
    seq: int


@dataclass(frozen=True)
class TableScan:
    """The live Parquet files of one fact table, as the manifest listed them at one instant.

    ``dedupe`` is true when some key appears in more than one file; the engine then keeps,
    for each key, the row from the file with the highest ``seq``.
    """

    table: str
    files: tuple[ScanFile, ...]
    key: tuple[str, ...]
    dedupe: bool
    #: Columns visible to queries (the file's bookkeeping columns are hidden).
    schema: pa.Schema
    #: Merged customer ids and their survivors: the engine shows ``refs`` columns through
    #: this map, so facts of merged records read as the survivor's (files keep the old ids).
    redirects: tuple[tuple[str, str], ...] = ()
    refs: tuple[str, ...] = ()

    def redirect_table(self) -> pa.Table:
        """``redirects`` as Arrow. The last one made is kept: the store hands every scan
        of one state the same tuple, and making the table of 437,000 contacts' links
        took 0.3 s, which ``tierwise compute`` would pay for each of its queries."""
        global _last_redirects
        kept = _last_redirects
        if kept is not None and kept[0] is self.redirects:
            return kept[1]
        pairs = pa.array(self.redirects, pa.struct([("customer_id", pa.string()),
                                                    ("survivor_id", pa.string())]))
        table = pa.Table.from_struct_array(pairs)
        _last_redirects = (self.redirects, table)
        return table


#: The last (redirects, their Arrow table) made; compared by identity, so it holds the
#: tuple it was made from.
_last_redirects: tuple[tuple[tuple[str, str], ...], pa.Table] | None = None


class Session(Protocol):
    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None
              ) -> pa.Table: ...

    def scalar(self, sql: str, params: list[Any] | dict[str, Any] | None = None
               ) -> Any: ...

    def execute(self, sql: str, params: list[Any] | dict[str, Any] | None = None
                ) -> None: ...

    def register_scan(self, name: str, scan: TableScan) -> None: ...

    def register_arrow(self, name: str, table: pa.Table) -> None: ...

    def copy_to_parquet(self, sql: str, path: str) -> None: ...

    def materialize(self, name: str, sql: str,
                    params: dict[str, Any] | None = None) -> None: ...


class Engine(Protocol):
    #: The engine and the SQL dialect its rules are compiled to.
    name: str
    #: Runs in this process on Arrow tables it is handed without a copy: facts held in
    #: memory by customer (``FactStore.keep_rows``) and key indexes pay off. An engine in a
    #: cluster (Spark) reads files itself; memory copies would only be shipped to it.
    in_process: bool
    #: Takes ``IN (SELECT …)`` inside a SELECT column, not only in a filter: many segment
    #: rules then run as the columns of one SELECT (DuckDB); Spark refuses it.
    subqueries_in_columns: bool
    #: What the engine raises for a query that cannot run as written: types that do not
    #: match, a value out of range, a cast that fails. Raised by a compiled rule, it means
    #: the rule asks for something impossible (a user's error, answered as such).
    query_errors: tuple[type[BaseException], ...]

    def session(self, scans: dict[str, TableScan] | None = None,
                arrow: dict[str, pa.Table] | None = None
                ) -> AbstractContextManager[Session]: ...

    def for_background(self) -> Engine:
        """An engine for work with no deadline on a low-priority thread (merging files):
        one that keeps all of that work on the calling thread where the engine can."""
        ...

    def for_staging(self) -> Engine:
        """The engine that stages and checks an import: the staged file is on this machine
        and its checks are written in DuckDB's SQL, so an in-process DuckDB engine (the
        engine itself where it is one)."""
        ...

    def limit_threads(self, threads: int) -> None:
        """Run this process's queries on at most ``threads`` threads from now on, where
        the engine runs them in this process (the real-time worker's rounds are many
        queries of a few milliseconds: a second thread costs more than it gives)."""
        ...


def naive_utc(when: datetime) -> datetime:
    """An instant as a query parameter: a naive UTC timestamp (every engine's session runs
    in UTC). An aware instant is converted, not merely stripped of its zone; a naive one is
    taken as UTC already."""
    return (when if when.tzinfo is None else when.astimezone(UTC)).replace(tzinfo=None)


def sql_literal(text: str) -> str:
    """A SQL string literal for text tierwise itself produced (paths, settings)."""
    return "'" + str(text).replace("'", "''") + "'"
