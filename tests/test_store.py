"""Control store and fact store: migrations, manifest, compaction, garbage collection."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.conftest import CUSTOMERS_CSV, ORDERS_CSV, recount, write

import tierwise
from tierwise.config import WorkspaceConfig, read_config
from tierwise.errors import WorkspaceError, speaking
from tierwise.store.control import HEAD, ControlStore
from tierwise.store.tables import fact_files


def test_migrations_reach_head_on_both_stores(control_url: str, tmp_path: Path):
    url = control_url.replace("sqlite:///control.db", f"sqlite:///{tmp_path}/c.db")
    store = ControlStore(url)
    assert store.revision() is None
    store.upgrade()
    assert store.revision() == store.head() == HEAD == "0016"
    store.upgrade()  # idempotent
    tables = set(sa.inspect(store.engine).get_table_names())
    assert {"customers", "imports", "fact_files", "mappings", "definitions", "snapshots",
            "alembic_version"} <= tables
    store.dispose()


def test_a_store_behind_is_migrated_to_head(control_url: str, tmp_path: Path):
    """A store written by an older version (two revisions behind) is recognised as behind
    without alembic and brought to ``HEAD`` with it; one at ``HEAD`` is left alone."""
    from alembic import command

    url = control_url.replace("sqlite:///control.db", f"sqlite:///{tmp_path}/c.db")
    store = ControlStore(url)
    store.upgrade()
    behind = f"{int(HEAD) - 2:04d}"
    with store.engine.connect() as conn:
        command.downgrade(store._alembic_config(conn), behind)
        conn.commit()
    assert store.revision() == behind
    store.upgrade()
    assert store.revision() == HEAD
    assert "account_id" in {c["name"] for c in sa.inspect(store.engine).get_columns("customers")}
    store.dispose()


def test_opening_a_workspace_does_not_load_the_migration_tool(tmp_path: Path):
    """An up-to-date store is recognised without alembic (its import costs every command
    ~0.1 s); a new one is migrated with it."""
    script = ("import sys, tierwise; tierwise.{}(sys.argv[1]); "
              "print('alembic' in sys.modules)")
    run = [subprocess.run([sys.executable, "-c", script.format(verb), str(tmp_path / "ws")],
                          capture_output=True, text=True, check=True).stdout.strip()
           for verb in ("init", "open")]
    assert run == ["True", "False"]


def test_migrations_build_the_schema_the_code_declares(control_url: str, tmp_path: Path):
    """``store/tables.py`` and the migrations are two descriptions of one schema: after the
    migrations, comparing the database with the tables finds no table, column, index or
    type that one has and the other lacks."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from tierwise.store.tables import metadata

    url = control_url.replace("sqlite:///control.db", f"sqlite:///{tmp_path}/c.db")
    store = ControlStore(url)
    store.upgrade()
    try:
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
    finally:
        store.dispose()
    assert differences == []


def test_the_member_counts_start_from_the_members_stored(tmp_path: Path):
    from alembic import command

    from tierwise.store import sizes
    from tierwise.store.tables import segment_members

    store = ControlStore(f"sqlite:///{tmp_path}/c.db")
    with store.engine.connect() as conn:
        command.upgrade(store._alembic_config(conn), "0009")
        conn.commit()
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        conn.execute(segment_members.insert(), [
            {"segment_key": key, "customer_id": f"C{i}", "entered_at": now, "version": 1}
            for key, n in (("a", 3), ("b", 1)) for i in range(n)])
    store.upgrade()
    with store.read() as conn:
        assert sizes.of(conn) == {"a": 3, "b": 1} == recount(conn)
        assert sizes.of(conn, ["a", "c"]) == {"a": 3, "c": 0}
    store.dispose()


def test_sqlite_uses_wal(ws: tierwise.Workspace):
    with ws.control.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_workspace_config_round_trip(tmp_path: Path):
    ws = tierwise.init(tmp_path / "w", timezone="Europe/Berlin", currency="EUR", locale="en")
    config = read_config(ws.root)
    assert (config.timezone, config.currency, config.locale) == ("Europe/Berlin", "EUR", "en")
    assert (ws.root / "control.db").exists()
    with pytest.raises(WorkspaceError, match="already a tierwise workspace"):
        tierwise.init(tmp_path / "w")


