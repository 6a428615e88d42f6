"""A Parquet copy of the customers table for the compute engines.

The copy holds personal data as the control store does, sealed: name, e-mail, phone,
address and sensitive attributes stay encrypted in the file and in the copy kept in memory,
and a reader that needs them opens the columns it reads (``customers.reveal``), so no file
of the workspace holds them in clear.

The control store stays the system of record. Engines (DuckDB, and Spark on another
machine) read customers far faster from Parquet than through SQLAlchemy, so the workspace
keeps ``facts/_mirror/customers-<token>.parquet``, where the token is derived from the
table's row count, latest ``updated_at`` and columns: any import or edit (or a migration
that adds a column) changes the token and the next reader rebuilds the copy. Old copies
are deleted when a new one is written.

Anything that changes customers without touching ``updated_at`` (none today; erasure
will) must call ``invalidate``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from tierwise.definitions.schemas import CUSTOMERS
from tierwise.store import customers as customer_store
from tierwise.store.columns import Columns
from tierwise.store.control import ControlStore, utcnow
from tierwise.store.tables import customers


def _state(control: ControlStore) -> tuple[int, datetime | None]:
    """The customers' row count and latest ``updated_at``: any import, edit or deletion
    changes one of the two."""
    with control.read() as conn:
        return customer_store.state(conn)


def _token(control: ControlStore) -> str:
    """Names the copy of the customers as they are: their count, the latest change and the
    columns (a copy written before a migration added one is not read after it)."""
    count, latest = _state(control)
    columns = ",".join([*CUSTOMERS.names, *customer_store.BOOKKEEPING])
    return hashlib.sha1(f"{count}|{latest}|{columns}".encode()).hexdigest()[:16]


def folder(root: Path) -> Path:
    return root / "facts" / "_mirror"


def path_for(root: Path, control: ControlStore) -> Path:
    """The mirror file for the current customers, built first if needed."""
    target = folder(root) / f"customers-{_token(control)}.parquet"
    if target.exists():
        return target
    folder(root).mkdir(parents=True, exist_ok=True)
    with control.read() as conn:
        table = customer_store.as_arrow(conn, sealed=True)
    tmp = folder(root) / f".{uuid.uuid4().hex}.parquet"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, target)  # concurrent builders write identical content
    for old in folder(root).glob("customers-*.parquet"):
        if old != target:
            # open in a reader (Windows): the next copy deletes it
            with contextlib.suppress(PermissionError):
                old.unlink(missing_ok=True)
    return target


@dataclass(frozen=True)
class _Kept:
    count: int
    latest: datetime | None
    #: This process's clock just before the state was read.
    read_at: datetime
    table: pa.Table


_cache: dict[Path, _Kept] = {}
_cache_lock = threading.Lock()
#: Customers updated this long before the copy was read are read again when it catches up:
#: a transaction that took its clock reading before the copy was read may commit after.
CATCH_UP_MARGIN = timedelta(seconds=5)


def read_columns(root: Path, control: ControlStore, columns: list[str]) -> pa.Table:
    """Some columns of the current customers (``pinned``): from the copy kept in memory if
    this process keeps one, else from the file, those columns only (a one-off reader such
    as ``tierwise compute`` needs a few of them; the whole sealed copy takes a second to
    read for a million customers)."""
    source = pinned(root, control)
    try:
        return source.read(columns)
    finally:
        source.close()


def pinned(root: Path, control: ControlStore) -> Columns:
    """The current customers, sealed, their columns read when asked for (``Columns``):
    the copy kept in memory when this process keeps one (brought up to date as ``read``
    does: the server's worker keeps it), else the file, held open — later reads see these
    customers even if an import writes a newer copy meanwhile."""
    with _cache_lock:
        kept = _cache.get(root)
    if kept is not None:
        return Columns(read(root, control))
    return Columns(path_for(root, control))


def read(root: Path, control: ControlStore) -> pa.Table:
    """The current customers as Arrow, personal data sealed; the last copy read stays in
    memory (the server's worker reads it for every micro-batch).

    When customers were added or changed since, the copy catches up by reading just those
    (``updated_at`` after the latest it holds, or within ``CATCH_UP_MARGIN`` before it was
    read; not the margin before the latest, which after a bulk import is everyone): new
    customers arrive all the time under real-time intake, and reading all of them again
    (100k with their PII decrypted: ~4 s) for every new one made each micro-batch that
    brought one that slow. Customers deleted since (merges, erasure) are dropped by
    their ids; a count that still disagrees reads them all.
    """
    read_at = utcnow()
    count, latest = _state(control)
    with _cache_lock:
        kept = _cache.get(root)
    if kept is not None and (kept.count, kept.latest) == (count, latest):
        return kept.table
    table = None
    if kept is not None and kept.latest is not None:
        table = _caught_up(kept, control, count)
    if table is None:
        table = pq.read_table(path_for(root, control))
    with _cache_lock:
        _cache.clear()
        _cache[root] = _Kept(count, latest, read_at, table)
    return table


def _caught_up(kept: _Kept, control: ControlStore, count: int) -> pa.Table | None:
    """The kept copy with the customers changed since read again; customers deleted since
    (merged into another, erased) are found by their ids — one column, nothing decrypted —
    when the count says some are gone. None when the result still disagrees with the
    count (read everything then)."""
    assert kept.latest is not None
    with control.read() as conn:
        fresh = customer_store.as_arrow(conn, where=sa.or_(
            customers.c.updated_at > kept.latest,
            customers.c.updated_at >= kept.read_at - CATCH_UP_MARGIN), sealed=True)
        old = kept.table
        rest = old.filter(pc.invert(pc.is_in(old["customer_id"],
                                             value_set=fresh["customer_id"])))
        if rest.num_rows + fresh.num_rows != count:
            # Merges ran while real-time intake wrote customers: reading every customer
            # again after each (a second for 100k) made every round that followed one
            # that slow.
            rest = rest.filter(pc.is_in(rest["customer_id"],
                                        value_set=customer_store.ids(conn)))
    if rest.num_rows + fresh.num_rows != count:
        return None
    table = pa.concat_tables([rest, fresh.select(old.column_names).cast(old.schema)])
    # each catch-up adds a chunk: keep their number (and the cost of filtering) bounded
    return table.combine_chunks() if table["customer_id"].num_chunks > 32 else table


def read_if_kept(root: Path, control: ControlStore) -> pa.Table | None:
    """``read``, but only in a process that keeps a copy in memory already (one that
    evaluates segments, like the real-time worker); None elsewhere, where building the
    copy for one question would cost more than asking the control store."""
    with _cache_lock:
        kept = bool(_cache)
    return read(root, control) if kept else None


def invalidate(root: Path, files: bool = False) -> None:
    """Forget the copy kept in memory; with ``files`` delete the copies on disk too (an
    erased customer must leave no trace in any file)."""
    with _cache_lock:
        _cache.clear()
    if files:
        for old in folder(root).glob("*.parquet"):
            old.unlink(missing_ok=True)
    for old in folder(root).glob("customers-*.parquet"):
        old.unlink(missing_ok=True)


def accounts_and_customers(root: Path, control: ControlStore, columns: list[str]
                           ) -> pa.Table:
    """``columns`` of the customers that are not an account's contacts: the population
    every model and measure counts (a contact's rows count for its account). Only the
    columns asked for are read and filtered (the whole sealed copy: 0.8 s to filter and a
    second to read for a million customers)."""
    table = read_columns(root, control, list(dict.fromkeys([*columns, "account_id"])))
    linked = table["account_id"]
    chosen = table.select(columns)
    if linked.null_count == len(linked):  # no contacts: nothing to leave out
        return chosen
    return chosen.filter(pc.is_null(linked))


def contacts(root: Path, control: ControlStore, accounts: pa.Array | None = None
             ) -> pa.Table:
    """The ``contacts`` source rules aggregate: every customer that names an account, with
    the account (its survivor when it was merged) and the columns of
    ``definitions.schemas.CONTACTS`` (no personal data); with ``accounts``, the contacts of
    those accounts only."""
    from tierwise.definitions.schemas import CONTACTS

    table = read(root, control)
    table = table.filter(pc.is_valid(table["account_id"]))
    if table.num_rows:
        with control.read() as conn:
            merged = dict(customer_store.redirects(conn))
        if merged:
            named = table["account_id"].to_pylist()
            table = table.set_column(table.schema.get_field_index("account_id"), "account_id",
                                     pa.array([merged.get(a, a) for a in named], pa.string()))
    if accounts is not None:
        table = table.filter(pc.is_in(table["account_id"], value_set=accounts))
    added = pc.coalesce(table["signup_at"], table["created_at"])
    columns = {c.name: added if c.name == "added_at" else table[c.name]
               for c in CONTACTS.columns}
    return pa.table(columns, schema=pa.schema([pa.field(c.name, c.arrow_type)
                                               for c in CONTACTS.columns]))
