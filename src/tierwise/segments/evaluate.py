"""Run a compiled segment rule on the workspace's engine and return its members."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tierwise.compile.compiled import CompiledBatch, CompiledRule, flat_query
from tierwise.compile.segments import compile_rule
from tierwise.definitions.schemas import ROLLUPS
from tierwise.definitions.segment_ast import SOURCES, Condition
from tierwise.definitions.segment_fields import CUSTOMER_COLUMN, RuleError
from tierwise.definitions.segment_parser import parse
from tierwise.engines.base import TableScan
from tierwise.segments.vocabulary import vocabulary
from tierwise.store import customer_mirror, memberships
from tierwise.store import customers as customer_store
from tierwise.store import leads as lead_store
from tierwise.store import snapshots as snapshot_store
from tierwise.store.columns import Columns
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace


def snapshot_for(ws: Workspace, as_of: datetime) -> pa.Table | None:
    """The latest snapshot computed as of ``as_of`` or earlier (else the earliest one)."""
    import pyarrow.parquet as pq

    found = _snapshot(ws, as_of)
    if found is None:
        return None
    path, key, cached = found
    if cached is None:
        cached = pq.read_table(path)
        with _snapshot_lock:
            _snapshot_cache.clear()
            _snapshot_cache[key] = cached
    return cached


def snapshot_columns(ws: Workspace, as_of: datetime) -> Columns | None:
    """``snapshot_for``'s snapshot with its columns read when asked for: a batch reads a
    few of its 33 (the copy kept in memory when it is the one)."""
    found = _snapshot(ws, as_of)
    return None if found is None else Columns(found[2] if found[2] is not None else found[0])


def _snapshot(ws: Workspace, as_of: datetime
              ) -> tuple[Path, tuple[Path, int, int], pa.Table | None] | None:
    """The snapshot's file, its key in the cache and the copy kept there, if any."""
    with ws.control.read() as conn:
        row = snapshot_store.as_of(conn, as_of)
    if row is None:
        return None
    path = ws.root / row["path"]
    stat = path.stat()
    # keep the last one read (the real-time worker reads the same one for every
    # micro-batch); erasure rewrites a snapshot in place, hence time and size in the key
    key = (path, stat.st_mtime_ns, stat.st_size)
    with _snapshot_lock:
        return path, key, _snapshot_cache.get(key)


_snapshot_cache: dict[tuple[Path, int, int], pa.Table] = {}
_snapshot_lock = threading.Lock()


def stored_members(ws: Workspace, only: list[str] | None = None) -> pa.Table:
    """Every stored membership, or those of the customers ``only``."""
    with ws.control.read() as conn:
        rows = memberships.pairs(conn, only)
    return pa.table({"segment_key": pa.array([r[0] for r in rows], pa.string()),
                     "customer_id": pa.array([r[1] for r in rows], pa.string())})


