"""Users (argon2id), dashboard sessions and API keys in the control store.

Secrets are never stored: passwords as argon2id hashes, session tokens and API-key secrets
(random, 256 bits) as SHA-256. Comparisons of secrets are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tierwise.definitions.roles import ROLES, Principal, check_role, check_scopes
from tierwise.errors import NotFoundError, TierwiseError
from tierwise.store.control import as_utc, utcnow
from tierwise.store.tables import api_keys, sessions, users

SESSION_HOURS = 12
MIN_PASSWORD = 10
DEFAULT_KEY_RATE = 50.0  # requests per second
#: A key's life when its creator names none.
DEFAULT_KEY_DAYS = 90
_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified when the user does not exist, so that a wrong name costs as long as a wrong
    password; made on the first login, not on import (an argon2 hash, 0.2 s, paid by every
    command before)."""
    return _hasher.hash("tierwise-no-such-user")


class AuthError(TierwiseError):
    """Bad credentials, a disabled user, an expired or revoked key."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- users -------------------------------------------------------------------------------

def add_user(conn: sa.Connection, username: str, password: str, role: str,
             owner_name: str | None = None, display_name: str | None = None) -> int:
    check_role(role)
    if not username or len(username) > 64 or not username.replace("_", "").replace(
            ".", "").replace("-", "").isalnum():
        raise TierwiseError(f"user name {username!r}: letters, digits, '.', '_', '-' "
                            "(at most 64)",
                            zh=f"用户名 {username!r}：只能包含字母、数字、'.'、'_'、'-'"
                            "（最多 64 个）")
    if len(password) < MIN_PASSWORD:
        raise TierwiseError(f"a password has at least {MIN_PASSWORD} characters",
                            zh=f"密码至少 {MIN_PASSWORD} 个字符")
    if conn.execute(sa.select(users.c.user_id).where(users.c.username == username)).first():
        raise TierwiseError(f"user {username!r} exists already",
                            zh=f"用户 {username!r} 已存在")
    result = conn.execute(users.insert().values(
        username=username, display_name=display_name, password_hash=_hasher.hash(password),
        role=role, owner_name=owner_name, created_at=utcnow()))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def list_users(conn: sa.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(sa.select(users.c.user_id, users.c.username, users.c.display_name,
                                  users.c.role, users.c.owner_name, users.c.created_at,
                                  users.c.disabled_at, users.c.last_login_at)
                        .order_by(users.c.username)).all()
    return [dict(r._mapping) for r in rows]


def set_user(conn: sa.Connection, username: str, *, disabled: bool | None = None,
             role: str | None = None, owner_name: str | None = None) -> None:
    values: dict[str, Any] = {}
    if disabled is not None:
        values["disabled_at"] = utcnow() if disabled else None
    if role is not None:
        values["role"] = check_role(role)
    if owner_name is not None:
        values["owner_name"] = owner_name or None
    if conn.execute(sa.select(users.c.user_id).where(users.c.username == username)).first() \
            is None:
        raise NotFoundError(f"no user {username!r}",
                            zh=f"没有用户 {username!r}")
    if not values:
        raise TierwiseError("nothing to change: give disabled, role or owner_name",
                            zh="没有要修改的内容：请给出 disabled、role 或 owner_name")
    conn.execute(users.update().where(users.c.username == username).values(values))
    if disabled or role is not None:  # sessions end with the rights they were opened with
        ids = sa.select(users.c.user_id).where(users.c.username == username)
        conn.execute(sessions.delete().where(sessions.c.user_id.in_(ids)))


def authenticate(conn: sa.Connection, username: str, password: str) -> int:
    """The user id for correct credentials of an enabled user; AuthError otherwise."""
    dummy = _dummy_hash()  # before the look-up: the first login of either kind pays it
    row = conn.execute(sa.select(users.c.user_id, users.c.password_hash,
                                 users.c.disabled_at)
                       .where(users.c.username == username)).first()
    try:
        _hasher.verify(row.password_hash if row else dummy, password)
    except (VerificationError, InvalidHashError):
        raise AuthError("wrong user name or password",
                        zh="用户名或密码错误") from None
    if row is None:
        raise AuthError("wrong user name or password",
                        zh="用户名或密码错误")
    if row.disabled_at is not None:
        raise AuthError("this user is disabled",
                        zh="该用户已停用")
    conn.execute(users.update().where(users.c.user_id == row.user_id)
                 .values(last_login_at=utcnow()))
    return int(row.user_id)


def _user_principal(row: Any, csrf: str | None) -> Principal:
    return Principal("user", row.username, row.role, ROLES[row.role], row.owner_name, csrf)


# -- sessions ----------------------------------------------------------------------------

def open_session(conn: sa.Connection, user_id: int, client: str | None) -> tuple[str, str]:
    """A new session: (cookie token, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    now = utcnow()
    conn.execute(sessions.insert().values(
        token_hash=_sha256(token), user_id=user_id, csrf_token=csrf, created_at=now,
        expires_at=now + timedelta(hours=SESSION_HOURS), client=client))
    return token, csrf


def session_principal(conn: sa.Connection, token: str) -> Principal | None:
    row = conn.execute(
        sa.select(users.c.username, users.c.role, users.c.owner_name, users.c.disabled_at,
                  sessions.c.csrf_token, sessions.c.expires_at)
        .join(users, users.c.user_id == sessions.c.user_id)
        .where(sessions.c.token_hash == _sha256(token))).first()
    if row is None or row.disabled_at is not None:
        return None
    if (as_utc(row.expires_at) or utcnow()) <= utcnow():
        return None
    return _user_principal(row, row.csrf_token)


def close_session(conn: sa.Connection, token: str) -> None:
    conn.execute(sessions.delete().where(sessions.c.token_hash == _sha256(token)))


# -- API keys ----------------------------------------------------------------------------

@dataclass
class NewKey:
    key_id: str
    secret: str  # the whole ``tw_<id>_<secret>`` string; shown once
    expires_at: datetime | None = None


def key_expiry(expires_at: datetime | None, max_days: int, no_expiry: bool = False,
               creator_role: str = "admin") -> datetime | None:
    """When a new key expires: ``expires_at`` (default ``DEFAULT_KEY_DAYS`` from now), in
    the future and at most ``max_days`` away (the workspace's ``api_key_max_days``); never
    only with ``no_expiry``, which only an admin may ask for."""
    now = utcnow()
    if no_expiry:
        if expires_at is not None:
            raise TierwiseError("give an expiry or ask for no expiry, not both",
                                zh="到期时间与永不过期只能选一个")
        if creator_role != "admin":
            raise TierwiseError("only an admin may create a key that never expires",
                                zh="只有管理员可以创建永不过期的密钥")
        return None
    if expires_at is None:
        expires_at = now + timedelta(days=min(DEFAULT_KEY_DAYS, max_days))
    if expires_at.tzinfo is None:
        raise TierwiseError("a key's expiry needs a time zone (such as +08:00 or Z)",
                            zh="密钥的到期时间需要带时区（例如 +08:00 或 Z）")
    if expires_at <= now:
        raise TierwiseError(f"a key's expiry must be in the future, not {expires_at:%Y-%m-%d}",
                            zh=f"密钥的到期时间必须在将来，而不是 {expires_at:%Y-%m-%d}")
    if expires_at > now + timedelta(days=max_days, minutes=5):
        raise TierwiseError(f"a key lives at most {max_days} days (api_key_max_days in "
                            f"tierwise.toml); {expires_at:%Y-%m-%d} is later",
                            zh=f"密钥最长有效 {max_days} 天（tierwise.toml 中的 "
                            f"api_key_max_days）；{expires_at:%Y-%m-%d} 超出了")
    return expires_at


def create_key(conn: sa.Connection, name: str, role: str, created_by: str, *,
               scopes: list[str] | None = None, expires_at: datetime | None = None,
               owner_name: str | None = None, rate_per_second: float = DEFAULT_KEY_RATE,
               no_expiry: bool = False, max_days: int = 366, creator_role: str = "admin"
               ) -> NewKey:
    """A new key; its expiry as ``key_expiry`` decides (stored in ``api_keys``)."""
    granted = check_scopes(role, scopes)
    if not rate_per_second > 0 or rate_per_second == float("inf"):
        raise TierwiseError("a key's rate limit is a positive number of requests per second",
                            zh="密钥的速率限制应为每秒请求数（正数）")
    expires_at = key_expiry(expires_at, max_days, no_expiry, creator_role)
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    conn.execute(api_keys.insert().values(
        key_id=key_id, name=name, secret_hash=_sha256(secret), role=role,
        scopes=json.dumps(granted), owner_name=owner_name, rate_per_second=rate_per_second,
        created_by=created_by, created_at=utcnow(), expires_at=expires_at))
    return NewKey(key_id, f"tw_{key_id}_{secret}", expires_at)


def key_principal(conn: sa.Connection, presented: str) -> tuple[Principal, float]:
    """The principal and rate limit of a presented key; AuthError says why it is refused."""
    prefix, _, rest = presented.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != "tw" or not key_id or not secret:
        raise AuthError("malformed API key (expected tw_<id>_<secret>)",
                        zh="API 密钥格式错误（应为 tw_<id>_<secret>）")
    row = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).first()
    expected = row.secret_hash if row is not None else _sha256("tierwise-no-such-key")
    if not hmac.compare_digest(expected, _sha256(secret)) or row is None:
        raise AuthError("unknown API key",
                        zh="未知的 API 密钥")
    if row.revoked_at is not None:
        raise AuthError(f"API key {key_id} was revoked",
                        zh=f"API 密钥 {key_id} 已被吊销")
    if row.expires_at is not None and (as_utc(row.expires_at) or utcnow()) <= utcnow():
        raise AuthError(f"API key {key_id} expired",
                        zh=f"API 密钥 {key_id} 已过期")
    permissions = frozenset(json.loads(row.scopes)) & ROLES[row.role]
    return (Principal("key", key_id, row.role, permissions, row.owner_name),
            float(row.rate_per_second))


def touch_key(conn: sa.Connection, key_id: str) -> None:
    conn.execute(api_keys.update().where(api_keys.c.key_id == key_id)
                 .values(last_used_at=utcnow()))


def revoke_key(conn: sa.Connection, key_id: str) -> None:
    done = conn.execute(api_keys.update().where(api_keys.c.key_id == key_id,
                                                api_keys.c.revoked_at.is_(None))
                        .values(revoked_at=utcnow()))
    if done.rowcount == 0:
        raise NotFoundError(f"no active API key {key_id!r}",
                            zh=f"没有有效的 API 密钥 {key_id!r}")


def list_keys(conn: sa.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)).all()
    out = []
    for r in rows:
        item = dict(r._mapping)
        item.pop("secret_hash")
        item["scopes"] = json.loads(item["scopes"])
        out.append(item)
    return out
