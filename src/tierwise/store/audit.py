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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tierwise.store.audit_key import AuditKey
from tierwise.store.audit_key import load as load_audit_key
from tierwise.store.control import advisory_lock, as_utc, utcnow
from tierwise.store.tables import audit_log

GENESIS = "0" * 64


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


def open_key(conn: sa.Connection, path: Path) -> AuditKey:
    """The workspace's audit key (created on first use, keying the chain from the next
    entry on)."""
    return load_audit_key(path, next_seq(conn))


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
