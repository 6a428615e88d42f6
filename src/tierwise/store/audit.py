"""The audit log: append-only, chained with a keyed hash.

Each entry's hash is HMAC-SHA256, under the audit key kept outside the control store
(``security.audit_key``), over the previous entry's hash and the entry's own content, so
changing or deleting any entry breaks the chain from there on, and whoever can write the
control store but not read the key cannot write an entry that verifies. Entries written
before the chain was keyed (before the key's ``keyed_from``) are plain SHA-256 links.
Database triggers refuse UPDATE and DELETE on the table. Cutting entries off the end leaves
a valid shorter chain: ``verify`` prints the head (sequence number and hash) so it can be
recorded elsewhere (anchored) and checked later with ``expect_head``.

Entries name what was touched (a customer id, a segment key, field names) but never PII
values.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tierwise.store.audit_key import ENV_KEY as ENV_AUDIT_KEY
from tierwise.store.audit_key import AuditKey, AuditKeyError
from tierwise.store.audit_key import load as load_audit_key
from tierwise.store.control import advisory_lock, as_utc, utcnow
from tierwise.store.tables import audit_log

GENESIS = "0" * 64
log = logging.getLogger("tierwise.audit")


def _digest(key: AuditKey | None, prev_hash: str, seq: int, at: datetime, actor: str,
            action: str, target: str | None, detail: str, client: str | None) -> str:
    body = json.dumps([seq, as_utc(at).isoformat(), actor, action, target, detail,  # type: ignore[union-attr]
                       client], ensure_ascii=False, separators=(",", ":"))
    text = f"{prev_hash}|{body}"
    if key is not None and seq >= key.keyed_from:
        return key.digest(text)
    return hashlib.sha256(text.encode()).hexdigest()


def append(conn: sa.Connection, actor: str, action: str, target: str | None = None,
           detail: dict[str, Any] | None = None, client: str | None = None) -> int:
    """Add an entry inside the caller's transaction (it commits with the change it records)."""
    advisory_lock(conn, "audit_log")
    last = conn.execute(sa.select(audit_log.c.seq, audit_log.c.hash)
                        .order_by(audit_log.c.seq.desc()).limit(1)).first()
    seq = (last.seq + 1) if last else 1
    prev = last.hash if last else GENESIS
    at = utcnow()
    text = json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, default=str)
    conn.execute(audit_log.insert().values(
        seq=seq, at=at, actor=actor, action=action, target=target, detail=text, client=client,
        prev_hash=prev, hash=_digest(conn.info.get("audit"), prev, seq, at, actor, action,
                                     target, text, client)))
    return seq


def next_seq(conn: sa.Connection) -> int:
    """The sequence number the next entry will take."""
    return int(conn.execute(sa.select(sa.func.max(audit_log.c.seq))).scalar() or 0) + 1


#: The entry that records which keys a workspace was created with (and a rotation's).
KEYS_ACTION = "workspace_keys"


def open_key(conn: sa.Connection, path: Path, create: bool = False) -> AuditKey:
    """The workspace's audit key. Missing, it is created (keying the chain from the next
    entry on) when ``create`` (``tierwise init``) or when no entry was ever chained with a
    key (a workspace from before the chain was keyed: nothing is lost); a chain already keyed
    with a key that cannot be found is ``AuditKeyError``, and no key is created."""
    if create or os.environ.get(ENV_AUDIT_KEY) or path.exists():
        return load_audit_key(path, next_seq(conn))
    keyed = _keyed_entries(conn)
    if keyed is None:
        log.warning("the audit log was not keyed yet: created %s, which keys it from entry "
                    "%d on", path, next_seq(conn))
        return load_audit_key(path, next_seq(conn))
    first, last = keyed
    known = recorded_key_ids(conn).get("audit_key")
    which = f"key {known}" if known else "its key"
    raise AuditKeyError(
        f"the audit log's entries {first}–{last} were chained with {which}, which is not "
        f"here: ${ENV_AUDIT_KEY} is not set and {path} does not exist. Put the key file "
        f"back from where you keep it (or restore a backup made with --include-keys), "
        f"or set ${ENV_AUDIT_KEY}. A new key would make the log fail verification, so "
        "none was created.",
        zh=f"审计日志第 {first}–{last} 条用 {which} 串联，但它不在这里：没有设置 ${ENV_AUDIT_KEY}，"
        f"{path} 也不存在。请从保存的地方放回密钥文件（或恢复一个用 --include-keys 做的备份），或设"
        f"置 ${ENV_AUDIT_KEY}。新密钥会让日志无法通过校验，所以没有创建。")