@pytest.mark.parametrize(("field", "value", "words"), [
    ("timezone", "Mars/Olympus", "unknown time zone"),
    ("locale", "fr", "unknown locale"),
    ("currency", "yuan", "three-letter"),
    ("engine", "pandas", "unknown engine"),
    ("intake_keep_hours", 0, "expected 1 to 8784"),
    # a value of the wrong type is named, not a crash deeper down
    ("sweep_seconds", "10", "sweep_seconds = '10': expected a whole number"),
    ("sweep_seconds", True, "expected a whole number"),
    ("intake_keep_hours", "x", "expected a number"),
    ("currency", 5, "currency = 5: expected text"),
    ("smtp_url", 4, "expected text"),
    ("webhook_allowed_targets", "crm.internal", "expected a list"),
    ("retention_days", 30, "expected a table"),
    ("retention_days", {"evnts": 30}, "retention_days.evnts: not a table with times"),
    ("retention_days", {"events": "30"}, "expected a whole number of days"),
])
def test_bad_settings(field: str, value: object, words: str):
    with pytest.raises(WorkspaceError, match=words) as raised:
        WorkspaceConfig(**{field: value})
    with speaking("zh-CN"):  # and in Chinese
        assert re.search("[\u4e00-\u9fff]", str(raised.value)), str(raised.value)


def test_settings_errors_speak_the_declared_locale(ws: tierwise.Workspace) -> None:
    """A zh-CN workspace with a wrong setting is told so in Chinese by the CLI, with a
    "did you mean" for a misspelt name."""
    import subprocess
    import sys

    path = ws.root / "tierwise.toml"
    text = path.read_text()
    path.write_text(text.replace("[workspace]\n", "[workspace]\nswep_seconds = 5\n"))
    run = subprocess.run([sys.executable, "-m", "tierwise.cli.main", "status", "-w",
                          str(ws.root)], capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "未知设置" in run.stderr and "是不是要写 sweep_seconds" in run.stderr, run.stderr
    path.write_text(text.replace("sweep_seconds = 10", 'sweep_seconds = "ten"'))
    run = subprocess.run([sys.executable, "-m", "tierwise.cli.main", "status", "-w",
                          str(ws.root)], capture_output=True, text=True)
    assert run.returncode == 1 and "sweep_seconds = 'ten'：应为整数" in run.stderr, run.stderr


def test_open_finds_workspace_from_environment(ws: tierwise.Workspace, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TIERWISE_WORKSPACE", str(ws.root))
    assert tierwise.open().root == ws.root
    monkeypatch.delenv("TIERWISE_WORKSPACE")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkspaceError, match="tierwise init"):
        tierwise.open()


def test_unknown_setting_in_toml(ws: tierwise.Workspace):
    path = ws.root / "tierwise.toml"
    path.write_text(path.read_text().replace("[workspace]\n", '[workspace]\ncolour = "blue"\n'))
    with pytest.raises(WorkspaceError, match="unknown setting"):
        tierwise.open(ws.root)


def _many_small_imports(ws: tierwise.Workspace, tmp_path: Path, n: int) -> None:
    for k in range(n):
        rows = "".join(f"O{k}-{i},N{i},2025-01-0{k % 9 + 1},{k}\n" for i in range(50))
        # every second file also rewrites the previous file's orders
        if k % 2:
            rows += "".join(f"O{k - 1}-{i},N{i},2025-01-01,{-k}\n" for i in range(10))
        ws.import_file("orders", write(tmp_path / f"o{k}.csv",
                                       "order_id,customer_id,ordered_at,amount\n" + rows),
                       unknown_customers="create")


def test_compaction_keeps_current_rows(any_ws: tierwise.Workspace, tmp_path: Path):
    _many_small_imports(any_ws, tmp_path, 6)
    before = any_ws.table("orders").sort_by("order_id")
    assert before.num_rows == 300
    assert any_ws.summary()["orders"]["files"] == 6
    assert any_ws.compact("orders") == {"orders": (6, 1)}
    after = any_ws.table("orders").sort_by("order_id")
    assert after.equals(before)
    assert any_ws.summary()["orders"]["files"] == 1
    # A later import still wins over the compacted rows.
    any_ws.import_file("orders", write(tmp_path / "late.csv",
                                       "order_id,customer_id,ordered_at,amount\n"
                                       "O0-0,N0,2025-01-01,999\n"))
    rows = {r["order_id"]: r["amount"] for r in any_ws.table("orders").to_pylist()}
    assert rows["O0-0"] == 999 and rows["O1-0"] == 1 and rows["O0-5"] == -1


def test_replaced_files_are_deleted_after_a_grace_period(ws: tierwise.Workspace,
                                                         tmp_path: Path):
    _many_small_imports(ws, tmp_path, 3)
    old = sorted((ws.root / "facts" / "orders").glob("*.parquet"))
    ws.compact("orders")
    assert all(p.exists() for p in old)  # readers that listed them may still read them
    removed = ws.facts.collect_garbage(now_grace=timedelta(0))
    assert removed == 3 and not any(p.exists() for p in old)
    with ws.control.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(fact_files)).scalar() == 1


