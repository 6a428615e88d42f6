"""The actions' listener of changes (``store.changes``): triggers and playbooks for
membership, tier and lifecycle changes, for qualified leads and for opportunities' stage
changes, written to the outbox in the
transaction that announces them. Installed once per process by ``tierwise/__init__.py``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tierwise.actions import outbox
from tierwise.store import changes
from tierwise.store.control import Connection


class OutboxListener:
    def prepare(self, conn: Connection) -> Any:
        return outbox.membership_hooks(conn)

    def membership_changed(self, conn: Connection, segment: str, entered: list[str],
                           exited: list[str], reason: str, at: datetime,
                           prepared: Any) -> None:
        outbox.on_membership(conn, segment, entered, exited, reason, at, prepared)

    def values_changed(self, conn: Connection, event: str,
                       found: list[changes.ValueChange], reason: str, at: datetime) -> None:
        outbox.on_value_change(conn, event, found, reason, at)

    def lead_qualified(self, conn: Connection, items: list[dict[str, Any]], task: Any,
                       at: datetime) -> None:
        outbox.on_event(conn, "lead_qualified", items, at)
        if task is not None:
            outbox.enqueue(conn, "lead_scoring:default", "lead_qualified", task, items, at)

    def stage_changed(self, conn: Connection, items: list[dict[str, Any]], reason: str,
                      at: datetime) -> None:
        outbox.on_stage_change(conn, items, reason, at)


def install() -> None:
    changes.listen(OutboxListener())
