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
  rule depends on the clock, for everyone, with the reason ``time``. Between two instants
  the clock can only move a customer whose rows (or master data) lie on a moving *edge*:
  an event leaving a ``LAST 7d`` window, a last order turning 91 days old, a sign-up date
  passing ``-30d``. ``time_edges`` derives those edges from a rule and ``crossing`` finds
  the customers on them, so ``sweep_since`` evaluates only those customers: the server
  does that every ``sweep_seconds``, and a member leaves within that long of the instant
  the rule became false.

>>> reads(parse("COUNT(orders, LAST 30d) >= 2"))  # doctest: +SKIP
Reads(tables=frozenset({'orders'}), timed=True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from tierwise.compile.dialects import render
from tierwise.compile.segments import shift
from tierwise.definitions.schemas import ROLLUPS
from tierwise.definitions.segment_ast import (
    Aggregate,
    Call,
    Condition,
    Field,
    InSegment,
    Literal,
    Operand,
    RelativeDate,
)
from tierwise.definitions.segment_fields import (
    CUSTOMER_COLUMN,
    LIVE_FIELDS,
    TIME_COLUMN,
    RuleError,
    children,
    customer_field,
    operands,
    source_field,
)
from tierwise.segments import catalog as defs
from tierwise.segments.membership import RunResult, evaluate_all
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace

#: What a rule can read: the fact tables, ``customers`` (master data), ``snapshot``
#: (computed fields), ``members`` (stored members of static lists) and ``leads`` (lead
#: scores).
TABLES = ("orders", "events", "tickets", "feedback", "referrals", "opportunities",
          "opportunity_stages", "contacts", "account_orders", "account_events", "customers",
          "snapshot", "members", "leads")
_CLOCKED = ("DAYS_SINCE_LAST", "DAYS_SINCE_FIRST")


@dataclass(frozen=True)
class Reads:
    tables: frozenset[str]
    #: True when the rule's value can change with the clock alone.
    timed: bool
    #: Where the clock moves it (``time_edges``); None: sweep everyone.
    edges: frozenset[Edge] | None = frozenset()

    @property
    def on_edges(self) -> bool:
        """The clock moves the rule's value and its edges say where: an edge search finds
        the customers it moves (no sweep of everyone needed between full sweeps)."""
        return self.timed and self.edges is not None

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
    if isinstance(node, Call) and node.function.startswith("DAYS_UNTIL_"):
        return Reads(frozenset(), True)  # counts down with the calendar
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
        if isinstance(operand, Call) and isinstance(operand.argument, Field):
            operand = operand.argument  # the field a date part or countdown reads
        if isinstance(operand, Field) and source is None:
            table = customer_field(operand).table
            found |= Reads(frozenset({LIVE_FIELDS[operand.name].source if table == "live"
                                      else table}), False)
    return found


@dataclass(frozen=True)
class Edge:
    """An instant that trails the clock — ``amount`` ``unit`` before it — and the column
    whose values cross it: the edge of a ``LAST 7d`` window on ``events.occurred_at``, or
    ``-30d`` on ``customers.signup_at``. Calendar units (d, w, m, y) shift in the
    workspace's zone like the compiled rule does; ``s`` is exact seconds (``DAYS_SINCE_*``
    counts whole periods of 86,400 s). ``pad`` widens the band where a rule compares local
    dates rather than instants."""

    table: str  # a source (orders, events, …, referrals) or customers
    column: str
    amount: int
    unit: str
    pad: timedelta = timedelta(0)

    def at(self, as_of: datetime, zone: ZoneInfo) -> datetime:
        if self.unit == "s":
            return as_of - timedelta(seconds=self.amount)
        return shift(as_of, self.amount, self.unit, zone)

    def passing(self, value: datetime, zone: ZoneInfo) -> datetime:
        """When the edge passes ``value`` (the inverse of ``at``; calendar months clamp
        like ``at``, ``pad`` added so that a rule on local dates has changed by then)."""
        if self.unit == "s":
            return value + timedelta(seconds=self.amount) + self.pad
        return shift(value, -self.amount, self.unit, zone) + self.pad

    def band(self, since: datetime, now: datetime, zone: ZoneInfo
             ) -> tuple[datetime, datetime]:
        """Values that the edge passed while the clock went from ``since`` to ``now``
        (both ends included)."""
        return self.at(since, zone) - self.pad, self.at(now, zone) + self.pad


_DAY = timedelta(days=1)


def _numbers(values: Iterable[Operand]) -> list[float] | None:
    found = [float(v.value) for v in values if isinstance(v, Literal)
             and isinstance(v.value, int | float) and not isinstance(v.value, bool)]
    return found or None


def _leaf_edges(leaf: Condition, source: str | None) -> set[Edge] | None:
    """Edges of one comparison; None when the clock enters it in a way not covered here
    (the segment is then swept for everyone)."""
    found: set[Edge] = set()
    items = list(operands(leaf))
    if any(isinstance(i, Call) and i.function.startswith("DAYS_UNTIL_") for i in items):
        return None  # a countdown moves at local midnight for everyone: swept
    for item in items:
        if isinstance(item, Aggregate):
            time_column = TIME_COLUMN[item.source]
            if item.window is not None:
                found.add(Edge(item.source, time_column, item.window.amount,
                               item.window.unit))
            if item.function in _CLOCKED:
                # floor((as_of - t) / 1 day) compared with N changes only when as_of - t
                # passes a whole number of days next to N
                numbers = _numbers(o for o in items if o is not item)
                if numbers is None:
                    return None
                days = {d for n in numbers for d in (math.floor(n), math.floor(n) + 1,
                                                     math.ceil(n))}
                found |= {Edge(item.source, time_column, d * 86400, "s") for d in days}
            if item.where is not None:
                inner = time_edges(item.where, None, item.source)
                if inner is None:
                    return None
                found |= inner
    for item in items:
        if not isinstance(item, RelativeDate):
            continue
        fields = [o for o in items if isinstance(o, Field)]
        if len(fields) != 1:
            return None
        amount, unit = (0, "d") if item.today else (item.amount, item.unit)
        try:
            info = (source_field(source, fields[0]) if source is not None
                    else customer_field(fields[0]))
        except RuleError:
            return None
        if info.json_key is not None:
            return None
        if info.table in ("source", "customers"):
            table = source if info.table == "source" else "customers"
            found.add(Edge(str(table), info.column, amount, unit, _DAY))
        elif info.table == "live" and LIVE_FIELDS[info.column].source == "orders":
            # last_order_at / first_order_at: paid orders
            found.add(Edge("orders", TIME_COLUMN["orders"], amount, unit, _DAY))
        else:
            return None
    return found


def time_edges(rule: Condition, resolve: Callable[[str], Condition | None] | None = None,
               source: str | None = None) -> frozenset[Edge] | None:
    """Every edge at which the clock alone can change ``rule``'s value for a customer, or
    None when some part depends on the clock in another way.

    >>> time_edges(parse("COUNT(events, LAST 7d) >= 2"))  # doctest: +SKIP
    frozenset({Edge(table='events', column='occurred_at', amount=7, unit='d', ...)})
    """
    if isinstance(rule, InSegment):
        inner = resolve(rule.key) if resolve is not None else None
        return frozenset() if inner is None else time_edges(inner, resolve)
    found: set[Edge] = set()
    for child in children(rule):
        part = time_edges(child, resolve, source)
        if part is None:
            return None
        found |= part
    leaf = _leaf_edges(rule, source)
    if leaf is None:
        return None
    return frozenset(found | leaf)


def segment_reads(ws: Workspace) -> dict[str, Reads]:
    """What each active dynamic segment reads, in dependency order."""
    definitions = {k: a.definition for k, a in defs.applied(ws).items()}
    resolve = defs_resolver(definitions)
    result: dict[str, Reads] = {}
    for key in defs.dependency_order(definitions):
        definition = definitions[key]
        rule = definition.condition() if definition.status == "active" else None
        if rule is not None:
            found = reads(rule, resolve)
            edges = time_edges(rule, resolve) if found.timed else frozenset()
            result[key] = Reads(found.tables, found.timed, edges)
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
                     read_by: dict[str, Reads] | None = None,
                     clock: tuple[Collection[str], Collection[str]] | None = None
                     ) -> list[RunResult]:
    """Bring memberships up to date after new rows: ``changes`` maps a table (orders,
    events, tickets, feedback, customers) to the customers it has new rows for.

    The affected segments are evaluated in one pass, for every customer changed in any
    table one of them reads: a segment sees some customers it need not look at (their
    memberships come out the same), and the pass's fixed cost (sessions, the aggregate
    query, the write) is paid once instead of once per distinct set of customers.
    ``clock`` — segment keys and the customers an edge search found on their time edges
    (``crossing``) — joins the same pass. A change is recorded as ``data_change`` when the
    customer has new rows in a table the segment reads, else as ``time``.
    ``read_by`` is ``segment_reads(ws)`` if the caller keeps it.
    """
    reads = read_by if read_by is not None else segment_reads(ws)
    changes = _with_accounts(ws, changes, reads)
    clock_keys = [k for k in (clock[0] if clock else ()) if k in reads]
    clock_customers = set(clock[1]) if clock and clock_keys else set()
    keys = [key for key, read in reads.items()
            if any(changes.get(t) for t in read.tables)
            or (clock_customers and key in clock_keys)]
    if not keys:
        return []
    by_tables: dict[frozenset[str], set[str]] = {}
    for key in keys:
        tables = frozenset(reads[key].tables)
        if tables not in by_tables:
            by_tables[tables] = set().union(*(changes.get(t, ()) for t in tables))
    fresh = {key: by_tables[frozenset(reads[key].tables)] for key in keys}
    customers = set().union(clock_customers, *by_tables.values())

    def reason_of(key: str, customer: str) -> str:
        return "data_change" if customer in fresh[key] else "time"

    return evaluate_all(ws, as_of or utcnow(), keys, only=customers, reason_of=reason_of)


