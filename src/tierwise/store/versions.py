"""Versioned definitions in the control store: every change adds the next version."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tierwise.store.control import as_utc, utcnow
from tierwise.store.tables import definitions


@dataclass(frozen=True)
class Version:
    kind: str
    key: str
    version: int
    spec: dict[str, Any]
    note: str | None
    created_at: datetime


def latest(conn: sa.Connection, kind: str, key: str) -> Version | None:
    row = conn.execute(
        sa.select(definitions).where(definitions.c.kind == kind, definitions.c.key == key)
        .order_by(definitions.c.version.desc()).limit(1)
    ).first()
    if row is None:
        return None
    return Version(row.kind, row.key, row.version, json.loads(row.spec), row.note,
                   as_utc(row.created_at) or utcnow())


def latest_specs(conn: sa.Connection, kind: str) -> list[tuple[str, int, str]]:
    """(key, version, stored JSON text) of the latest version of every ``kind`` definition,
    by key, in one query (the real-time worker asks on every micro-batch)."""
    newest = (sa.select(definitions.c.key, sa.func.max(definitions.c.version).label("version"))
              .where(definitions.c.kind == kind).group_by(definitions.c.key).subquery())
    rows = conn.execute(sa.select(definitions.c.key, definitions.c.version, definitions.c.spec)
                        .join(newest, sa.and_(definitions.c.key == newest.c.key,
                                              definitions.c.version == newest.c.version))
                        .where(definitions.c.kind == kind)).all()
    return sorted((r.key, r.version, r.spec) for r in rows)


def save(conn: sa.Connection, kind: str, key: str, spec: dict[str, Any],
         note: str | None = None) -> int:
    """Store ``spec`` as the next version (unless it equals the latest); returns the version."""
    current = latest(conn, kind, key)
    if current is not None and current.spec == spec:
        return current.version
    version = 1 if current is None else current.version + 1
    conn.execute(definitions.insert().values(
        kind=kind, key=key, version=version, note=note, created_at=utcnow(),
        spec=json.dumps(spec, ensure_ascii=False, sort_keys=True)))
    return version


def history(conn: sa.Connection, kind: str, key: str) -> list[Version]:
    rows = conn.execute(
        sa.select(definitions).where(definitions.c.kind == kind, definitions.c.key == key)
        .order_by(definitions.c.version)
    ).all()
    return [Version(r.kind, r.key, r.version, json.loads(r.spec), r.note,
                    as_utc(r.created_at) or utcnow()) for r in rows]


def latest_versions(conn: sa.Connection, kind: str) -> dict[str, int]:
    """Per key of ``kind``, its latest version."""
    return {str(k): int(v) for k, v in conn.execute(
        sa.select(definitions.c.key, sa.func.max(definitions.c.version))
        .where(definitions.c.kind == kind).group_by(definitions.c.key))}


def change_token(conn: sa.Connection) -> tuple[object, ...]:
    """Changes whenever a definition of any kind is saved (versions are only added)."""
    return tuple(conn.execute(sa.select(sa.func.count(), sa.func.max(
        definitions.c.created_at))).one())
