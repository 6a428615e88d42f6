"""PII key rotation: every encrypted value re-encrypted under a new key, in one transaction."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tierwise.store import channel_secrets, cleaning_log, customer_mirror, merges
from tierwise.store import customers as customer_store
from tierwise.store.sealing import (
    ENV_KEY,
    KeyRing,
    new_key,
    write_key_file,
)
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
    counts = {"customers": 0, "cleaning_log": 0, "merges": 0, "channel_secrets": 0}
    try:
        with ws.control.write() as conn:
            counts["customers"] = customer_store.reseal(conn, ring)
            counts["cleaning_log"] = cleaning_log.reseal(conn, ring)
            counts["merges"] = merges.reseal(conn, ring)
            counts["channel_secrets"] = channel_secrets.reseal(conn, ring)
    except BaseException:
        ws.control.pii = before
        raise
    if drop_old and not os.environ.get(ENV_KEY):
        current = json.loads(key_file.read_text(encoding="utf-8"))["keys"][0]
        write_key_file(key_file, [current])
        ws.control.pii = KeyRing.load(key_file)
        ws.control.pii.sensitive_key = ring.sensitive_key
    customer_mirror.invalidate(ws.root, files=True)  # sealed with the old key
    ws.record_key_ids("system:pii_key_rotate")
    return {"key_id": ring.current_id, **counts, "key_source": _where(key_file)}


def _where(path: Path) -> str:
    return f"${ENV_KEY}" if os.environ.get(ENV_KEY) else str(path)
