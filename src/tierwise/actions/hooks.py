"""The actions' listener of changes (``store.changes``): triggers and playbooks for
membership, tier and lifecycle changes and for qualified leads, written to the outbox in the
transaction that announces them. Installed once per process by ``tierwise/__init__.py``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tierwise.actions import outbox
from tierwise.store import changes


class OutboxListener:
    def prepare(self, conn: sa.Connection) -> Any:
        return outbox.membership_hooks(conn)

    def membership_changed(self, conn: sa.Connection, segment: str, entered: list[str],
                           exited: list[str], reason: str, at: datetime,
                           prepared: Any) -> None:
        outbox.on_membership(conn, segment, entered, exited, reason, at, prepared)

    def values_changed(self, conn: sa.Connection, event: str,
                       found: list[changes.ValueChange], reason: str, at: datetime) -> None:
        outbox.on_value_change(conn, event, found, reason, at)

    def lead_qualified(self, conn: sa.Connection, items: list[dict[str, Any]], task: Any,
                       at: datetime) -> None:
        outbox.on_event(conn, "lead_qualified", items, at)
        if task is not None:
            outbox.enqueue(conn, "lead_scoring:default", "lead_qualified", task, items, at)


def install() -> None:
    changes.listen(OutboxListener())
