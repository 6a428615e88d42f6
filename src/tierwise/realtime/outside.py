"""What the worker's loop does not learn from the rows it moves: definitions saved,
snapshots computed and facts imported by other processes (the CLI, the import API), and
customer records changed outside intake. Each is a cheap look at the control store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tierwise.store import customers as customer_store
from tierwise.store import import_log, snapshots, versions
from tierwise.workspace import Workspace


@dataclass(frozen=True)
class Outside:
    """The latest snapshot and the latest import (every import is a row; only those after
    the last look are read)."""

    snapshot: int
    last_import: int

    def look(self, ws: Workspace) -> tuple[Outside, bool]:
        """The state now, and whether a snapshot was computed or facts were imported other
        than through intake since ``self``."""
        with ws.control.read() as conn:
            snapshot = snapshots.state(conn)[1]
            fresh = import_log.after(conn, self.last_import)
        now = Outside(snapshot, max((i for i, _, _ in fresh), default=self.last_import))
        foreign = any(table != "customers" and not source.startswith("intake ")
                      for _, table, source in fresh)
        return now, snapshot != self.snapshot or foreign


def definitions_token(ws: Workspace) -> tuple[object, ...]:
    """Changes whenever a definition is saved."""
    with ws.control.read() as conn:
        return versions.change_token(conn)


def updated_customers(ws: Workspace, since: datetime) -> tuple[set[str], datetime]:
    """The customers whose record changed after ``since``, and the new watermark."""
    with ws.control.read() as conn:
        return customer_store.updated_since(conn, since)
