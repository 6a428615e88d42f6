"""The control store: an SQLAlchemy engine on SQLite (WAL) or PostgreSQL, kept migrated."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from tierwise.errors import WorkspaceError
from tierwise.store.audit_key import AuditKey
from tierwise.store.sealing import KeyRing

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("tierwise.control")

MIGRATIONS = Path(__file__).with_name("migrations")
#: The newest revision: the migrations are numbered files whose revision is their number,
#: each revising the one before (a test holds this to alembic's own reading). Known
#: without alembic, whose import (~0.1 s) every command would otherwise pay just to learn
#: that the store is up to date.
HEAD = max(p.name.partition("_")[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))
#: How long a writer waits for another process's write transaction before giving up.
SQLITE_BUSY_TIMEOUT_MS = 120_000
#: Connections a process keeps open to the control store, and how many more it may open
#: when busy. The server answers requests on up to 40 threads (the thread pool of its web
#: framework) besides its own background threads; a pool smaller than that made requests
#: queue for a connection (30 s, then an error) instead of for the data.
POOL_SIZE = 10
POOL_OVERFLOW = {"sqlite": 54, "postgresql": 30}


#: A connection to the control store, for the type hints of layers above the store (which
#: hand connections to store functions but never build queries themselves).
Connection = sa.Connection

#: Most values bound in one ``IN (…)`` list (drivers limit the parameters of a statement).
IN_CHUNK = 2_000
_T = TypeVar("_T")


def chunked(items: Sequence[_T], size: int = IN_CHUNK) -> Iterator[Sequence[_T]]:
    """``items`` in slices of at most ``size``, for ``IN`` lists of any length.

    >>> [list(c) for c in chunked([1, 2, 3], 2)]
    [[1, 2], [3]]
    """
    for start in range(0, len(items), size):
        yield items[start:start + size]


def driver_rows(conn: sa.Connection, statement: sa.Select[Any] | str) -> list[tuple[Any, ...]]:
    """The rows ``statement`` selects as the driver's own tuples, read with its cursor in
    ``conn``'s transaction: SQLAlchemy's row objects cost more than the query when the
    rows are many (a million customers' ids; 7.5M memberships in 2.5 s against 5.0 s).
    Values come as the driver gives them: for text and numbers, what SQLAlchemy would."""
    sql, params = _driver_sql(conn, statement)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if params is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _driver_sql(conn: sa.Connection, statement: sa.Select[Any] | str) -> tuple[str, Any]:
    """``statement`` as the driver's SQL and parameters (None: no parameters)."""
    if isinstance(statement, str):
        return statement, None
    compiled = statement.compile(dialect=conn.dialect)
    return str(compiled), (tuple(compiled.params[name] for name in compiled.positiontup)
                           if compiled.positiontup is not None else compiled.params)


def text_column(conn: sa.Connection, statement: sa.Select[Any] | str) -> pa.Array:
    """The one text column ``statement`` selects, as Arrow, in no particular order.

    On SQLite the database joins the values into one string, which is cut into an Arrow
    array by their separators: a million customers' ids in about half the time of reading
    them as rows and converting those (``driver_rows``), and without pyarrow's conversion
    of Python values, whose first use imports pandas (0.3 s of a command that needs it
    nowhere else). Nulls, a value holding the separator, or more text than SQLite makes
    into one string take the rows."""
    if conn.dialect.name == "sqlite":
        joined = _sqlite_joined(conn, statement)
        if joined is not None:
            return joined
    return pa.array([r[0] for r in driver_rows(conn, statement)], pa.string())


#: ASCII's unit separator, between the values SQLite joins for ``text_column``.
_SEPARATOR = 0x1F


def _sqlite_joined(conn: sa.Connection, statement: sa.Select[Any] | str) -> pa.Array | None:
    """``text_column`` on SQLite from one joined string; None where it cannot be."""
    sql, params = _driver_sql(conn, statement)
    joined_sql = (f"WITH selected(value) AS ({sql}) SELECT count(*), count(value), "
                  f"group_concat(value, char({_SEPARATOR})) FROM selected")
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(joined_sql, () if params is None else params)
        rows, present, text = cursor.fetchone() or (0, 0, None)
    except sqlite3.DataError:  # more text than SQLite's longest string
        return None
    finally:
        cursor.close()
    if rows == 0:
        return pa.nulls(0, pa.string())
    if present != rows or text is None:  # nulls: group_concat leaves them out
        return None
    data = np.frombuffer(text.encode(), dtype=np.uint8)
    cuts = np.flatnonzero(data == _SEPARATOR)
    if len(cuts) != rows - 1 or len(data) - len(cuts) >= 2**31:  # a value holds one
        return None
    # value i starts after i separators, which the values' bytes leave out
    offsets = np.empty(rows + 1, dtype=np.int32)
    offsets[0], offsets[1:-1] = 0, cuts + 1 - np.arange(1, rows)
    offsets[-1] = len(data) - len(cuts)
    return pa.Array.from_buffers(pa.string(), rows, [
        None, pa.py_buffer(offsets), pa.py_buffer(data[data != _SEPARATOR])])


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything in the control store is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def saved_instant(value: Any) -> Any:
    """A datetime kept in a JSON record (written with ``str``), as a datetime again;
    anything else as it is."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def busy(exc: BaseException) -> bool:
    """The control store could not be had in time: the pool's wait ran out, or SQLite's
    write lock stayed taken. The transaction was rolled back; a retry may pass."""
    if isinstance(exc, sa.exc.TimeoutError):
        return True
    return isinstance(exc, sa.exc.OperationalError) and "database is locked" in str(exc)


def advisory_lock(conn: sa.Connection, name: str) -> None:
    """Serialise writers that touch ``name`` until ``conn``'s transaction ends.

    SQLite needs nothing: BEGIN IMMEDIATE already admits one writer at a time.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})