def _keyed_entries(conn: sa.Connection) -> tuple[int, int] | None:
    """The first and last entries chained with a key, or None when no entry was: an
    entry whose hash is not the plain SHA-256 link was keyed."""
    last = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(1)).first()
    if last is None or _digest(None, last.prev_hash, last.seq, last.at, last.actor,
                               last.action, last.target, last.detail,
                               last.client) == last.hash:
        return None
    first = 1
    for r in conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)):
        if _digest(None, r.prev_hash, r.seq, r.at, r.actor, r.action, r.target, r.detail,
                   r.client) != r.hash:
            first = r.seq
            break
    return first, last.seq


def recorded_key_ids(conn: sa.Connection) -> dict[str, Any]:
    """The key ids the newest ``workspace_keys`` entry recorded (``pii_keys``,
    ``audit_key``), or {}."""
    row = conn.execute(sa.select(audit_log.c.detail).where(audit_log.c.action == KEYS_ACTION)
                       .order_by(audit_log.c.seq.desc()).limit(1)).first()
    return json.loads(row.detail) if row is not None else {}


@dataclass
class Verification:
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    problem: str | None = None


def verify(conn: sa.Connection, expect_head: tuple[int, str] | None = None) -> Verification:
    """Walk the chain; the first broken link (edit, deletion, reordering, an entry written
    without the key) is reported."""
    key: AuditKey | None = conn.info.get("audit")
    prev, expected_seq, count = GENESIS, 1, 0
    result = conn.execution_options(yield_per=10_000).execute(
        sa.select(audit_log).order_by(audit_log.c.seq))
    for r in result:
        count += 1
        if r.seq != expected_seq:
            return Verification(False, count, r.seq, prev,
                                f"entry {expected_seq} is missing (next is {r.seq})")
        if r.prev_hash != prev:
            return Verification(False, count, r.seq, prev,
                                f"entry {r.seq} does not link to entry {r.seq - 1}")
        digest = _digest(key, prev, r.seq, r.at, r.actor, r.action, r.target, r.detail,
                         r.client)
        if not hmac.compare_digest(digest, r.hash):
            return Verification(False, count, r.seq, prev,
                                f"entry {r.seq} was changed after it was written")
        prev, expected_seq = r.hash, r.seq + 1
    head = Verification(True, count, expected_seq - 1, prev)
    if expect_head is not None:
        seq, digest = expect_head
        if head.head_seq < seq:
            return Verification(False, count, head.head_seq, prev,
                                f"the log ends at entry {head.head_seq} but entry {seq} was "
                                "recorded: entries were cut off the end")
        row = conn.execute(sa.select(audit_log.c.hash).where(audit_log.c.seq == seq)).first()
        if row is None or row.hash != digest:
            return Verification(False, count, head.head_seq, prev,
                                f"entry {seq} does not have the recorded hash")
    return head


def entries(conn: sa.Connection, *, limit: int = 100, before: int | None = None,
            actor: str | None = None, action: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit)
    if before is not None:
        query = query.where(audit_log.c.seq < before)
    if actor:
        query = query.where(audit_log.c.actor == actor)
    if action:
        query = query.where(audit_log.c.action == action)
    out = []
    for r in conn.execute(query):
        item = dict(r._mapping)
        item["at"] = as_utc(item["at"])
        item["detail"] = json.loads(item["detail"])
        out.append(item)
    return out
