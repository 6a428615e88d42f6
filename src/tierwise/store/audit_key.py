"""The key of the audit chain, kept outside the control store.

Entries are chained with HMAC-SHA256 under this key: whoever can write the control store but
not read the key (kept like the PII key: ``$TIERWISE_AUDIT_KEY`` or the workspace's
``keys/audit.json``, mode 0600, outside the workspace in production) cannot write entries
that verify. The key file also records ``keyed_from``, the first entry chained with it:
entries before it (written before the chain was keyed) are checked as SHA-256 links, and no
entry from it on may be one. An erased customer is recorded under a keyed hash of their id,
which cannot be reversed by trying likely ids without the key.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from tierwise.errors import TierwiseError

ENV_KEY = "TIERWISE_AUDIT_KEY"
ENV_KEYED_FROM = "TIERWISE_AUDIT_KEYED_FROM"


class AuditKeyError(TierwiseError):
    """The audit key is missing or malformed."""


@dataclass(frozen=True)
class AuditKey:
    key: bytes
    #: The first audit entry chained under this key.
    keyed_from: int
    source: str = "memory"

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"tierwise-audit-key-id" + self.key).hexdigest()[:12]

    def digest(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def pseudonym(self, value: str) -> str:
        """A keyed hash of ``value`` (an erased customer's id) for the log."""
        return "hmac:" + hmac.new(self.key, f"pseudonym|{value}".encode(),
                                  hashlib.sha256).hexdigest()[:24]


def _decode(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (ValueError, TypeError):
        raise AuditKeyError(f"{where}: the audit key is base64 of 32 random bytes",
                            zh=f"{where}：审计密钥应为 32 个随机字节的 base64") from None
    if len(key) != 32:
        raise AuditKeyError(f"{where}: the audit key is 32 bytes, got {len(key)}",
                            zh=f"{where}：审计密钥为 32 字节，实际为 {len(key)}")
    return key


def from_environment() -> AuditKey | None:
    """The key ``$TIERWISE_AUDIT_KEY`` gives (keyed from ``$TIERWISE_AUDIT_KEYED_FROM``), if
    set."""
    env = os.environ.get(ENV_KEY)
    if not env:
        return None
    start = os.environ.get(ENV_KEYED_FROM, "1")
    if not start.isdigit() or int(start) < 1:
        raise AuditKeyError(f"${ENV_KEYED_FROM} = {start!r}: expected an entry number",
                            zh=f"${ENV_KEYED_FROM} = {start!r}：应为条目编号")
    return AuditKey(_decode(env, f"${ENV_KEY}"), int(start), f"${ENV_KEY}")


def load(path: Path, next_seq: int | None = None) -> AuditKey:
    """The audit key from ``$TIERWISE_AUDIT_KEY`` (with ``$TIERWISE_AUDIT_KEYED_FROM``,
    default 1) or ``path``; without either, a new key file is created that keys the chain
    from ``next_seq`` on (the entry after the last one written), or fails when
    ``next_seq`` is None."""
    from_env = from_environment()
    if from_env is not None:
        return from_env
    if not path.exists():
        if next_seq is None:
            raise AuditKeyError(f"no audit key: set ${ENV_KEY} or restore {path}",
                                zh=f"没有审计密钥：请设置 ${ENV_KEY} 或恢复 {path}")
        _create(path, next_seq)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return AuditKey(_decode(data["key"], str(path)), int(data["keyed_from"]), str(path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, AuditKeyError):
            raise
        raise AuditKeyError(f"{path}: expected JSON {{\"key\": …, \"keyed_from\": …}} "
                            f"({exc})",
                            zh=f"{path}：应为 JSON {{\"key\": …, \"keyed_from\": …}}"
                            f"（{exc}）") from None


def _create(path: Path, keyed_from: int) -> None:
    """Write a new key file readable by its owner only; a concurrent creator's file wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"key": base64.b64encode(secrets.token_bytes(32)).decode(),
                   "keyed_from": keyed_from}, fh)
    with contextlib.suppress(FileExistsError):
        os.link(tmp, path)
    tmp.unlink()
