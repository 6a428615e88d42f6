"""Backup while the workspace works, restore to the backup instant, and keys that are never
replaced silently; on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
import sqlalchemy as sa
from tests.api_helpers import build
from tests.test_cli import tw

import tierwise
from tierwise.actions import catalog as automations
from tierwise.actions import dispatch
from tierwise.actions.channels import Channels
from tierwise.errors import TierwiseError, WorkspaceError
from tierwise.ingest.readers import RecordsSource
from tierwise.realtime import intake as intake_flow
from tierwise.security import backup
from tierwise.segments import membership
from tierwise.segments.vocabulary import vocabulary
from tierwise.store import audit
from tierwise.store.tables import (
    audit_log,
    imports,
    intake,
    outbox,
    segment_history,
    segment_members,
    snapshots,
)

# Imports batches of 50 orders (ids L<round>-<n>) until told to stop.
IMPORTER = """
import sys, time, pathlib, tierwise
from tierwise.ingest.readers import RecordsSource
root, stop, done = sys.argv[1:4]
ws = tierwise.open(root)
i = 0
while not pathlib.Path(stop).exists():
    rows = [{"order_id": f"L{i:04d}-{n:02d}", "customer_id": "C001",
             "ordered_at": "2025-05-01T10:00:00+08:00", "amount": 10 + n} for n in range(50)]
    ws.import_source("orders", RecordsSource.from_dicts("loop", rows))
    i += 1
    pathlib.Path(done).write_text(str(i))
"""

# Posts batches of 20 events (ids E<round>-<n>) to the intake and moves them to the fact
# store every other round, like the API and the real-time worker.
POSTER = """
import sys, time, pathlib, tierwise
from tierwise.realtime import intake
root, stop, done = sys.argv[1:4]
ws = tierwise.open(root)
i = 0
while not pathlib.Path(stop).exists():
    intake.receive(ws, "events", [
        {"event_id": f"E{i:04d}-{n:02d}", "customer_id": "C002", "type": "page_view",
         "occurred_at": "2025-05-01T10:00:00+08:00"} for n in range(20)])
    if i % 2:
        intake.flush(ws)
    i += 1
    pathlib.Path(done).write_text(str(i))
