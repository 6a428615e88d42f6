"""Changes other layers act on, announced inside the transaction that makes them.

Segment evaluations, snapshots and lead scoring change who is where; triggers and playbooks
must see every such change in the same transaction, so that their outbox rows commit with
the change or not at all (the transactional outbox). The layers that make the changes sit
below the actions and do not call them: they announce the change here, and the listener
that ``tierwise.actions.hooks`` installs when the package is imported acts on it. A change
announced with no listener is an error, never a change that silently fires nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa

#: (customer, value before, value after); before is None for a customer new to a snapshot.
ValueChange = tuple[str, str | None, str | None]


class Listener(Protocol):
    def prepare(self, conn: sa.Connection) -> Any:
        """What a transaction that announces many changes reads once (the definitions)."""

    def membership_changed(self, conn: sa.Connection, segment: str, entered: list[str],
                           exited: list[str], reason: str, at: datetime,
                           prepared: Any) -> None: ...

    def values_changed(self, conn: sa.Connection, event: str, changes: list[ValueChange],
                       reason: str, at: datetime) -> None: ...

    def lead_qualified(self, conn: sa.Connection, items: list[dict[str, Any]],
                       task: Any, at: datetime) -> None: ...

    def stage_changed(self, conn: sa.Connection, items: list[dict[str, Any]], reason: str,
                      at: datetime) -> None: ...


_listener: list[Listener] = []


def listen(listener: Listener) -> None:
    """Install the listener of this process (the last one installed wins)."""
    _listener[:] = [listener]


def _current() -> Listener:
    if not _listener:
        raise RuntimeError("no listener for changes: import tierwise (the package) so that "
                           "tierwise.actions.hooks installs it; a change must not go "
                           "unseen by the triggers")
    return _listener[0]


def prepare(conn: sa.Connection) -> Any:
    return _current().prepare(conn)


def membership_changed(conn: sa.Connection, segment: str, entered: Iterable[str],
                       exited: Iterable[str], reason: str, at: datetime,
                       prepared: Any = None) -> None:
    """Customers entered or left ``segment`` (``prepared``: from ``prepare`` earlier in the
    same transaction, when it announces many segments' changes)."""
    entered, exited = sorted(entered), sorted(exited)
    if entered or exited:
        listener = _current()
        listener.membership_changed(conn, segment, entered, exited, reason, at,
                                    listener.prepare(conn) if prepared is None else prepared)


def values_changed(conn: sa.Connection, event: str, changes: list[ValueChange],
                   reason: str, at: datetime) -> None:
    """Tiers or lifecycle stages changed (``event``: tier_change, lifecycle_change)."""
    if changes:
        _current().values_changed(conn, event, changes, reason, at)


def lead_qualified(conn: sa.Connection, items: list[dict[str, Any]], task: Any,
                   at: datetime) -> None:
    """Leads reached the threshold (``task``: the definition's task for sales, or None)."""
    if items:
        _current().lead_qualified(conn, items, task, at)


def stage_changed(conn: sa.Connection, items: list[dict[str, Any]], reason: str,
                  at: datetime) -> None:
    """Opportunities moved to another stage (or were created): one item per move, with
    ``customer_id``, ``opportunity_id``, ``from`` (None for a new one) and ``to``."""
    if items:
        _current().stage_changed(conn, items, reason, at)
