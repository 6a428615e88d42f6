"""The import log (``imports``): one row per applied import, newest first when listed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tierwise.store.control import as_utc
from tierwise.store.tables import imports


def record(conn: sa.Connection, **values: Any) -> int:
    """Log an applied import (table_name, source, …, started_at, finished_at); its id."""
    result = conn.execute(imports.insert().values(**values))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def recent(conn: sa.Connection, limit: int = 50) -> list[dict[str, Any]]:
    """The latest imports (without their mapping specs)."""
    rows = conn.execute(sa.select(imports).order_by(imports.c.import_id.desc())
                        .limit(limit)).all()
    return [{k: v for k, v in r._mapping.items() if k != "mapping"} for r in rows]


def last_finished(conn: sa.Connection, table: str) -> datetime | None:
    """When the latest import into ``table`` finished (None: never)."""
    return as_utc(conn.execute(sa.select(sa.func.max(imports.c.finished_at))
                               .where(imports.c.table_name == table)).scalar())


def after(conn: sa.Connection, import_id: int) -> list[tuple[int, str, str]]:
    """(import_id, table, source) of the imports logged after ``import_id``."""
    return [(r.import_id, r.table_name, r.source) for r in conn.execute(
        sa.select(imports.c.import_id, imports.c.table_name, imports.c.source)
        .where(imports.c.import_id > import_id).order_by(imports.c.import_id))]
