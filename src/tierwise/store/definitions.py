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