"""


def _start(script: str, root: Path, tmp: Path, name: str) -> tuple[subprocess.Popen[str], Path]:
    done = tmp / f"{name}.done"
    proc = subprocess.Popen([sys.executable, "-c", script, str(root), str(tmp / "stop"),
                             str(done)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    return proc, done


def _rounds(done: Path) -> int:
    try:
        return int(done.read_text() or 0)
    except (OSError, ValueError):
        return 0


def _wait_rounds(done: Path, at_least: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 180
    while _rounds(done) < at_least:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"{done.name}: no progress"
        time.sleep(0.05)


def _rows(ws: tierwise.Workspace, table: sa.Table, *order: str) -> list[tuple[object, ...]]:
    with ws.control.read() as conn:
        query = sa.select(table)
        if order:
            query = query.order_by(*(table.c[o] for o in order))
        return [tuple(r) for r in conn.execute(query)]


def _with_deliveries(ws: tierwise.Workspace) -> None:
    """A trigger that tags buyers: some deliveries done, the last one still pending."""
    model = automations.parse_definition("trigger", {
        "key": "tag_buyers", "on": {"event": "enter", "segment": "big"},
        "action": {"type": "tag", "tag": "backed-up"}}, "test")
    with ws.control.write() as conn:
        automations.save(conn, "trigger", model, allowed_targets=[], vocabulary=vocabulary(ws))
    ws.import_source("orders", RecordsSource.from_dicts("test", [
        {"order_id": "BIG1", "customer_id": "C003", "ordered_at": "2025-05-02T10:00:00+08:00",
         "amount": 5000}]))
    membership.evaluate_all(ws)
    channels = Channels(ws)
    try:
        dispatch.dispatch_due(ws, channels)
    finally:
        channels.close()
    ws.import_source("orders", RecordsSource.from_dicts("test", [
        {"order_id": "BIG2", "customer_id": "C002", "ordered_at": "2025-05-02T10:00:00+08:00",
         "amount": 5000}]))
    membership.evaluate_all(ws)


def _prefix_of_batches(ids: set[str], prefix: str) -> int:
    """How many whole batches ``ids`` holds, checking that they are the first ones."""
    rounds = sorted({i.split("-")[0] for i in ids if i.startswith(prefix)})
    assert rounds == [f"{prefix}{n:04d}" for n in range(len(rounds))], rounds
    return len(rounds)


def test_backup_while_importing_and_posting_restores_that_instant(
        tmp_path: Path, control_url: str) -> None:
    served = build(tmp_path, control_url)
    ws = served.ws
    _with_deliveries(ws)
    importer, imported = _start(IMPORTER, ws.root, tmp_path, "importer")
    poster, posted = _start(POSTER, ws.root, tmp_path, "poster")
    try:
        _wait_rounds(imported, 3, importer)
        _wait_rounds(posted, 3, poster)
        manifest = backup.backup(ws, tmp_path / "backup")
        _wait_rounds(imported, _rounds(imported) + 2, importer)  # they carried on
        _wait_rounds(posted, _rounds(posted) + 2, poster)
    finally:
        (tmp_path / "stop").touch()
        for proc in (importer, poster):
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    assert backup.verify(tmp_path / "backup")["problems"] == []

    target = None
    if control_url.startswith("postgresql"):
        target = _new_database(control_url)
    report = backup.restore(tmp_path / "backup", tmp_path / "restored", control_store=target,
                            keys_from=str(ws.root / "keys"))
    copy = tierwise.open(tmp_path / "restored")
    try:
        # imports: whole and the first ones, as many as the backup counted
        restored_orders = set(copy.table("orders")["order_id"].to_pylist())
        whole = _prefix_of_batches(restored_orders, "L")
        assert 1 <= whole < _rounds(imported)
        assert {i for i in restored_orders if i.startswith("L")} == \
            {f"L{r:04d}-{n:02d}" for r in range(whole) for n in range(50)}
        assert manifest["rows"]["orders"] == len(restored_orders) == report["rows"]["orders"]
        # every import in the copy is the original's, unchanged, and each writer's (the
        # import loop, the worker's flushes) are the first ones it made; on PostgreSQL two
        # writers' imports can commit in the other order of their ids, so the copy may
        # hold a later id of one without an earlier id of the other
        original_imports = {r[0]: r for r in _rows(ws, imports, "import_id")}
        restored_imports = _rows(copy, imports, "import_id")
        assert all(original_imports[r[0]] == r for r in restored_imports)
        for source in {r[2] for r in restored_imports}:
            made = [i for i, r in original_imports.items() if r[2] == source]
            kept = [r[0] for r in restored_imports if r[2] == source]
            assert kept == made[:len(kept)], source
        # events: each posted row is in the intake, and exactly the moved ones in the facts
        in_facts = set(copy.table("events")["event_id"].to_pylist())
        with copy.control.read() as conn:
            received = {r.row_key: r.moved_at for r in conn.execute(sa.select(intake))}
        posted_ids = {k for k in received if k.startswith("E")}
        assert 1 <= _prefix_of_batches(posted_ids, "E") < _rounds(posted)
        posted_in_facts = {i for i in in_facts if i and i.startswith("E")}
        # a flush imports the rows, then marks them moved (two transactions): at the instant
        # every moved row is in the facts, and the facts hold only rows that were received
        assert {k for k, moved in received.items() if moved is not None} <= posted_in_facts
        assert posted_in_facts <= posted_ids
        # the restored worker's flush brings in the rest, once each
        intake_flow.flush(copy)
        events = [i for i in copy.table("events")["event_id"].to_pylist()
                  if i and i.startswith("E")]
        assert sorted(events) == sorted(posted_ids)
        # segments, their history, snapshots: as in the original (nothing re-evaluated since)
        for table, order in ((segment_members, ("segment_key", "customer_id")),
                             (segment_history, ("history_id",)),
                             (snapshots, ("snapshot_id",))):
            assert _rows(copy, table, *order) == _rows(ws, table, *order), table.name
        snap = _rows(copy, snapshots, "snapshot_id")[-1]
        assert (copy.root / snap[3]).read_bytes() == (ws.root / snap[3]).read_bytes()
        # the audit chain: the original's first entries, then the restore's own, verifying
        restored_log = _rows(copy, audit_log, "seq")
        assert restored_log[:-1] == _rows(ws, audit_log, "seq")[:len(restored_log) - 1]
        assert restored_log[-1][3] == "restore"
        with copy.control.read() as conn:
            assert audit.verify(conn).ok
        # deliveries: delivered ones stay delivered, pending ones are held, none goes out
        sent = {r[1]: r[7] for r in _rows(ws, outbox, "outbox_id")}
        again = {r[1]: r[7] for r in _rows(copy, outbox, "outbox_id")}
        assert "delivered" in again.values() and "pending" not in again.values()
        assert report["held_deliveries"] == list(again.values()).count("held") >= 1
        assert all(again[k] == s for k, s in sent.items() if s == "delivered")
        channels = Channels(copy)
        try:
            assert dict(dispatch.dispatch_due(copy, channels)) == {}
            # the operator releases them: they go out with their idempotency keys
            assert dispatch.replay(copy, None, "held") == report["held_deliveries"]
            assert dict(dispatch.dispatch_due(copy, channels)) == {
                "delivered": report["held_deliveries"]}
        finally:
            channels.close()
        for key in ("buyers", "big", "vip_list"):
            assert membership.members_at(copy, key) == membership.members_at(ws, key)
    finally:
        copy.close()
        ws.close()


def _new_database(control_url: str) -> str:
    """An empty database next to ``control_url``'s (dropped with the server's test data)."""
    import uuid

    name = f"tw_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(control_url.replace("postgresql://", "postgresql+psycopg://", 1),
                              isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return sa.engine.make_url(control_url).set(database=name).render_as_string(
        hide_password=False)


def test_a_lost_key_stops_the_workspace_and_no_key_is_made(tmp_path: Path,
                                                           control_url: str) -> None:
    ws = build(tmp_path, control_url).ws
    assert ws.control.pii is not None and ws.control.audit is not None
    pii_id, audit_id = ws.control.pii.current_id, ws.control.audit.key_id
    ws.close()
    keys = ws.root / "keys"
    (keys / "pii.json").rename(tmp_path / "pii.json")
    with pytest.raises(WorkspaceError) as lost:
        tierwise.open(ws.root)
    message = str(lost.value)
    assert pii_id in message and str(keys / "pii.json") in message
    assert "customers.email" in message and "none was created" in message
    assert not (keys / "pii.json").exists()
    out = tw("status", "-w", str(ws.root), code=1)
    assert pii_id in out and not (keys / "pii.json").exists()
    assert pii_id in tw("pii", "new-key", "-w", str(ws.root), code=1)
    assert not (keys / "pii.json").exists()  # data is sealed: a new key could read none
    (tmp_path / "pii.json").rename(keys / "pii.json")

    (keys / "audit.json").rename(tmp_path / "audit.json")
    with pytest.raises(TierwiseError, match=f"chained with key {audit_id}.*none was created"):
        tierwise.open(ws.root)
    assert not (keys / "audit.json").exists()
    (tmp_path / "audit.json").rename(keys / "audit.json")
    with tierwise.open(ws.root) as again, again.control.read() as conn:
        assert audit.verify(conn).ok


def test_restore_needs_its_keys_and_takes_them_sealed(tmp_path: Path, control_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ws = build(tmp_path, control_url).ws
    phrase = "correct horse battery staple"
    with pytest.raises(WorkspaceError, match="passphrase of at least"):
        backup.backup(ws, tmp_path / "short", include_keys=True, passphrase="short")
    assert not (tmp_path / "short").exists()
    made = backup.backup(ws, tmp_path / "with-keys", include_keys=True, passphrase=phrase)
    plain = backup.backup(ws, tmp_path / "plain")
    assert made["keys"]["included"] and not plain["keys"]["included"]
    assert not (tmp_path / "plain" / backup.KEYS_FILE).exists()
    assert json.loads((tmp_path / "with-keys" / backup.KEYS_FILE).read_bytes())["kdf"] \
        == "scrypt"
    assert ws.control.pii is not None
    secret = ws.control.pii.exported()[0]
    assert secret not in (tmp_path / "with-keys" / backup.KEYS_FILE).read_text()

    def target() -> str | None:
        return _new_database(control_url) if control_url.startswith("postgresql") else None

    with pytest.raises(WorkspaceError) as refused:
        backup.restore(tmp_path / "plain", tmp_path / "r1", control_store=target())
    text = str(refused.value)
    assert plain["keys"]["pii"][0] in text and plain["keys"]["audit"] in text
    assert "Nothing was restored" in text and not (tmp_path / "r1").exists()
    with pytest.raises(WorkspaceError, match="wrong passphrase"):
        backup.restore(tmp_path / "with-keys", tmp_path / "r2", control_store=target(),
                       passphrase="not the right one")
    assert not (tmp_path / "r2").exists()
    report = backup.restore(tmp_path / "with-keys", tmp_path / "r3", control_store=target(),
                            passphrase=phrase)
    assert report["rows"]["customers"] == made["rows"]["customers"]
    with tierwise.open(tmp_path / "r3") as copy:
        found = copy.control.pii
        assert found is not None and found.current_id == ws.control.pii.current_id
        assert (copy.root / "keys" / "pii.json").stat().st_mode & 0o777 == 0o600
        # personal data reads back
        assert sorted(copy.customers()["email"].dropna()) == sorted(
            ws.customers()["email"].dropna())
    # with the keys in the environment, as production keeps them
    monkeypatch.setenv("TIERWISE_PII_KEY", ws.control.pii.exported()[0])
    assert ws.control.audit is not None
    import base64
    monkeypatch.setenv("TIERWISE_AUDIT_KEY", base64.b64encode(ws.control.audit.key).decode())
    backup.restore(tmp_path / "plain", tmp_path / "r4", control_store=target())
    with tierwise.open(tmp_path / "r4") as copy:
        assert copy.count("orders") == plain["rows"]["orders"]
    ws.close()


def test_incremental_backups_link_files_and_verify_finds_damage(ws: tierwise.Workspace,
                                                                tmp_path: Path) -> None:
    ws.import_source("orders", RecordsSource.from_dicts("t", [
        {"order_id": f"O{i}", "customer_id": f"C{i % 7}", "ordered_at": "2025-05-01",
         "amount": i} for i in range(300)]), unknown_customers="create")
    ws.compute()
    first = backup.backup(ws, tmp_path / "b1")
    ws.import_source("orders", RecordsSource.from_dicts("t", [
        {"order_id": "NEW", "customer_id": "C1", "ordered_at": "2025-05-02", "amount": 1}]))
    second = backup.backup(ws, tmp_path / "b2", base=str(tmp_path / "b1"))
    reused = [f for f in second["files"] if f.get("reused")]
    assert reused and second["reused_bytes"] == sum(f["bytes"] for f in reused)
    for f in reused:
        assert (tmp_path / "b1" / f["path"]).stat().st_ino == \
            (tmp_path / "b2" / f["path"]).stat().st_ino
    assert second["rows"]["orders"] == first["rows"]["orders"] + 1
    assert backup.verify(tmp_path / "b2")["problems"] == []
    with pytest.raises(WorkspaceError, match="not empty"):
        backup.backup(ws, tmp_path / "b2")
    # damage: a changed byte, a missing file
    victim = next(f for f in second["files"] if f["path"].startswith("files/facts/"))
    path = tmp_path / "b2" / victim["path"]
    path.unlink()  # linked: write a changed copy instead of changing b1's file too
    path.write_bytes(b"x" * victim["bytes"])
    (tmp_path / "b2" / "files" / "tierwise.toml").unlink()
    (tmp_path / "b2" / "files" / "extra").symlink_to("/etc/hostname")
    problems = backup.verify(tmp_path / "b2")["problems"]
    assert "files/extra: not in the manifest" in problems
    assert any(victim["path"] in p and "sha256" in p for p in problems)
    assert any("tierwise.toml: missing" in p for p in problems)
    with pytest.raises(WorkspaceError, match="damaged, nothing was restored"):
        backup.restore(tmp_path / "b2", tmp_path / "r", keys_from=str(ws.root / "keys"))
    assert not (tmp_path / "r").exists()
    assert backup.verify(tmp_path / "b1")["problems"] == []  # the base is untouched
    with pytest.raises(WorkspaceError, match="leave out --control-store"):
        backup.restore(tmp_path / "b1", tmp_path / "r", control_store="sqlite:///elsewhere.db",
                       keys_from=str(ws.root / "keys"))


def test_backup_and_restore_from_the_command_line(ws: tierwise.Workspace,
                                                  tmp_path: Path) -> None:
    ws.import_source("orders", RecordsSource.from_dicts("t", [
        {"order_id": f"O{i}", "customer_id": f"C{i % 3}", "ordered_at": "2025-05-01",
         "amount": i} for i in range(30)]), unknown_customers="create")
    root = str(ws.root)
    out = tw("backup", str(tmp_path / "b"), "-w", root)
    assert "30 orders" in out and "a restore needs PII key" in out
    assert "backup intact" in tw("backup", "verify", str(tmp_path / "b"))
    refused = tw("restore", str(tmp_path / "b"), str(tmp_path / "r"), code=1)
    assert "needs PII key" in refused and not (tmp_path / "r").exists()
    out = tw("restore", str(tmp_path / "b"), str(tmp_path / "r"), "--keys-from",
             str(ws.root / "keys"))
    assert "30 orders" in out and "chain verified" in out
    assert "30" in tw("status", "-w", str(tmp_path / "r"))
    with ws.control.read() as conn:
        assert [e["action"] for e in audit.entries(conn, action="backup")] == ["backup"]
    assert pc.sum(tierwise.open(tmp_path / "r").table("orders")["amount"]).as_py() == 435


def test_a_damaged_or_forged_manifest_is_refused(ws: tierwise.Workspace,
                                                 tmp_path: Path) -> None:
    backup.backup(ws, tmp_path / "b")
    manifest_path = tmp_path / "b" / backup.MANIFEST
    original = json.loads(manifest_path.read_text())

    def forge(change: Callable[[dict[str, Any]], object]) -> None:
        forged = json.loads(json.dumps(original))
        change(forged)
        manifest_path.write_text(json.dumps(forged))

    for change, said in (
            (lambda m: m.pop("files"), "'files' is missing"),
            (lambda m: m["control_store"].update(file="../../etc/passwd"), "control_store"),
            (lambda m: m["keys"].pop("audit"), "keys.audit"),
    ):
        forge(change)
        with pytest.raises(WorkspaceError, match=said):
            backup.verify(tmp_path / "b")
        with pytest.raises(WorkspaceError, match=said):
            backup.restore(tmp_path / "b", tmp_path / "r", keys_from=str(ws.root / "keys"))
        assert not (tmp_path / "r").exists()
    forge(lambda m: m["files"].append({"path": "../outside", "bytes": 1, "sha256": "x"}))
    assert backup.verify(tmp_path / "b")["problems"] == ["../outside: a path outside the backup"]
    with pytest.raises(WorkspaceError, match="damaged, nothing was restored"):
        backup.restore(tmp_path / "b", tmp_path / "r", keys_from=str(ws.root / "keys"))
    manifest_path.write_text("{not json")
    with pytest.raises(WorkspaceError, match="not JSON"):
        backup.restore(tmp_path / "b", tmp_path / "r", keys_from=str(ws.root / "keys"))
    assert not (tmp_path / "r").exists()