def test_orphans_from_a_crash_are_invisible_then_collected(ws: tierwise.Workspace,
                                                            tmp_path: Path):
    _many_small_imports(ws, tmp_path, 1)
    orphan = ws.root / "facts" / "orders" / "deadbeef.parquet"
    orphan.write_bytes((next((ws.root / "facts" / "orders").glob("*.parquet"))).read_bytes())
    staging = ws.root / "facts" / "_staging" / "half.parquet"
    staging.parent.mkdir(exist_ok=True)
    staging.write_bytes(b"PAR1 half written")
    assert ws.count("orders") == 50  # unregistered files are not part of the table
    stale = time.time() - 7 * 3600
    for p in (orphan, staging):
        os.utime(p, (stale, stale))
    assert ws.facts.collect_garbage(strays=False) == 0  # what merges run after each one
    assert orphan.exists() and staging.exists()
    assert ws.facts.collect_garbage() == 2
    assert not orphan.exists() and not staging.exists()
    assert ws.count("orders") == 50


def test_the_customers_copy_catches_up_with_new_changed_and_deleted_customers(
        ws: tierwise.Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-memory copy reads only customers changed since it was made and drops those
    deleted or merged away (by their ids); a merge undone brings back customers it cannot
    see, so it reads all; either way it equals the control store."""
    import pyarrow.compute as pc
    import sqlalchemy as sa

    from tierwise.identity.merge import merge, undo
    from tierwise.ingest.readers import RecordsSource
    from tierwise.store import customer_mirror
    from tierwise.store import customers as customer_store
    from tierwise.store.tables import customers

    full_reads: list[object] = []
    build = customer_mirror.path_for
    monkeypatch.setattr(customer_mirror, "path_for",
                        lambda *a: full_reads.append(a) or build(*a))

    def people(rows: list[dict[str, object]]) -> None:
        ws.import_source("customers", RecordsSource.from_dicts("test", rows))

    def matches() -> None:
        kept = customer_store.reveal(customer_mirror.read(ws.root, ws.control),
                                     ws.control.pii, customer_store.SEALED_COLUMNS)
        with ws.control.read() as conn:
            stored = customer_store.as_arrow(conn)
        order = pc.sort_indices(kept, [("customer_id", "ascending")])
        expected = stored.take(pc.sort_indices(stored, [("customer_id", "ascending")]))
        assert kept.take(order).cast(expected.schema).equals(expected)

    read_rows: list[int] = []
    as_arrow = customer_store.as_arrow

    def counted(*args: object, **kwargs: object) -> object:
        table = as_arrow(*args, **kwargs)  # type: ignore[arg-type]
        if kwargs.get("where") is not None:  # the copy catching up
            read_rows.append(table.num_rows)
        return table

    monkeypatch.setattr(customer_store, "as_arrow", counted)

    people([{"customer_id": f"M{i}", "name": f"n{i}", "city": "上海"} for i in range(5)])
    with ws.control.write() as conn:  # imported an hour ago, as a bulk load would be
        conn.execute(customers.update().values(
            updated_at=sa.func.datetime(customers.c.updated_at, "-1 hour")
            if ws.control.dialect == "sqlite" else customers.c.updated_at
            - sa.text("interval '1 hour'")))
    matches()
    assert len(full_reads) == 1
    read_rows.clear()
    people([{"customer_id": "M1", "name": "renamed"}, {"customer_id": "M9", "name": "new"}])
    matches()
    assert len(full_reads) == 1  # caught up with the two changed customers only
    assert read_rows == [2]  # not the five imported an hour before
    with ws.control.write() as conn:  # deleted without telling the copy
        conn.execute(customers.delete().where(customers.c.customer_id == "M2"))
    matches()
    assert len(full_reads) == 1  # one fewer customer: dropped by its id, not read again
    assert "M2" not in customer_mirror.read(ws.root, ws.control)["customer_id"].to_pylist()
    # a merge in another process (the server's, while the worker keeps the copy) and a
    # new customer in the same interval
    merged = merge(ws, "M3", ["M4"], actor="test", reason="test")
    people([{"customer_id": "M10", "name": "newer"}])
    matches()
    assert len(full_reads) == 1
    undo(ws, merged.merge_id, actor="test")  # M4 back as it was
    matches()


def test_writers_wait_for_each_other(ws: tierwise.Workspace) -> None:
    """Writers on one SQLite store take turns: each BEGIN IMMEDIATE waits for the lock
    (retrying every few milliseconds) instead of failing with "database is locked"."""
    import threading
    import time

    import sqlalchemy as sa

    from tierwise.store.control import utcnow
    from tierwise.store.tables import leases

    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            for i in range(30):
                with ws.control.write() as conn:
                    conn.execute(leases.insert().values(name=f"{name}{i}", holder=name,
                                                        expires_at=utcnow()))
                    time.sleep(0.002)  # hold the lock a little while the other waits
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with ws.control.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(leases)).scalar() == 90


def test_background_checkpoints_while_other_threads_connect(tmp_path: Path) -> None:
    """Turning on background checkpoints while other threads open their first connections
    neither breaks those connections nor leaves new ones checkpointing on commit."""
    import threading

    store = ControlStore(f"sqlite:///{tmp_path / 'c.sqlite'}")
    store.upgrade()
    store.dispose()
    failures: list[BaseException] = []

    def connect() -> None:
        try:
            for _ in range(20):
                with store.read() as conn:
                    conn.execute(sa.text("SELECT 1"))
                store.engine.dispose()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            failures.append(exc)

    threads = [threading.Thread(target=connect) for _ in range(4)]
    for t in threads:
        t.start()
    store.checkpoint_in_background(every=0.05)
    for t in threads:
        t.join()
    assert failures == []
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    other = ControlStore(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with other.read() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    other.dispose()
    store.dispose()


@pytest.mark.parametrize("values", [
    [], ["C1"], ["", ""], ["é", "", "客户", "x" * 300],
    ["a\x1fb", "c"],  # a value holding the separator SQLite's joined string uses
    ["a", None, "b"],  # a null, which the joined string would leave out
])
def test_a_text_column_is_read_whole_and_exact(control_url: str, tmp_path: Path,
                                               values: list[str | None]) -> None:
    """``text_column`` reads SQLite's values as one joined string and cuts it: every value
    comes back once, byte for byte, whatever it holds, on both stores."""
    from tierwise.store.control import driver_rows, text_column

    url = control_url.replace("sqlite:///control.db", f"sqlite:///{tmp_path}/c.db")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE texts (v TEXT)"))
            if values:
                conn.execute(sa.text("INSERT INTO texts VALUES (:v)"), [{"v": v} for v in values])
            column = text_column(conn, "SELECT v FROM texts")
            column.validate(full=True)
            assert sorted(column.to_pylist(), key=str) == sorted(values, key=str)
            assert sorted(r[0] for r in driver_rows(conn, "SELECT v FROM texts")
                          if r[0] is not None) == sorted(v for v in values if v is not None)
    finally:
        engine.dispose()


def test_a_text_column_longer_than_sqlite_strings_is_read_as_rows(tmp_path: Path) -> None:
    """More text than SQLite makes into one string (its length limit, lowered here) is read
    row by row instead of failing."""
    import sqlite3

    from tierwise.store.control import text_column

    engine = sa.create_engine(f"sqlite:///{tmp_path}/c.db")
    ids = [f"C{i:07d}" for i in range(5_000)]
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE texts (v TEXT)"))
        conn.execute(sa.text("INSERT INTO texts VALUES (:v)"), [{"v": v} for v in ids])
        conn.connection.dbapi_connection.setlimit(  # type: ignore[union-attr]
            sqlite3.SQLITE_LIMIT_LENGTH, 10_000)
        with pytest.raises(sa.exc.DataError, match="too big"):
            conn.exec_driver_sql("SELECT group_concat(v) FROM texts").fetchall()
        assert sorted(text_column(conn, "SELECT v FROM texts").to_pylist()) == ids
    engine.dispose()


def test_a_published_file_records_the_range_of_its_times(ws: tierwise.Workspace,
                                                          tmp_path: Path) -> None:
    """The manifest's min_time / max_time of a fact file are its earliest and latest time
    as UTC instants (read from the raw Parquet statistics)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ws.import_file("customers", write(tmp_path / "c.csv", CUSTOMERS_CSV))
    ws.import_file("orders", write(tmp_path / "o.csv", ORDERS_CSV))
    with ws.control.read() as conn:
        (path, low, high), = conn.execute(sa.select(
            fact_files.c.path, fact_files.c.min_time, fact_files.c.max_time).where(
            fact_files.c.table_name == "orders")).all()
    times = pq.read_table(ws.root / path, columns=["ordered_at"])["ordered_at"]
    assert (low, high) == (pc.min(times).as_py(), pc.max(times).as_py())
    assert low.utcoffset() == timedelta(0) and low < high