class Evaluation:
    """One engine session with everything rules read, for evaluating many rules at once.

    >>> with Evaluation(ws, as_of) as ev:  # doctest: +SKIP
    ...     members = ev.run(compiled)
    """

    #: Fact tables rules read, which a restricted evaluation (``only``) narrows to the
    #: chosen customers. The roll-ups of them and the contacts are registered when a rule
    #: reads them (``register_sources``): their contact links are read then, not for every
    #: evaluation (the real-time worker makes several a second).
    FACTS = tuple(name for name in SOURCES if name != "contacts" and name not in ROLLUPS)
    #: Those that can come from the rows kept in memory by customer (``customer_id``).
    HELD = tuple(name for name in FACTS if CUSTOMER_COLUMN[name] == "customer_id")

    def __init__(self, ws: Workspace, as_of: datetime,
                 only: Collection[str] | None = None) -> None:
        self.ws = ws
        self.as_of = as_of
        #: Evaluate for these customers only (real-time updates of a few customers): every
        #: table a rule reads is narrowed to them, so the cost follows their number.
        self.only = None if only is None else sorted(set(only))
        self._session_cm: Any = None
        self.session: Any = None
        self._snapshot = False
        self._members = False
        self._leads = False
        #: The account sources registered so far (contacts, roll-ups).
        self._accounts: set[str] = set()
        #: Fact tables registered on first use (``_facts``), and their columns so far.
        self._held: dict[str, TableScan] = {}
        #: Fact tables registered when a rule first reads them (chosen customers only).
        self._later: dict[str, TableScan] = {}
        self._from_memory: dict[str, tuple[str, ...]] = {}
        self._wanted: np.ndarray | None = None
        self._chosen: pa.Array | None = None
        #: The customers registered, personal data sealed until a query reads it.
        self._customers: pa.Table | None = None
        self._revealed: set[str] = set()
        #: For everyone (no ``only``): the customers' and the snapshot's columns, read
        #: when a query first reads them (``_with``); the snapshot's read so far.
        self._pinned: dict[str, Columns] = {}
        self._snapshot_table: pa.Table | None = None

    def __enter__(self) -> Evaluation:
        ws = self.ws
        if self.only is None:
            self._pinned["customers"] = customer_mirror.pinned(ws.root, ws.control)
            customers = self._pinned["customers"].read(["customer_id"])
        else:
            customers = customer_mirror.read(ws.root, ws.control)
        scans = ws.facts.scans(self.FACTS)
        if self.only is not None:
            chosen = self._chosen = pa.array(self.only, pa.string())
            customers = customers.filter(pc.is_in(customers["customer_id"], chosen))
            if ws.facts.keep_rows and ws.engine.in_process:
                # the facts come from memory (store.customer_rows) once a query names them
                self._held = {name: scans.pop(name) for name in self.HELD}
            # the others are narrowed to the chosen customers when a rule first reads them
            # (two statements each, in a session the real-time worker opens several times a
            # second for rules that mostly read one or two tables)
            self._later, scans = scans, {}
        self._customers = customers
        self._session_cm = ws.engine.session(scans, {"customers": customers})
        self.session = self._session_cm.__enter__()
        if self.only is not None:
            self.session.register_arrow("_only", pa.table({"customer_id": chosen}))
        return self

    def _narrow(self, name: str, scan: TableScan) -> None:
        """Register ``scan`` as fact table ``name`` narrowed to the chosen customers."""
        self.session.register_scan(f"_all_{name}", scan)
        self.session.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM _all_{name} "
            f"WHERE {CUSTOMER_COLUMN[name]} IN (SELECT customer_id FROM _only)")

    def _facts(self, tables: frozenset[str],
                columns_in: Callable[[Iterable[str]], tuple[str, ...]]) -> None:
        """Register the held fact tables a query reads (``tables``; ``columns_in`` picks the
        columns it reads), from the in-memory rows of the chosen customers (or as narrowed
        file scans when memory cannot stand for them)."""
        for name, scan in self._held.items():
            if name not in tables:
                continue
            have = self._from_memory.get(name)
            columns = columns_in(scan.schema.names)
            if have is not None and set(columns) <= set(have):
                continue
            if have is not None:
                columns = tuple(c for c in scan.schema.names if c in have or c in columns)
            rows = self.ws.facts.customer_rows(name)
            if rows.refresh(self.ws.engine, scan, columns):
                if self._wanted is None:
                    self._wanted = np.array(self.only, dtype=str)
                self.session.register_arrow(name, rows.of(self._wanted, columns))
                self._from_memory[name] = columns
            else:
                self._narrow(name, scan)
                self._from_memory[name] = tuple(scan.schema.names)

    def __exit__(self, *exc: object) -> None:
        try:
            self._session_cm.__exit__(*exc)
        finally:
            for source in self._pinned.values():
                source.close()

    def _with(self, name: str, table: pa.Table | None, wanted: Iterable[str]
              ) -> pa.Table | None:
        """``table`` (the columns of the pinned table ``name`` read so far, or None) with
        those of ``wanted`` it lacks, read now; None when it lacks none."""
        source = self._pinned[name]
        have = set() if table is None else set(table.column_names)
        wanted = set(wanted)
        missing = [n for n in source.names if n in wanted and n not in have]
        if table is not None and not missing:
            return None
        extra = source.read(missing)
        if table is None:
            return extra
        for column in missing:
            table = table.append_column(extra.schema.field(column), extra[column])
        return table

    def _reveal(self, columns_in: Callable[[Iterable[str]], tuple[str, ...]]) -> None:
        """Open the sealed customer columns (PII, attributes) a query reads; for everyone,
        read the customers' columns it reads first."""
        assert self._customers is not None
        opening = set(columns_in(customer_store.SEALED_COLUMNS)) - self._revealed
        pinned = self._pinned.get("customers")
        more = None if pinned is None else self._with("customers", self._customers,
                                                       columns_in(pinned.names))
        if more is None and not opening:
            return
        self._revealed |= opening
        self._customers = customer_store.reveal(more if more is not None else self._customers,
                                                self.ws.control.pii, opening)
        self.session.register_arrow("customers", self._customers)

    def _register_snapshot(self, columns_in: Callable[[Iterable[str]], tuple[str, ...]]
                           ) -> None:
        """The snapshot's rows of the chosen customers, or for everyone the columns a
        query reads of it (``columns_in``)."""
        if self.only is not None:
            if not self._snapshot:
                facts = snapshot_for(self.ws, self.as_of)
                if facts is None:
                    raise _no_snapshot()
                self.session.register_arrow("snapshot", facts.filter(
                    pc.is_in(facts["customer_id"], self._chosen)))
                self._snapshot = True
            return
        pinned = self._pinned.get("snapshot")
        if pinned is None:
            pinned = snapshot_columns(self.ws, self.as_of)
            if pinned is None:
                raise _no_snapshot()
            self._pinned["snapshot"] = pinned
        more = self._with("snapshot", self._snapshot_table, columns_in(pinned.names))
        if more is not None:
            self._snapshot_table = more
            self.session.register_arrow("snapshot", more)

    def register_sources(self, sources: frozenset[str] | set[str]) -> None:
        """Register the sources ``sources`` names that a session gets on demand: for chosen
        customers, the facts not held in memory (narrowed to them); the contacts (of the
        chosen accounts) and the roll-ups (narrowed like the other facts). A query of the
        session's own (``segments.literals``) asks for them too."""
        for name in sorted(sources & self._later.keys()):
            self._narrow(name, self._later.pop(name))
        for name in sorted((sources & {"contacts", *ROLLUPS}) - self._accounts):
            if name == "contacts":
                self.session.register_arrow("contacts", customer_mirror.contacts(
                    self.ws.root, self.ws.control, self._chosen))
            elif self.only is None:
                self.session.register_scan(name, self.ws.facts.scan(name))
            else:
                self._narrow(name, self.ws.facts.scan(name))
            self._accounts.add(name)

    def _register(self, compiled: CompiledRule) -> None:
        """Make what ``compiled`` reads available in the session."""
        self._reveal(compiled.columns_in)
        if compiled.uses_snapshot:
            self._register_snapshot(compiled.columns_in)
        if compiled.uses_members and not self._members:
            self.session.register_arrow("segment_members", stored_members(self.ws, self.only))
            self._members = True
        self.register_sources(compiled.sources)
        if compiled.uses_leads and not self._leads:
            self.session.register_arrow("lead_scores", lead_store.as_table(self.ws.control))
            self._leads = True
        if self._held:
            self._facts(compiled.sources, compiled.columns_in)

    def run(self, compiled: CompiledRule) -> pa.Table:
        self._register(compiled)
        with self._rule_errors():
            return self.session.query(compiled.sql, compiled.params)

    @contextmanager
    def _rule_errors(self) -> Iterator[None]:
        """An engine's refusal of a compiled rule (a string compared with a number, a value
        out of range) as the rule's error, not the server's."""
        try:
            yield
        except self.ws.engine.query_errors as exc:
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()),
                         type(exc).__name__)
            raise RuleError(f"this rule cannot be evaluated: {first[:300]}",
                            zh=f"这条规则无法计算：{first[:300]}") from None

    def run_many(self, rules: dict[str, CompiledRule]) -> dict[str, pa.Array] | None:
        """The members of several rules of one batch in one query (each query has a fixed
        cost of a few milliseconds, which dominates when the rules see a few customers,
        and a scan of the customers and the aggregates, which dominates when they see
        everyone); None when they cannot share one (a parameter bound differently) or the
        shared query fails, so that the caller runs them one by one and each error is its
        own. Rules with a flat form run as the columns of one SELECT, others as a UNION.
        Members come as Arrow arrays in no particular order: the caller compares sets, and
        millions of members as Python strings at once would cost more than the query."""
        params: dict[str, object] = {}
        for compiled in rules.values():
            if any(k in params and params[k] != v for k, v in compiled.params.items()):
                return None
            params.update(compiled.params)
        flat = flat_query(list(rules.values()))
        try:
            # the columns all of them read first, in one go: an engine outside the process
            # (Spark) copies each table it is given again
            self._reveal(_columns_of(rules.values()))
            if any(r.uses_snapshot for r in rules.values()):
                self._register_snapshot(_columns_of(
                    r for r in rules.values() if r.uses_snapshot))
            for compiled in rules.values():
                self._register(compiled)
            try:
                table = self.session.query(flat or _union(rules), params)
            except Exception:  # noqa: BLE001 - an engine may refuse the flat form
                if flat is None:
                    raise
                flat, table = None, self.session.query(_union(rules), params)
        except Exception:  # noqa: BLE001 - the caller runs each rule on its own
            return None
        customers = table["customer_id"]
        if flat is not None:
            return {key: customers.filter(table[f"_r{i}"]).combine_chunks()
                    for i, key in enumerate(rules)}
        positions = table["_rule"]
        return {key: customers.filter(pc.equal(positions, i)).combine_chunks()
                for i, key in enumerate(rules)}

    def prepare(self, batch: CompiledBatch) -> None:
        """Compute the batch's shared aggregates table (one pass per source)."""
        if batch.aggregates_sql is not None:
            self._reveal(batch.aggregates_columns_in)
            self.register_sources(batch.sources)
            if self._held:
                self._facts(batch.sources, batch.aggregates_columns_in)
            with self._rule_errors():
                self.session.materialize("aggregates", batch.aggregates_sql,
                                         batch.aggregates_params)


