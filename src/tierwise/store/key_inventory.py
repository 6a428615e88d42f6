"""Which PII keys the stored data needs: the key ids named by its sealed values.

Sealed values (``pii1:<key id>:…``) live in the customers' PII columns and attributes, the
cleaning log and the undo records of merges. The inventory is read without any key, so a
workspace that lost its key can still say which one it needs, and a backup records the keys
a restore will ask for.
"""

from __future__ import annotations

import re
from collections import defaultdict

import sqlalchemy as sa

from tierwise.definitions.personal_data import PII_COLUMNS
from tierwise.store.sealing import PREFIX
from tierwise.store.tables import cleaning_log, customers, merges

#: A sealed value's key id, wherever it sits in a text (attributes hold several).
_SEALED = re.compile(re.escape(PREFIX) + r"([0-9a-f]{12}):")
_ID_AT = len(PREFIX) + 1  # SQL substr is 1-based


def _prefixed(conn: sa.Connection, column: sa.Column[str]) -> set[str]:
    """Key ids at the start of a column's values (one value, one key)."""
    key = sa.func.substr(column, _ID_AT, 12)
    return {r[0] for r in conn.execute(sa.select(key).where(column.like(f"{PREFIX}%"))
                                       .group_by(key))}


def _embedded(conn: sa.Connection, column: sa.Column[str]) -> set[str]:
    """Key ids anywhere in a column's values (JSON with sealed members)."""
    found: set[str] = set()
    result = conn.execution_options(yield_per=10_000).execute(
        sa.select(column).where(column.like(f"%{PREFIX}%")))
    for (text,) in result:
        found.update(_SEALED.findall(text))
    return found


def sealed_key_ids(conn: sa.Connection) -> dict[str, list[str]]:
    """Key id → the columns holding values sealed with it (``customers.email``, …)."""
    where: dict[str, set[str]] = defaultdict(set)
    for name in PII_COLUMNS:
        for key_id in _prefixed(conn, customers.c[name]):
            where[key_id].add(f"customers.{name}")
    for key_id in _embedded(conn, customers.c.attributes):
        where[key_id].add("customers.attributes")
    for column in (cleaning_log.c.before, cleaning_log.c.after):
        for key_id in _prefixed(conn, column):
            where[key_id].add("cleaning_log")
    for key_id in _prefixed(conn, merges.c.undo):
        where[key_id].add("merges")
    return {k: sorted(v) for k, v in sorted(where.items())}
