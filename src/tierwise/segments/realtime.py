"""Keeping memberships current between batch runs: incremental updates and time sweeps.

Two things move a customer across a rule without a batch run:

* **new data** — rows arrive (intake, imports) for some customers. ``evaluate_changed``
  re-evaluates only the segments whose rules read the changed tables (directly, through
  ``IN_SEGMENT`` or through live fields such as ``last_order_at``) and only for those
  customers. Rules on computed fields (``tier``, ``rfm.*``, ``clv`` …) read the latest
  snapshot, which new rows do not change until the next ``tierwise compute``: population
  thresholds (RFM quantiles, tier percentiles) stay as of that run.
* **time** — ``LAST 30d``, ``DAYS_SINCE_LAST(orders) > 90``, ``signup_at < -1y`` and
  ``today`` change value as the clock moves. ``sweep`` re-evaluates every segment whose
  rule depends on the clock, for everyone, with the reason ``time``; the server runs it
  every ``sweep_seconds`` (30 s by default), so a member leaves within that long of the
  instant the rule became false.

>>> reads(parse("COUNT(orders, LAST 30d) >= 2"))  # doctest: +SKIP
Reads(tables=frozenset({'orders'}), timed=True)
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from tierwise.definitions.segment_ast import (
    Aggregate,
    Condition,
    Field,
    InSegment,
    Operand,
    RelativeDate,
)
from tierwise.definitions.segment_fields import children, customer_field, operands
from tierwise.segments import definitions as defs
from tierwise.segments.membership import RunResult, evaluate_all
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace

#: What a rule can read: the four fact tables, ``customers`` (master data), ``snapshot``
#: (computed fields), ``members`` (stored members of static lists) and ``leads`` (lead
#: scores).
TABLES = ("orders", "events", "tickets", "feedback", "customers", "snapshot", "members",
          "leads")
_CLOCKED = ("DAYS_SINCE_LAST", "DAYS_SINCE_FIRST")


@dataclass(frozen=True)
class Reads:
    tables: frozenset[str]
    #: True when the rule's value can change with the clock alone.
    timed: bool

    def __or__(self, other: Reads) -> Reads:
        return Reads(self.tables | other.tables, self.timed or other.timed)


NOTHING = Reads(frozenset(), False)


def _operand_reads(node: Operand) -> Reads:
    if isinstance(node, RelativeDate):
        return Reads(frozenset(), True)
    if isinstance(node, Aggregate):
        inner = NOTHING
        if node.where is not None:
            inner = reads(node.where, source=node.source)
        return inner | Reads(frozenset({node.source}),
                             node.window is not None or node.function in _CLOCKED)
    if isinstance(node, Field):
        return NOTHING  # resolved by the caller, which knows whether it is a source column
    return NOTHING


def reads(rule: Condition, resolve: Callable[[str], Condition | None] | None = None,
          source: str | None = None) -> Reads:
    """Which tables ``rule`` reads and whether the clock alone can change it.

    ``resolve`` maps an IN_SEGMENT key to the dynamic rule it includes (None for a stored
    list); without it a reference counts as reading stored members.
    """
    found = NOTHING
    if isinstance(rule, InSegment):
        inner = resolve(rule.key) if resolve is not None else None
        return reads(inner, resolve) if inner is not None else Reads(frozenset({"members"}),
                                                                      False)
    for child in children(rule):
        found |= reads(child, resolve, source)
    for operand in operands(rule):
        found |= _operand_reads(operand)
        if isinstance(operand, Field) and source is None:
            table = customer_field(operand).table
            found |= Reads(frozenset({"orders" if table == "live" else table}), False)
    return found


def segment_reads(ws: Workspace) -> dict[str, Reads]:
    """What each active dynamic segment reads, in dependency order."""
    definitions = {k: a.definition for k, a in defs.applied(ws).items()}
    resolve = defs_resolver(definitions)
    result: dict[str, Reads] = {}
    for key in defs.dependency_order(definitions):
        definition = definitions[key]
        rule = definition.condition() if definition.status == "active" else None
        if rule is not None:
            result[key] = reads(rule, resolve)
    return result


def defs_resolver(definitions: dict[str, defs.SegmentDefinition]
                  ) -> Callable[[str], Condition | None]:
    def resolve(key: str) -> Condition | None:
        definition = definitions.get(key)
        return definition.condition() if definition is not None else None

    return resolve


def affected(ws: Workspace, tables: Collection[str]) -> list[str]:
    """The active dynamic segments that read any of ``tables``, in dependency order."""
    wanted = set(tables)
    return [k for k, r in segment_reads(ws).items() if r.tables & wanted]


def clocked(ws: Workspace) -> list[str]:
    """The active dynamic segments whose rules depend on the clock."""
    return [k for k, r in segment_reads(ws).items() if r.timed]


def evaluate_changed(ws: Workspace, changes: Mapping[str, Collection[str]],
                     as_of: datetime | None = None,
                     read_by: dict[str, Reads] | None = None) -> list[RunResult]:
    """Bring memberships up to date after new rows: ``changes`` maps a table (orders,
    events, tickets, feedback, customers) to the customers it has new rows for.

    Each affected segment is evaluated once, for the union of the customers changed in
    any table it reads. ``read_by`` is ``segment_reads(ws)`` if the caller keeps it.
    """
    if not any(changes.values()):
        return []
    as_of = as_of or utcnow()
    by_customers: dict[frozenset[str], list[str]] = {}
    for key, read in (read_by if read_by is not None else segment_reads(ws)).items():
        customers = frozenset().union(*(set(changes.get(t, ())) for t in read.tables))
        if customers:
            by_customers.setdefault(customers, []).append(key)
    results: list[RunResult] = []
    for customers, keys in by_customers.items():
        results += evaluate_all(ws, as_of, keys, only=customers)
    return results


def unevaluated(ws: Workspace, read_by: dict[str, Reads] | None = None) -> list[str]:
    """Active dynamic segments whose applied version has no successful run yet (new or
    changed definitions saved without an evaluation); ``read_by`` as in
    ``evaluate_changed``."""
    import sqlalchemy as sa

    from tierwise.store.tables import definitions, segment_runs

    with ws.control.read() as conn:
        applied = dict(conn.execute(sa.select(definitions.c.key, sa.func.max(
            definitions.c.version)).where(definitions.c.kind == defs.KIND)
            .group_by(definitions.c.key)).all())
        ran = dict(conn.execute(sa.select(segment_runs.c.segment_key, sa.func.max(
            segment_runs.c.version)).where(segment_runs.c.error.is_(None))
            .group_by(segment_runs.c.segment_key)).all())
    stale = {k for k, v in applied.items() if ran.get(k) != v}
    if not stale:
        return []
    return [k for k in (read_by if read_by is not None else segment_reads(ws)) if k in stale]


def sweep(ws: Workspace, as_of: datetime | None = None) -> list[RunResult]:
    """Re-evaluate, for everyone, the segments that the clock alone can change."""
    keys = clocked(ws)
    return evaluate_all(ws, as_of or utcnow(), keys, reason="time") if keys else []


__all__ = ["Reads", "affected", "clocked", "evaluate_changed", "reads", "segment_reads",
           "sweep", "unevaluated"]