def _columns_of(rules: Iterable[CompiledRule]) -> Callable[[Iterable[str]], tuple[str, ...]]:
    """``CompiledRule.columns_in`` of several rules together."""
    chosen = list(rules)

    def columns_in(names: Iterable[str]) -> tuple[str, ...]:
        names = tuple(names)
        read = {n for r in chosen for n in r.columns_in(names)}
        return tuple(n for n in names if n in read)

    return columns_in


def _no_snapshot() -> RuleError:
    return RuleError("this rule uses computed fields (RFM, tier, lifecycle, CLV, …): run "
                     "`tierwise compute` first",
                     zh="这条规则用到了计算字段（RFM、等级、生命周期、CLV 等）："
                     "请先运行 `tierwise compute`")


def _union(rules: dict[str, CompiledRule]) -> str:
    """The rules' members as one table of (rule position, customer)."""
    return " UNION ALL ".join(
        f"SELECT {i} AS _rule, customer_id FROM ({compiled.sql}) AS _r{i}"
        for i, compiled in enumerate(rules.values()))


def run_compiled(ws: Workspace, compiled: CompiledRule, as_of: datetime) -> pa.Table:
    with Evaluation(ws, as_of) as evaluation:
        return evaluation.run(compiled)


def holding(ws: Workspace, rules: Iterable[str], customers: Collection[str],
            as_of: datetime) -> dict[str, set[str]]:
    """For each rule, those of ``customers`` it holds for at ``as_of`` (one session)."""
    words = vocabulary(ws)
    found: dict[str, set[str]] = {}
    with Evaluation(ws, as_of, sorted(customers)) as evaluation:
        for rule in dict.fromkeys(rules):
            compiled = compile_rule(parse(rule), ws.engine.name, as_of, ws.config.zone,
                                    vocabulary=words)
            found[rule] = set(evaluation.run(compiled)["customer_id"].to_pylist())
    return found


def evaluate_rule(ws: Workspace, rule: str | Condition, as_of: datetime | None = None,
                  resolve: Callable[[str], Condition | None] | None = None,
                  key: str | None = None) -> pa.Table:
    """Members (a one-column ``customer_id`` table, sorted) of a rule at ``as_of``.

    >>> evaluate_rule(ws, "COUNT(orders, LAST 30d) >= 2").num_rows  # doctest: +SKIP
    """
    tree = parse(rule) if isinstance(rule, str) else rule
    as_of = as_of or utcnow()
    compiled = compile_rule(tree, ws.engine.name, as_of, ws.config.zone, resolve, key=key,
                            vocabulary=vocabulary(ws))
    return run_compiled(ws, compiled, as_of)
