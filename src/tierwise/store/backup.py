"""The control store at one instant, for backups, and putting such a copy back.

SQLite: the online backup API copies the whole database in one step, inside one read
transaction, while other processes keep writing (WAL); the copy is then read as it is.
PostgreSQL: a REPEATABLE READ transaction exports its snapshot, ``pg_dump --snapshot`` dumps
exactly that snapshot, and the same transaction answers the backup's questions (which fact
files were live, how many rows each table had), so the dump and the file list describe one
instant. ``pg_restore`` puts a dump back, in one transaction, into an empty database.

The client programs are found on ``$PATH`` or in ``$TIERWISE_PG_BIN``; they must be at least
the server's major version.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tierwise.errors import WorkspaceError
from tierwise.store.control import ControlStore, as_utc, create_engine, utcnow
from tierwise.store.key_inventory import sealed_key_ids
from tierwise.store.tables import (
    audit_log,
    fact_files,
    leases,
    outbox,
    segment_history,
    segment_members,
    snapshots,
)

ENV_PG_BIN = "TIERWISE_PG_BIN"
SQLITE_FILE = "control.sqlite"
PG_FILE = "control.pgdump"
#: The lease a running backup holds; compaction's garbage collection leaves the files it
#: retired on disk while it is held, so every file live at the instant can still be copied.
LEASE = "backup"


@dataclass
class Frozen:
    """The control store as it was at ``instant``: ``conn`` reads it, ``file`` holds it."""

    conn: sa.Connection
    file: str
    dialect: str
    instant: datetime


def _pg_tool(name: str) -> str:
    folder = os.environ.get(ENV_PG_BIN)
    found = str(Path(folder) / name) if folder else shutil.which(name)
    if not found or not Path(found).exists():
        raise WorkspaceError(f"{name} is needed for a PostgreSQL control store and was not "
                             f"found on $PATH{' or in $' + ENV_PG_BIN if folder else ''} "
                             "(Debian: apt-get install postgresql-client)",
                             zh=f"PostgreSQL 控制库需要 {name}，但在 "
                             f"$PATH{' 或 $' + ENV_PG_BIN if folder else ''} 中没有找到"
                             "（Debian：apt-get install postgresql-client）")
    return found


def libpq_target(url: sa.URL) -> tuple[str, dict[str, str]]:
    """A libpq connection URI for the PostgreSQL tools, and the environment that carries
    the password (never on the command line, where `ps` shows it)."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise WorkspaceError(f"{what} failed ({Path(args[0]).name} exit {done.returncode}): "
                             f"{done.stderr.strip()[-2000:]}",
                             zh=f"{what} 失败（{Path(args[0]).name} 退出码 {done.returncode}）："
                             f"{done.stderr.strip()[-2000:]}")


@contextmanager
def frozen_copy(control: ControlStore, dest: Path) -> Iterator[Frozen]:
    """Write the control store as it is now to ``dest`` and yield a connection that reads it
    as it was at that instant."""
    if control.dialect == "sqlite":
        yield from _frozen_sqlite(control, dest)
    elif control.dialect == "postgresql":
        yield from _frozen_postgres(control, dest)
    else:
        raise WorkspaceError(f"cannot back up a {control.dialect} control store",
                             zh=f"无法备份 {control.dialect} 控制库")


def _frozen_sqlite(control: ControlStore, dest: Path) -> Iterator[Frozen]:
    source = control.engine.url.database
    if not source or source == ":memory:":
        raise WorkspaceError("an in-memory control store cannot be backed up",
                             zh="内存中的控制库无法备份")
    target = dest / SQLITE_FILE
    with closing(sqlite3.connect(source, timeout=120)) as src, \
            closing(sqlite3.connect(target)) as dst:
        src.backup(dst)  # pages=-1: everything in one step, one read transaction
        instant = utcnow()
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    engine = sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(
        f"file:{target}?mode=ro", uri=True))
    try:
        with engine.connect() as conn, conn.begin():
            yield Frozen(conn, SQLITE_FILE, "sqlite", instant)
    finally:
        engine.dispose()


