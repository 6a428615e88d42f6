"""Random secrets a workspace keeps as files under ``keys/`` (the webhook signing secret,
the unsubscribe links' key): created on first use, readable by the owner only, the same
for every process that asks at once."""

from __future__ import annotations

import contextlib
import os
import secrets

from tierwise.workspace import Workspace


def secret(ws: Workspace, filename: str) -> bytes:
    """The secret in ``keys/<filename>``, made on first use."""
    path = ws.root / "keys" / filename
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{secrets.token_hex(6)}.key")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # the first writer wins; a concurrent one reads its key
        tmp.unlink()
    return path.read_text().strip().encode()
