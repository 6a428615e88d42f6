"""Personal data at rest: encrypted columns, keyed search hashes, masking.

Name, e-mail, phone and address are stored in the control store as
``pii1:<key id>:<base64(nonce ‖ AES-256-GCM ciphertext)>`` with the column name as associated
data, so a value copied into another column does not decrypt. Values without the prefix are
read as plain text: a workspace created before encryption keeps working and
``tierwise pii rotate-key`` encrypts them.

Keys come from ``$TIERWISE_PII_KEY`` (base64 of 32 bytes; older keys that must stay readable in
``$TIERWISE_PII_OLD_KEYS``, comma-separated) or else from the workspace's key file
(``pii_key_file`` in tierwise.toml; created with mode 0600 by ``tierwise init``, never on
the fly: a workspace whose key is missing refuses to open, see ``Workspace``). Keep the key file
outside the workspace in production: whoever holds both can read the data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tierwise.definitions.personal_data import PII_COLUMNS
from tierwise.errors import TierwiseError

#: Columns with a keyed hash for equality search.
HASHED_COLUMNS = {"name": "name_hash", "email": "email_hash", "phone": "phone_hash"}
PREFIX = "pii1:"
ENV_KEY = "TIERWISE_PII_KEY"
ENV_OLD_KEYS = "TIERWISE_PII_OLD_KEYS"


class PiiKeyError(TierwiseError):
    """A PII key is missing, malformed, or a value was encrypted with an unknown key."""


class MissingPiiKey(PiiKeyError):
    """Neither ``$TIERWISE_PII_KEY`` nor the key file is there."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        super().__init__(f"no PII key: ${ENV_KEY} is not set and {key_file} does not exist")


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"tierwise-key-id" + key).hexdigest()[:12]


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (ValueError, TypeError):
        raise PiiKeyError(f"{where}: a PII key is base64 of 32 random bytes",
                          zh=f"{where}：PII 密钥应为 32 个随机字节的 base64") from None
    if len(key) != 32:
        raise PiiKeyError(f"{where}: a PII key is 32 bytes (base64 of 44 characters), "
                          f"got {len(key)} bytes",
                          zh=f"{where}：PII 密钥为 32 字节（44 个字符的 base64），"
                          f"实际为 {len(key)} 字节")
    return key


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class KeyRing:
    """The current key (for writing) and every key that may still be needed for reading."""

    current: bytes
    older: tuple[bytes, ...] = ()
    source: str = "memory"
    #: Which keys of ``customers.attributes`` hold personal data (the workspace's
    #: ``PersonalData.is_sensitive_key``); their values are sealed like the PII columns.
    sensitive_key: Callable[[str], bool] | None = None

    def __post_init__(self) -> None:
        self._aead = {_key_id(k): AESGCM(k) for k in (self.current, *self.older)}
        self.current_id = _key_id(self.current)
        self._index_key = hmac.new(self.current, b"tierwise blind index v1",
                                   hashlib.sha256).digest()

    # -- load / store --------------------------------------------------------------------
    @classmethod
    def load(cls, key_file: Path, create: bool = False) -> KeyRing:
        """The ring from ``$TIERWISE_PII_KEY`` or ``key_file``. A missing key is
        ``MissingPiiKey`` unless ``create`` (``tierwise init`` and the explicit key commands
        only: a new key silently put in place of a lost one reads nothing stored before)."""
        from_env = cls.from_environment()
        if from_env is not None:
            return from_env
        if not key_file.exists():
            if not create:
                raise MissingPiiKey(key_file)
            write_key_file(key_file, [new_key()])
        try:
            data = json.loads(key_file.read_text(encoding="utf-8"))
            keys = [_decode_key(k, str(key_file)) for k in data["keys"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, PiiKeyError):
                raise
            raise PiiKeyError(f"{key_file}: expected JSON {{\"keys\": [current, older…]}} "
                              f"({exc})",
                              zh=f"{key_file}：应为 JSON {{\"keys\": [当前密钥, 旧密钥…]}}"
                              f"（{exc}）") from None
        if not keys:
            raise PiiKeyError(f"{key_file}: the key list is empty",
                              zh=f"{key_file}：密钥列表是空的")
        return cls(keys[0], tuple(keys[1:]), str(key_file))

    @classmethod
    def from_environment(cls) -> KeyRing | None:
        """The ring ``$TIERWISE_PII_KEY`` (and ``$TIERWISE_PII_OLD_KEYS``) give, if set."""
        env = os.environ.get(ENV_KEY)
        if not env:
            return None
        older = tuple(_decode_key(k, ENV_OLD_KEYS)
                      for k in os.environ.get(ENV_OLD_KEYS, "").split(",") if k.strip())
        return cls(_decode_key(env, ENV_KEY), older, f"${ENV_KEY}")

    # -- values --------------------------------------------------------------------------
    def encrypt(self, column: str, value: str | None) -> str | None:
        if value is None:
            return value
        nonce = secrets.token_bytes(12)
        sealed = self._aead[self.current_id].encrypt(nonce, value.encode(), column.encode())
        return f"{PREFIX}{self.current_id}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, column: str, value: str | None) -> str | None:
        if value is None or not value.startswith(PREFIX):
            return value
        key_id, _, body = value[len(PREFIX):].partition(":")
        aead = self._aead.get(key_id)
        if aead is None:
            raise PiiKeyError(f"a {column} value was encrypted with key {key_id}, which is not "
                              f"in the key ring ({self.source}); add the old key to read it",
                              zh=f"有一个 {column} 值是用密钥 {key_id} 加密的，但密钥环"
                              f"（{self.source}）中没有它；请把旧密钥加回来才能读取")
        raw = base64.b64decode(body)
        return aead.decrypt(raw[:12], raw[12:], column.encode()).decode()

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Ids of every key in the ring, the current one first."""
        return tuple(_key_id(k) for k in (self.current, *self.older))

    def exported(self) -> list[str]:
        """The keys as a key file lists them (base64, the current one first)."""
        return [base64.b64encode(k).decode() for k in (self.current, *self.older)]

    def key_id_of(self, value: str | None) -> str | None:
        if value is None or not value.startswith(PREFIX):
            return None
        return value[len(PREFIX):].partition(":")[0]

    def search_hash(self, column: str, value: str | None) -> str | None:
        """Keyed hash of a normalised name, e-mail or phone: equal inputs, equal hashes."""
        if value is None or not value.strip():
            return None
        normal = " ".join(unicodedata.normalize("NFKC", value).split()).lower()
        return hmac.new(self._index_key, f"{column}:{normal}".encode(),
                        hashlib.sha256).hexdigest()

    def protect_row(self, row: dict[str, object]) -> dict[str, object]:
        """Encrypt a customer row's PII columns and sensitive attributes in place and add the
        search hashes."""
        for column, hash_column in HASHED_COLUMNS.items():
            if column in row:
                row[hash_column] = self.search_hash(column, row[column])  # type: ignore[arg-type]
        for column in PII_COLUMNS:
            if column in row:
                row[column] = self.encrypt(column, row[column])  # type: ignore[arg-type]
        if isinstance(row.get(ATTRIBUTES), str):
            row[ATTRIBUTES] = self.seal_attributes(row[ATTRIBUTES])  # type: ignore[arg-type]
        return row

    def reveal_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """Decrypt a stored customer row's PII columns and sensitive attributes in place."""
        for column in PII_COLUMNS:
            if column in row:
                row[column] = self.decrypt(column, row[column])
        if isinstance(row.get(ATTRIBUTES), str):
            row[ATTRIBUTES] = self.open_attributes(row[ATTRIBUTES])
        return row

    def seal_attributes(self, text: str | None) -> str | None:
        """An attributes JSON object with each sensitive key's value encrypted (bound to
        ``attributes.<key>``); other keys, and text that is not an object, stay as they are."""
        data = _object(text)
        if data is None or self.sensitive_key is None:
            return text
        sealed = {k: self.encrypt(f"{ATTRIBUTES}.{k}", json.dumps(v, ensure_ascii=False))
                  if v is not None and self.sensitive_key(k) and not _is_sealed(v) else v
                  for k, v in data.items()}
        return json.dumps(sealed, ensure_ascii=False) if sealed != data else text

    def open_attributes(self, text: str | None) -> str | None:
        """The attributes JSON object with sealed values decrypted (the inverse of
        ``seal_attributes``)."""
        if text is None or PREFIX not in text:
            return text
        data = _object(text)
        if data is None:
            return text
        opened = {k: json.loads(self.decrypt(f"{ATTRIBUTES}.{k}", v) or "null")
                  if _is_sealed(v) else v for k, v in data.items()}
        return json.dumps(opened, ensure_ascii=False)

    def reveal(self, column: str, values: Iterable[str | None]) -> list[str | None]:
        return [self.decrypt(column, v) for v in values]


ATTRIBUTES = "attributes"


def _is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def _object(text: str | None) -> dict[str, Any] | None:
    if not text or not text.lstrip().startswith("{"):
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file readable by its owner only (mode 0600), atomically: a key
    file, a secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_key_file(path: Path, keys: list[str]) -> None:
    """Write the key file (current key first) readable by its owner only, atomically."""
    write_private(path, json.dumps({"keys": keys}))


def key_id_of_key(encoded: str, where: str = "key") -> str:
    """The id of a base64 key as written in a key file (what sealed values name)."""
    return _key_id(_decode_key(encoded, where))