def _with_accounts(ws: Workspace, changes: Mapping[str, Collection[str]],
                   reads: dict[str, Reads]) -> Mapping[str, Collection[str]]:
    """``changes`` with what they change for accounts, when a segment reads an account's
    contacts or its contacts' rows: new orders or events of a contact change its account's
    ``account_orders`` / ``account_events``, a contact added or changed its account's
    ``contacts`` (and the account it left: imports mark that one changed too)."""
    from tierwise.store import customer_mirror

    wanted = {t for r in reads.values() for t in r.tables} & {"contacts", *ROLLUPS}
    sources = {"contacts": "customers", **ROLLUPS}
    touched = {t: changes.get(sources[t], ()) for t in wanted}
    if not any(touched.values()):
        return changes
    contacts = customer_mirror.contacts(ws.root, ws.control)  # accounts through merges
    found = dict(changes)
    for table, ids in touched.items():
        chosen = contacts.filter(pc.is_in(contacts["customer_id"],
                                          value_set=pa.array(list(ids), pa.string())))
        # an account's own rows count in its roll-up, and an account changed (one whose
        # people left it is marked changed by the import) may have other contacts now
        found[table] = set(chosen["account_id"].to_pylist()) | set(ids)
    return found


def unevaluated(ws: Workspace, read_by: dict[str, Reads] | None = None) -> list[str]:
    """Active dynamic segments whose applied version has no successful run yet (new or
    changed definitions saved without an evaluation); ``read_by`` as in
    ``evaluate_changed``."""
    from tierwise.store import memberships, versions

    with ws.control.read() as conn:
        applied = versions.latest_versions(conn, defs.KIND)
        ran = memberships.evaluated_versions(conn)
    stale = {k for k, v in applied.items() if ran.get(k) != v}
    if not stale:
        return []
    return [k for k in (read_by if read_by is not None else segment_reads(ws)) if k in stale]


