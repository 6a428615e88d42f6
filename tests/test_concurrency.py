"""Two real processes importing into one workspace at the same time: both land, nothing lost."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import sqlalchemy as sa
from tests.conftest import write

import tierwise
from tierwise.store.tables import fact_files, imports

WORKER = """
import sys, time, pathlib, tierwise
root, table, path, go = sys.argv[1:5]
while not pathlib.Path(go).exists():
    time.sleep(0.005)
ws = tierwise.open(root)
result = ws.import_file(table, path, unknown_customers="create")
print(result.import_id, result.inserted, result.updated)
"""


def _orders(path: Path, start: int, count: int, amount: float) -> Path:
    rows = "".join(f"O{i:06d},C{i % 500:04d},2025-01-{i % 28 + 1:02d} 10:00,{amount}\n"
                   for i in range(start, start + count))
    return write(path, "order_id,customer_id,ordered_at,amount\n" + rows)


def _run_pair(root: Path, jobs: list[tuple[str, Path]], go: Path) -> list[str]:
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(root), table, str(path),
                               str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for table, path in jobs]
    time.sleep(1.0)  # both processes are up and waiting
    go.touch()
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outputs.append(out)
    return outputs


def test_two_processes_import_at_once(any_ws: tierwise.Workspace, tmp_path: Path):
    root = any_ws.root
    a = _orders(tmp_path / "a.csv", 0, 30_000, 1.0)
    b = _orders(tmp_path / "b.csv", 29_900, 30_000, 2.0)  # 100 keys overlap with a
    _run_pair(root, [("orders", a), ("orders", b)], tmp_path / "go")

    orders = any_ws.table("orders")
    assert orders.num_rows == 59_900
    assert len(pc.unique(orders["order_id"])) == 59_900
    overlap = orders.filter(pc.and_(pc.greater_equal(orders["order_id"], "O029900"),
                                    pc.less(orders["order_id"], "O030000")))
    with any_ws.control.read() as conn:
        done = conn.execute(sa.select(imports.c.import_id, imports.c.source)
                            .order_by(imports.c.import_id)).all()
        files = conn.execute(sa.select(fact_files.c.seq, fact_files.c.import_id)
                             .order_by(fact_files.c.seq)).all()
    assert len([d for d in done if d.source.endswith(".csv")]) == 2
    # The rows of the overlap come from the import that committed last.
    last_import = files[-1].import_id
    last_source = next(d.source for d in done if d.import_id == last_import)
    expected = 1.0 if last_source.endswith("a.csv") else 2.0
    assert set(overlap["amount"].to_pylist()) == {expected}
    assert any_ws.count("customers") == 500  # stubs created once, by whichever came first


def test_customers_and_orders_at_once(any_ws: tierwise.Workspace, tmp_path: Path):
    customers = write(tmp_path / "c.csv", "customer_id,name\n" + "".join(
        f"K{i:05d},name {i}\n" for i in range(20_000)))
    orders = _orders(tmp_path / "o.csv", 0, 20_000, 3.0)
    _run_pair(any_ws.root, [("customers", customers), ("orders", orders)], tmp_path / "go")
    assert any_ws.count("orders") == 20_000
    assert any_ws.count("customers") == 20_500


def test_a_merge_during_an_import_does_not_make_it_overlap(ws: tierwise.Workspace,
                                                           monkeypatch) -> None:
    """An import whose comparison ran before another process committed decides whether
    readers must deduplicate: after another import, yes (its keys were not compared);
    after a merge or rewrite of stored files, no (they bring no new key, and marking the
    file would make every later read deduplicate the whole table)."""
    from tierwise.ingest import checks
    from tierwise.ingest.readers import RecordsSource

    def orders(tag: str, n: int = 3) -> RecordsSource:
        return RecordsSource.from_dicts("test", [
            {"order_id": f"{tag}{i}", "customer_id": "C1", "ordered_at": "2025-03-01 10:00",
             "amount": 5} for i in range(n)])

    for i in range(3):
        ws.import_source("orders", orders(f"base{i}-"), unknown_customers="create")
    compare = checks.classify_facts
    meanwhile: list[str] = []

    def compare_then_commit_another(*args, **kwargs):
        found = compare(*args, **kwargs)
        if meanwhile == ["merge"]:
            assert ws.facts.compact(ws.engine, "orders", min_files=2) == (3, 1)
        elif meanwhile == ["import"]:
            monkeypatch.setattr(checks, "classify_facts", compare)
            ws.import_source("orders", orders("other-"), unknown_customers="create")
        return found

    monkeypatch.setattr(checks, "classify_facts", compare_then_commit_another)

    def last_overlaps() -> bool:
        with ws.control.read() as conn:
            return bool(conn.execute(sa.select(fact_files.c.overlaps).order_by(
                fact_files.c.file_id.desc()).limit(1)).scalar_one())

    meanwhile[:] = ["merge"]
    ws.import_source("orders", orders("after-merge-"), unknown_customers="create")
    assert not last_overlaps()
    assert ws.count("orders") == 12
    meanwhile[:] = ["import"]
    monkeypatch.setattr(checks, "classify_facts", compare_then_commit_another)
    ws.import_source("orders", orders("after-import-"), unknown_customers="create")
    assert last_overlaps()
    assert ws.count("orders") == 18


def test_a_file_published_while_an_import_compares_is_not_read_twice(
        any_ws: tierwise.Workspace, tmp_path: Path, monkeypatch) -> None:
    """Another import commits just as this one reads the manifest: either this one compares
    with its file or counts it as a race — never neither. (On PostgreSQL each statement
    sees what was committed before it: the position read after the file list saw the new
    file the list had not, and its 100 overlapping keys were read twice.)"""
    facts = any_ws.facts
    first = _orders(tmp_path / "a.csv", 0, 1_000, 1.0)
    second = _orders(tmp_path / "b.csv", 900, 1_000, 2.0)  # 100 keys overlap
    original = facts.max_file_id
    done: list[bool] = []

    def publish_first_then_read(conn, table):  # type: ignore[no-untyped-def]
        if not done and table == "orders":
            done.append(True)
            any_ws.import_file("orders", first, unknown_customers="create")
        return original(conn, table)

    scan = facts.scan

    def list_then_publish(table, conn=None):  # type: ignore[no-untyped-def]
        found = scan(table, conn)
        if not done and table == "orders" and conn is not None:
            done.append(True)
            any_ws.import_file("orders", first, unknown_customers="create")
        return found

    for hook in ("max_file_id", "scan"):
        done.clear()
        monkeypatch.setattr(facts, hook, publish_first_then_read if hook == "max_file_id"
                            else list_then_publish)
        try:
            any_ws.import_file("orders", second, unknown_customers="create")
        finally:
            monkeypatch.undo()
        assert done
        orders = any_ws.table("orders")
        assert orders.num_rows == len(pc.unique(orders["order_id"])) == 1_900, hook