def _sqlite_engine(url: str) -> sa.Engine:
    in_memory = url in ("sqlite://", "sqlite:///:memory:")  # one connection per thread
    pool = {} if in_memory else {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW["sqlite"]}
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                              **pool)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself so that writers can ask for
        # BEGIN IMMEDIATE: a deferred transaction that later tries to write cannot wait for
        # the lock in WAL mode and fails at once with "database is locked".
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # Deleted content is overwritten, so an erased customer leaves nothing in free pages.
        cur.execute("PRAGMA secure_delete=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get("tierwise_write", False):
            _begin_immediate(conn.connection.dbapi_connection)
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def _begin_immediate(raw: Any) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock by retrying every few milliseconds.

    SQLite's own busy handler sleeps between attempts, up to 100 ms at a time, and does not
    queue waiters: under the real-time load (the server writing rows it receives 20 times a
    second, the worker its micro-batches) a writer kept missing the lock and waited a
    second and more. Retrying at 0.5–4 ms, with the busy timeout off meanwhile, takes the
    lock within a few milliseconds of its release."""
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        pause = 0.0005
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) \
                        or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 1.5, 0.004)
    finally:
        raw.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")


def create_engine(url: str) -> sa.Engine:
    """An engine for the control-store URL (``sqlite:///path`` or ``postgresql+psycopg://``)."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    try:
        return sa.create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE,
                                max_overflow=POOL_OVERFLOW["postgresql"])
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise WorkspaceError(f"cannot use control store URL {url!r}: {exc}",
                             zh=f"无法使用控制库 URL {url!r}：{exc}") from None


class ControlStore:
    """Connections to the control store; ``write()`` serialises writers on SQLite.

    >>> store = ControlStore("sqlite://")  # in memory
    >>> store.upgrade()
    >>> store.revision()
    '0016'
    """

    def __init__(self, url: str, pii: KeyRing | None = None) -> None:
        self.url = url
        self.engine = create_engine(url)
        #: Encrypts PII columns; every connection carries it in ``conn.info["pii"]``. Without
        #: one (bare stores in tests), PII is stored as given.
        self.pii = pii
        #: Keys the audit chain (``conn.info["audit"]``); set by the workspace once the store
        #: is migrated. Without one (bare stores in tests) entries are chained unkeyed.
        self.audit: AuditKey | None = None
        self._checkpointer: tuple[threading.Thread, threading.Event] | None = None
        #: SQLite: this process's writers, one at a time (re-entrant: a writer that opens a
        #: second write transaction on its own thread fails on the database, as before).
        self._writers = threading.RLock() if self.dialect == "sqlite" else None
        if self.dialect == "sqlite":
            # Registered here, before any thread connects: adding a listener later races with
            # a first connection on another thread (SQLAlchemy iterates the listener deque
            # without a lock: "deque mutated during iteration").
            sa.event.listen(self.engine, "connect", self._on_sqlite_connect)

    def checkpoint_in_background(self, every: float = 1.0) -> None:
        """On a SQLite file: take the WAL checkpoints off this process's commits and run them
        on a thread every ``every`` seconds instead.

        SQLite checkpoints on the commit that finds the write-ahead log over 1,000 pages; under
        the real-time worker's steady writes that was every commit, and it made each of them
        take ~25 ms instead of ~7 ms. A passive checkpoint on another connection copies the
        same pages without holding up writers or readers. Other processes keep checkpointing
        on their commits as before, so the log stays bounded even if this one stops.
        """
        if self.dialect != "sqlite" or self.engine.url.database in (None, "", ":memory:") \
                or self._checkpointer is not None:
            return

        self._checkpoint_here = True
        self.engine.dispose()  # connections in the pool were opened with the default
        stop = threading.Event()

        def _loop() -> None:
            while not stop.wait(every):
                try:
                    raw = self.engine.raw_connection()
                    try:
                        raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")
                    finally:
                        raw.close()
                except Exception:  # noqa: BLE001 - the next round tries again
                    log.exception("WAL checkpoint failed")

        thread = threading.Thread(target=_loop, name="tierwise-checkpoint", daemon=True)
        thread.start()
        self._checkpointer = (thread, stop)

    #: Set by :meth:`checkpoint_in_background`: new connections leave checkpoints to its thread.
    _checkpoint_here = False

    def _on_sqlite_connect(self, dbapi_conn: Any, _record: Any) -> None:
        if self._checkpoint_here:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn, conn.begin():
            conn.info["pii"] = self.pii
            conn.info["audit"] = self.audit
            yield conn

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """One transaction that commits on success and rolls back on any exception.

        On SQLite the threads of this process queue for the write lock here, blocked (no
        CPU), and only the first asks the database for it: forty request threads retrying
        BEGIN IMMEDIATE every few milliseconds each took the interpreter's lock that often,
        and the thread holding the write lock, needing it too, finished its transaction
        ten times slower (the server stalled under events and customer writes together).
        """
        with self._queue_for_writing(), self.engine.connect() as conn:
            conn.execution_options(tierwise_write=True)
            conn.info["pii"] = self.pii
            conn.info["audit"] = self.audit
            with conn.begin():
                yield conn

    @contextmanager
    def _queue_for_writing(self) -> Iterator[None]:
        if self._writers is None:
            yield
            return
        if not self._writers.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise sa.exc.OperationalError(
                "BEGIN IMMEDIATE", None,
                Exception("database is locked: waited for this process's other writers"))
        try:
            yield
        finally:
            self._writers.release()

    def lock(self, conn: sa.Connection, name: str) -> None:
        """Serialise writers that touch ``name`` until ``conn``'s transaction ends.

        SQLite needs nothing: BEGIN IMMEDIATE already admits one writer at a time.
        """
        advisory_lock(conn, name)

    # -- migrations ---------------------------------------------------------------------
    def _alembic_config(self, conn: sa.Connection) -> Config:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        return cfg

    def revision(self) -> str | None:
        """The schema's revision, None for an empty store."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def head(self) -> str | None:
        """The newest revision as alembic reads the migration scripts."""
        from alembic.script import ScriptDirectory

        with self.engine.connect() as conn:
            return ScriptDirectory.from_config(self._alembic_config(conn)).get_current_head()

    def upgrade(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        if self.revision() == HEAD:
            return
        from alembic import command

        with self.engine.connect() as conn:
            conn.execution_options(tierwise_write=True)
            command.upgrade(self._alembic_config(conn), "head")
            conn.commit()
        if (reached := self.revision()) != HEAD:
            raise WorkspaceError(f"the control store is at revision {reached} after migrating; "
                                 f"this version of tierwise needs {HEAD}",
                                 zh=f"迁移后控制库的版本为 {reached}；"
                                    f"此版本的 tierwise 需要 {HEAD}")

    def dispose(self) -> None:
        if self._checkpointer is not None:
            thread, stop = self._checkpointer
            stop.set()
            thread.join(timeout=5)
            self._checkpointer = None
        self.engine.dispose()