def crossing(ws: Workspace, edges: Iterable[Edge], since: datetime, now: datetime,
             *, in_memory: bool = False) -> set[str]:
    """The customers with a value on one of ``edges`` between ``since`` and ``now``: the
    only ones whose membership the clock can have changed (merged ids as survivors).

    ``in_memory``: answer for fact tables from the facts kept in memory by customer
    (``FactStore.keep_rows``), brought up to the manifest first. It changes those copies,
    so only the thread that evaluates with them may ask for it. A search is then a few
    binary searches instead of a scan of the whole table. The answer may hold a few
    customers more than the scan's (rows a newer version replaced): those are looked at
    again and come out unchanged."""
    from tierwise.store import customer_mirror

    by_table: dict[str, list[tuple[str, datetime, datetime]]] = {}
    for edge in set(edges):
        low, high = edge.band(since, now, ws.config.zone)
        by_table.setdefault(edge.table, []).append((edge.column, low, high))
    found: set[str] = set()
    if in_memory and ws.facts.keep_rows:
        for table in [t for t in by_table if CUSTOMER_COLUMN.get(t) == "customer_id"
                      and t not in ROLLUPS]:
            if (hits := _crossing_in_memory(ws, table, by_table[table])) is not None:
                found |= hits
                del by_table[table]
    if not by_table:
        return found
    facts = {t: ws.facts.scan(t) for t in by_table if t not in ("customers", "contacts")}
    arrow = ({"customers": customer_mirror.read(ws.root, ws.control)}
             if "customers" in by_table else {})
    if "contacts" in by_table:
        arrow["contacts"] = customer_mirror.contacts(ws.root, ws.control)
    with ws.engine.session(facts, arrow) as session:
        for table, bands in by_table.items():
            params: dict[str, object] = {}
            terms = []
            for i, (column, low, high) in enumerate(bands):
                params[f"lo{i}"], params[f"hi{i}"] = low, high
                terms.append(f'"{column}" BETWEEN :lo{i} AND :hi{i}')
            who = CUSTOMER_COLUMN.get(table, "customer_id")
            sql = render(f"SELECT DISTINCT {who} AS customer_id FROM {table} WHERE {who} IS "
                         f"NOT NULL AND ({' OR '.join(terms)})", ws.engine.name)
            rows = session.query(sql, params)
            found.update(str(v) for v in rows.column(0).to_pylist())
    return found


