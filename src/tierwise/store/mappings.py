"""Saved column mappings (``mappings``): YAML specs by name, for imports that reuse them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tierwise.store.control import utcnow
from tierwise.store.tables import mappings


def spec(conn: sa.Connection, name: str) -> str | None:
    """The YAML of the mapping saved as ``name`` (None: no such mapping)."""
    found = conn.execute(sa.select(mappings.c.spec).where(mappings.c.name == name)).scalar()
    return None if found is None else str(found)


def save(conn: sa.Connection, name: str, table: str, yaml_text: str) -> None:
    conn.execute(mappings.delete().where(mappings.c.name == name))
    conn.execute(mappings.insert().values(name=name, table_name=table, spec=yaml_text,
                                          saved_at=utcnow()))


def listing(conn: sa.Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(
        sa.select(mappings.c.name, mappings.c.table_name, mappings.c.saved_at)
        .order_by(mappings.c.name))]
