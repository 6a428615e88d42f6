"""Personal data at rest, key rotation, the audit chain, and the admin CLI."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.conftest import CUSTOMERS_CSV, write
from tests.test_cli import tw

import tierwise
from tierwise.definitions.personal_data import mask
from tierwise.security import privacy
from tierwise.store import audit, audit_key
from tierwise.store import customers as customer_store
from tierwise.store.sealing import ENV_KEY, KeyRing, PiiKeyError, new_key
from tierwise.store.tables import audit_log

PLAIN = ["13800138000", "张三", "李四"]


def _control_bytes(ws: tierwise.Workspace) -> bytes:
    ws.control.dispose()  # let SQLite checkpoint; the -wal file is read too
    return b"".join(p.read_bytes() for p in ws.root.glob("control.db*"))


def test_pii_is_encrypted_in_the_control_store(loaded: tierwise.Workspace) -> None:
    raw = _control_bytes(loaded)
    for text in PLAIN:
        assert text.encode() not in raw
    people = loaded.customers().set_index("customer_id")
    assert people.loc["C001", "name"] == "张三"
    assert people.loc["C001", "phone"] == "+8613800138000"
    with loaded.control.read() as conn:
        assert customer_store.find(conn, "phone", "+8613800138000") == ["C001"]
        assert customer_store.find(conn, "name", "李四") == ["C002"]
        stored = conn.execute(sa.text("SELECT name FROM customers WHERE customer_id = 'C001'")
                              ).scalar()
    assert stored.startswith("pii1:")


def test_values_are_bound_to_their_column() -> None:
    ring = KeyRing(base64.b64decode(new_key()))
    sealed = ring.encrypt("email", "a@b.cn")
    assert ring.decrypt("email", sealed) == "a@b.cn"
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidTag
        ring.decrypt("phone", sealed)
    assert ring.encrypt("email", "a@b.cn") != sealed  # a fresh nonce every time
    assert ring.search_hash("email", " A@B.cn ") == ring.search_hash("email", "a@b.cn")


def test_masks() -> None:
    assert mask("phone", "+8613812345678") == "138****5678"
    assert mask("phone", "+14155550100") == "*******0100"
    assert mask("email", "zhang@example.com") == "z***@example.com"
    assert mask("name", "张三") == "张*"
    assert mask("name", "Erin Ode") == "E***"
    assert mask("address", "上海市浦东新区世纪大道100号") == "上海市浦东新***"


def test_key_rotation(loaded: tierwise.Workspace) -> None:
    key_file = loaded.root / "keys" / "pii.json"
    old = json.loads(key_file.read_text())["keys"]
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    out = tw("pii", "rotate-key", "-w", str(loaded.root))
    assert "re-encrypted 3 customers" in out
    new = json.loads(key_file.read_text())["keys"]
    assert len(new) == 1 and new[0] not in old
    ws = tierwise.open(loaded.root)
    assert ws.customers().set_index("customer_id").loc["C001", "name"] == "张三"
    with ws.control.read() as conn:
        assert customer_store.find(conn, "phone", "+8613800138000") == ["C001"]
    ws.close()
    # The old key alone can no longer read anything.
    key_file.write_text(json.dumps({"keys": old}))
    ws = tierwise.open(loaded.root)
    with pytest.raises(PiiKeyError, match="not in the key ring"):
        ws.customers()
    ws.close()


def test_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEY, new_key())
    monkeypatch.setenv(audit_key.ENV_KEY, new_key())  # both keys outside the workspace
    ws = tierwise.init(tmp_path / "ws")
    ws.import_file("customers", write(tmp_path / "c.csv", CUSTOMERS_CSV))
    assert not (ws.root / "keys").exists()
    assert ws.customers().set_index("customer_id").loc["C002", "name"] == "李四"
    ws.close()
    monkeypatch.setenv(ENV_KEY, "too-short")
    with pytest.raises(PiiKeyError, match="base64"):
        tierwise.open(tmp_path / "ws")


# -- audit -------------------------------------------------------------------------------

def _entries(ws: tierwise.Workspace, n: int) -> None:
    with ws.control.write() as conn:
        for i in range(n):
            audit.append(conn, "user:test", "segment_save", f"segment:s{i}", {"i": i}, "::1")


def _force(ws: tierwise.Workspace, sql: str) -> None:
    """What someone with raw database access could do: the triggers go first."""
    with ws.control.write() as conn:
        if ws.control.dialect == "postgresql":
            conn.execute(sa.text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change"))
        else:
            conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_log_no_update"))
            conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
        conn.execute(sa.text(sql))


def test_audit_chain_detects_edits_and_deletions(any_ws: tierwise.Workspace) -> None:
    ws = any_ws
    _entries(ws, 5)  # after the entry of init that names the keys
    with ws.control.read() as conn:
        head = audit.verify(conn)
    assert head.ok and head.entries == 6
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), ws.control.write() as conn:
        conn.execute(audit_log.update().values(actor="user:someone-else"))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), ws.control.write() as conn:
        conn.execute(audit_log.delete())
    _force(ws, "UPDATE audit_log SET detail = '{\"i\": 99}' WHERE seq = 3")
    with ws.control.read() as conn:
        broken = audit.verify(conn)
    assert not broken.ok and broken.problem == "entry 3 was changed after it was written"
    _force(ws, "UPDATE audit_log SET detail = '{\"i\": 2}' WHERE seq = 3")
    _force(ws, "DELETE FROM audit_log WHERE seq = 2")
    with ws.control.read() as conn:
        assert audit.verify(conn).problem == "entry 2 is missing (next is 3)"


def test_audit_verify_cli_and_truncation(ws: tierwise.Workspace) -> None:
    _entries(ws, 4)
    out = tw("audit", "verify", "-w", str(ws.root))
    head = out.strip().rsplit(" ", 1)[1]
    assert head.startswith("5:")
    _force(ws, "DELETE FROM audit_log WHERE seq = 5")
    tw("audit", "verify", "-w", str(ws.root))  # a shorter chain is still a chain …
    out = tw("audit", "verify", "--expect-head", head, "-w", str(ws.root), code=1)
    assert "cut off the end" in out  # … but not the one recorded


def _rewrite_chain(ws: tierwise.Workspace, key: audit_key.AuditKey | None) -> None:
    """What someone with write access to the control store could do: change an entry and
    recompute every hash after it, with the key they have (none, or a key of their own)."""
    with ws.control.read() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()
    prev = audit.GENESIS
    for r in rows:
        detail = '{"i": 99}' if r.seq == 2 else r.detail
        digest = audit._digest(key, prev, r.seq, r.at, r.actor, r.action, r.target, detail,
                               r.client)
        _force(ws, f"UPDATE audit_log SET detail = '{detail}', prev_hash = '{prev}', "
               f"hash = '{digest}' WHERE seq = {r.seq}")
        prev = digest


def test_the_chain_is_keyed_outside_the_control_store(any_ws: tierwise.Workspace) -> None:
    ws = any_ws
    key_file = ws.root / "keys" / "audit.json"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert json.loads(key_file.read_text())["keyed_from"] == 1
    _entries(ws, 4)
    for forged_with in (None, audit_key.AuditKey(b"k" * 32, 1)):
        _rewrite_chain(ws, forged_with)
        with ws.control.read() as conn:
            found = audit.verify(conn)
        assert not found.ok and found.problem == "entry 1 was changed after it was written"
    _rewrite_chain(ws, ws.control.audit)  # with the real key, it would verify
    with ws.control.read() as conn:
        assert audit.verify(conn).ok
    assert ws.control.audit is not None
    ref = privacy.customer_ref(ws, "C000001")
    assert ref.startswith("hmac:") and hashlib.sha256(b"C000001").hexdigest()[:16] not in ref


def test_entries_from_before_the_key_stay_verifiable(ws: tierwise.Workspace) -> None:
    """A workspace whose log was written before the chain was keyed: the old entries keep
    their SHA-256 links, every later one is keyed, and none after may be unkeyed."""
    key = ws.control.audit
    _force(ws, "DELETE FROM audit_log")  # an older version of tierwise wrote no init entry
    ws.control.audit = None  # and three entries without a key
    _entries(ws, 3)
    (ws.root / "keys" / "audit.json").unlink()
    ws.close()
    reopened = tierwise.open(ws.root)
    assert reopened.control.audit is not None and reopened.control.audit != key
    assert reopened.control.audit.keyed_from == 4
    _entries(reopened, 2)
    with reopened.control.read() as conn:
        assert audit.verify(conn).ok and audit.verify(conn).entries == 5
    # entry 2 changed and every link after it recomputed without the key: the unkeyed part
    # cannot tell, the first keyed entry can
    _rewrite_chain(reopened, None)
    with reopened.control.read() as conn:
        assert audit.verify(conn).problem == "entry 4 was changed after it was written"
    reopened.close()


def test_cli_changes_are_audited_with_the_os_user(loaded: tierwise.Workspace,
                                                 tmp_path: Path) -> None:
    root = str(loaded.root)
    write(tmp_path / "more.csv", "customer_id,城市\nC009,杭州\n")
    tw("import", "customers", str(tmp_path / "more.csv"), "-w", root)
    tw("--actor", "ann", "tiers", "apply", "--method", "pareto", "--cuts", "0.5,0.8,0.95",
       "-w", root)
    tw("rfm", "settings", "--bins", "3", "-w", root)
    tw("segments", "new", "big", "--rule", "SUM(orders.amount) > 1000", "-w", root)
    tw("segments", "apply", "-w", root)
    folder = tmp_path / "triggers"
    folder.mkdir()
    (folder / "tag.yaml").write_text("key: tag_big\non: {event: enter, segment: big}\n"
                                     "action: {type: tag, tag: big}\n", encoding="utf-8")
    tw("triggers", "apply", str(folder), "-w", root)
    with loaded.control.read() as conn:
        listed = audit.entries(conn, limit=50)
        assert audit.verify(conn).ok
    found = {e["action"]: e for e in listed}
    for action in ("import", "settings_save", "segment_save", "trigger_save"):
        assert action in found, action
        assert found[action]["actor"].startswith("cli:") and "unknown" not in \
            found[action]["actor"]
    assert found["import"]["detail"]["rows"] == 1
    tiers = [e for e in listed if e["target"] == "settings:tiers"]
    assert tiers and tiers[0]["actor"].endswith(" as ann")


# -- the admin CLI -----------------------------------------------------------------------

def test_users_and_keys_cli(ws: tierwise.Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    root = str(ws.root)
    monkeypatch.setenv("TIERWISE_PASSWORD", "correct horse battery")
    assert "added ann (analyst)" in tw("users", "add", "ann", "--role", "analyst", "-w", root)
    tw("users", "add", "ann", "--role", "analyst", "-w", root, code=1)
    monkeypatch.setenv("TIERWISE_PASSWORD", "short")
    tw("users", "add", "bob", "--role", "viewer", "-w", root, code=1)
    assert "ann" in tw("users", "list", "-w", root)
    tw("users", "disable", "ann", "-w", root)
    out = tw("keys", "create", "etl", "--role", "analyst", "--scope", "imports:write",
             "-w", root)
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("tw_")
    key_id = secret.split("_")[1]
    tw("keys", "create", "bad", "--role", "viewer", "--scope", "users:admin", "-w", root,
       code=1)
    assert key_id in tw("keys", "list", "-w", root)
    tw("keys", "revoke", key_id, "-w", root)
    tw("keys", "revoke", key_id, "-w", root, code=1)
    actions = [e["action"] for e in reversed(_audit(ws))]
    assert actions == ["workspace_keys", "user_add", "user_change", "key_create",
                       "key_revoke"]


def _audit(ws: tierwise.Workspace) -> list[dict[str, object]]:
    with ws.control.read() as conn:
        return audit.entries(conn)
