"""PII key rotation: every encrypted value re-encrypted under a new key, in one transaction."""

from __future__ import annotations

import json
import os
from pathlib import Path

import sqlalchemy as sa

from tierwise.definitions.personal_data import PII_COLUMNS
from tierwise.store import customer_mirror
from tierwise.store.sealing import (
    ATTRIBUTES,
    ENV_KEY,
    HASHED_COLUMNS,
    KeyRing,
    new_key,
    write_key_file,
)
from tierwise.store.tables import cleaning_log, customers
from tierwise.workspace import Workspace

CHUNK = 5_000


def rotate(ws: Workspace, drop_old: bool = True) -> dict[str, object]:
    """Re-encrypt customers' PII and the cleaning log under a new current key.

    With a key file, a new key is generated and put first (the old ones stay readable until
    everything is re-encrypted, then ``drop_old`` removes them). With ``$TIERWISE_PII_KEY``, set
    the new key there and the old one in ``$TIERWISE_PII_OLD_KEYS`` before running this.
    """
    key_file = ws.pii_key_path(ws.root, ws.config)
    if os.environ.get(ENV_KEY):
        ring = KeyRing.load(key_file)
    else:
        old = json.loads(key_file.read_text(encoding="utf-8"))["keys"] if key_file.exists() \
            else []
        write_key_file(key_file, [new_key(), *old])
        ring = KeyRing.load(key_file)
    before = ws.control.pii
    ring.sensitive_key = before.sensitive_key if before is not None else None
    ws.control.pii = ring
    counts = {"customers": 0, "cleaning_log": 0}
    try:
        with ws.control.write() as conn:
            counts["customers"] = _customers(conn, ring)
            counts["cleaning_log"] = _cleaning_log(conn, ring)
    except BaseException:
        ws.control.pii = before
        raise
    if drop_old and not os.environ.get(ENV_KEY):
        current = json.loads(key_file.read_text(encoding="utf-8"))["keys"][0]
        write_key_file(key_file, [current])
        ws.control.pii = KeyRing.load(key_file)
        ws.control.pii.sensitive_key = ring.sensitive_key
    customer_mirror.invalidate(ws.root, files=True)  # sealed with the old key
    return {"key_id": ring.current_id, **counts, "key_source": _where(key_file)}


def _where(path: Path) -> str:
    return f"${ENV_KEY}" if os.environ.get(ENV_KEY) else str(path)


def _customers(conn: sa.Connection, ring: KeyRing) -> int:
    sealed = (*PII_COLUMNS, ATTRIBUTES)
    cols = [customers.c.customer_id, *[customers.c[c] for c in sealed]]
    rows = conn.execute(sa.select(*cols)).all()
    stmt = customers.update().where(customers.c.customer_id == sa.bindparam("_id")).values(
        {c: sa.bindparam(c) for c in (*sealed, *HASHED_COLUMNS.values())})
    batch: list[dict[str, object]] = []
    for r in rows:
        plain = ring.reveal_row({c: getattr(r, c) for c in sealed})
        row: dict[str, object] = {"_id": r.customer_id, **plain}
        ring.protect_row(row)
        batch.append(row)
        if len(batch) >= CHUNK:
            conn.execute(stmt, batch)
            batch = []
    if batch:
        conn.execute(stmt, batch)
    return len(rows)


def _cleaning_log(conn: sa.Connection, ring: KeyRing) -> int:
    rows = conn.execute(sa.select(cleaning_log.c.log_id, cleaning_log.c.column_name,
                                  cleaning_log.c.before, cleaning_log.c.after)
                        .where(cleaning_log.c.column_name.in_(PII_COLUMNS))).all()
    stmt = cleaning_log.update().where(cleaning_log.c.log_id == sa.bindparam("_id")).values(
        before=sa.bindparam("b"), after=sa.bindparam("a"))
    batch = [{"_id": r.log_id,
              "b": ring.encrypt(r.column_name, ring.decrypt(r.column_name, r.before)),
              "a": ring.encrypt(r.column_name, ring.decrypt(r.column_name, r.after))}
             for r in rows]
    for start in range(0, len(batch), CHUNK):
        conn.execute(stmt, batch[start:start + CHUNK])
    return len(batch)
