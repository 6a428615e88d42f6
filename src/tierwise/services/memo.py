"""Answers the dashboard asks for often, computed once for the same inputs: a small
least-recently-made cache keyed by a token of the data the answer reads (the newest fact
file of each table read, the snapshots, a segment's history, customers, qualified leads)
and the hour, so that an answer over a period still under way follows the clock."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from tierwise.workspace import Workspace

T = TypeVar("T")


def data_token(ws: Workspace, facts: Iterable[str], segment: str | None = None,
               customers: bool = False, leads: bool = False) -> tuple[object, ...]:
    """Changes whenever the inputs named could: new files of the ``facts`` tables, a new
    snapshot, the segment's history, customers added or changed, leads qualified, the
    time zone, the hour."""
    from tierwise.store import customers as customer_store
    from tierwise.store import leads as lead_store
    from tierwise.store import memberships, snapshots
    from tierwise.store.control import utcnow

    with ws.control.read() as conn:
        files = tuple(ws.facts.max_file_id(conn, table) for table in facts)
        snaps = snapshots.state(conn)
        history = memberships.last_history_id(conn, segment) if segment else None
        people = customer_store.state(conn) if customers else None
        qualified = lead_store.state(conn) if leads else None
    return (str(ws.root), ws.config.timezone, files, snaps, history, people, qualified,
            utcnow().strftime("%Y%m%d%H"))


class Memo:
    """The last ``size`` answers, by key."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._found: OrderedDict[tuple[object, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...], make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._found:
                self._found.move_to_end(key)
                return self._found[key]  # type: ignore[no-any-return]
        found = make()
        with self._lock:
            self._found[key] = found
            while len(self._found) > self.size:
                self._found.popitem(last=False)
        return found


__all__ = ["Memo", "data_token"]