def upcoming(ws: Workspace, edges: Iterable[Edge], start: datetime, until: datetime,
             limit: int = 200_000) -> list[tuple[datetime, str]]:
    """The instants in (``start``, ``until``] at which a customer's value crosses one of
    ``edges``, with the customer, from the facts kept in memory (fact tables only: other
    edges are left to the sweep); none at all when there are more than ``limit`` (the
    sweep then finds them). For a timer that evaluates each customer when its value crosses
    instead of at the next sweep; the sweep still covers everything."""
    found: list[tuple[datetime, str]] = []
    if not ws.facts.keep_rows:
        return found
    zone = ws.config.zone
    for edge in set(edges):
        if CUSTOMER_COLUMN.get(edge.table) != "customer_id" or edge.table in ROLLUPS:
            continue
        rows = ws.facts.customer_rows(edge.table)
        low, high = edge.band(start, until, zone)
        hits = rows.instants_between(edge.column, [(low, high)])
        if hits is None:
            continue
        for customer, value in hits:
            when = edge.passing(value, zone)
            if start < when <= until:
                found.append((when, customer))
        if len(found) > limit:
            return []
    return sorted(found)


def _crossing_in_memory(ws: Workspace, table: str,
                        bands: list[tuple[str, datetime, datetime]]) -> set[str] | None:
    """``crossing`` for one fact table from its in-memory copy; None when the copy cannot
    answer (then the table is scanned)."""
    from tierwise.store.customer_rows import CUSTOMER

    rows = ws.facts.customer_rows(table)
    wanted = tuple(dict.fromkeys([*rows.columns, CUSTOMER,
                                  *(column for column, _, _ in bands)]))
    if not rows.refresh(ws.engine, ws.facts.scan(table), wanted):
        return None
    found: set[str] = set()
    for column in dict.fromkeys(column for column, _, _ in bands):
        hits = rows.customers_between(column, [(low, high) for c, low, high in bands
                                               if c == column])
        if hits is None:
            return None
        found |= hits
    return found


def edges_of(keys: Iterable[str], read_by: Mapping[str, Reads]) -> set[Edge]:
    """The edges of all of ``keys`` (segments with edges)."""
    edges: set[Edge] = set()
    for key in keys:
        found = read_by[key].edges
        if found is None:
            raise ValueError(f"segment {key!r} has no edges: sweep it for everyone")
        edges |= found
    return edges


def sweep_since(ws: Workspace, keys: Collection[str], since: datetime,
                now: datetime | None = None, read_by: dict[str, Reads] | None = None,
                *, in_memory: bool = False) -> list[RunResult]:
    """The clock's changes to ``keys`` (segments with edges) since ``since``, when every
    membership was last right about the clock: evaluates only the customers ``crossing``
    finds (``in_memory`` as there), with the reason ``time``."""
    now = now or utcnow()
    read_by = read_by if read_by is not None else segment_reads(ws)
    customers = crossing(ws, edges_of(keys, read_by), since, now, in_memory=in_memory)
    if not customers:
        return []
    return evaluate_all(ws, now, keys, only=customers, reason="time")


def sweep(ws: Workspace, as_of: datetime | None = None) -> list[RunResult]:
    """Re-evaluate, for everyone, the segments that the clock alone can change."""
    keys = clocked(ws)
    return evaluate_all(ws, as_of or utcnow(), keys, reason="time") if keys else []


__all__ = ["Edge", "Reads", "affected", "clocked", "crossing", "edges_of", "evaluate_changed",
           "reads", "segment_reads", "sweep", "sweep_since", "time_edges", "unevaluated"]