def _frozen_postgres(control: ControlStore, dest: Path) -> Iterator[Frozen]:
    pg_dump = _pg_tool("pg_dump")
    uri, env = libpq_target(control.engine.url)
    with control.engine.connect() as conn:
        conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            snapshot = conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar()
            instant = utcnow()
            _run([pg_dump, "--format=custom", "--no-owner", "--no-privileges",
                  f"--snapshot={snapshot}", f"--file={dest / PG_FILE}", f"--dbname={uri}"],
                 env, "pg_dump")
            yield Frozen(conn, PG_FILE, "postgresql", instant)


def check_sqlite(path: Path) -> None:
    """SQLite's own check of a copied control store."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        raise WorkspaceError(f"SQLite integrity check: {result}",
                             zh=f"SQLite 完整性检查：{result}")


def pg_dump_list(path: Path) -> None:
    """Check that ``path`` is a readable dump (its table of contents lists)."""
    _run([_pg_tool("pg_restore"), "--list", str(path)], dict(os.environ), f"reading {path}")


def restore_postgres(dump: Path, url: str) -> None:
    """Load a dump into an empty PostgreSQL database, all of it or (on any error) nothing."""
    engine = create_engine(url)
    try:
        found = sa.inspect(engine).get_table_names()
        if found:
            raise WorkspaceError(f"the database {engine.url.render_as_string()} is not empty "
                                 f"({len(found)} tables, e.g. {sorted(found)[0]}); restore "
                                 "into a new, empty database",
                                 zh=f"数据库 {engine.url.render_as_string()} 不是空的（{len(found)}"
                                 f" 张表，例如 {sorted(found)[0]}）；请恢复到一个新的空数据库")
        uri, env = libpq_target(engine.url)
        _run([_pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
              "--single-transaction", f"--dbname={uri}", str(dump)], env, "pg_restore")
    finally:
        engine.dispose()


def drop_everything(url: str) -> None:
    """Empty a PostgreSQL database this restore filled (it was empty before)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


# -- what the copy holds -----------------------------------------------------------------
def live_fact_files(conn: sa.Connection) -> list[dict[str, Any]]:
    f = fact_files.c
    return [dict(r._mapping) for r in conn.execute(
        sa.select(f.table_name, f.path, f.rows, f.bytes).where(f.removed_at.is_(None))
        .order_by(f.file_id))]


def snapshot_files(conn: sa.Connection) -> list[str]:
    return [r.path for r in conn.execute(sa.select(snapshots.c.path)
                                         .order_by(snapshots.c.snapshot_id))]


def revision(conn: sa.Connection) -> str | None:
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def figures(conn: sa.Connection) -> dict[str, Any]:
    """What a restore must answer the same besides the tables' row counts: snapshots, the
    members and history entries of every segment, deliveries by status, the audit head."""
    def count(table: sa.Table) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)

    def per_segment(table: sa.Table) -> dict[str, int]:
        return {str(k): int(v) for k, v in conn.execute(
            sa.select(table.c.segment_key, sa.func.count()).group_by(table.c.segment_key)
            .order_by(table.c.segment_key))}

    head = conn.execute(sa.select(audit_log.c.seq, audit_log.c.hash)
                        .order_by(audit_log.c.seq.desc()).limit(1)).first()
    return {
        "snapshots": count(snapshots),
        "segment_members": per_segment(segment_members),
        "segment_history": per_segment(segment_history),
        "deliveries": {str(k): int(v) for k, v in conn.execute(
            sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)
            .order_by(outbox.c.status))},
        "audit_head": [head.seq, head.hash] if head else [0, ""],
    }


def sealed_keys(conn: sa.Connection) -> list[str]:
    return sorted(sealed_key_ids(conn))


def hold_pending(conn: sa.Connection) -> int:
    """Hold the deliveries that were pending at the backup instant (status ``held``): the
    original may have sent them after it. ``tierwise deliveries replay --status held``
    sends them, with their idempotency keys."""
    return int(conn.execute(outbox.update().where(outbox.c.status == "pending")
                            .values(status="held")).rowcount)


def backup_running(conn: sa.Connection) -> bool:
    """Whether a backup holds its lease (garbage collection waits)."""
    until = conn.execute(sa.select(leases.c.expires_at).where(leases.c.name == LEASE)).scalar()
    return until is not None and as_utc(until) > utcnow()
