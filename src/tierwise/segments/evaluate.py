"""Run a compiled segment rule on the workspace's engine and return its members."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

import pyarrow as pa
import sqlalchemy as sa

from tierwise.compile.segments import CompiledRule, compile_rule
from tierwise.definitions.segment_ast import Condition
from tierwise.definitions.segment_fields import RuleError
from tierwise.definitions.segment_parser import parse
from tierwise.store import customers as customer_store
from tierwise.store.control import utcnow
from tierwise.store.tables import snapshots
from tierwise.workspace import Workspace


def _used(params: dict[str, object], sql: str) -> dict[str, object]:
    return {k: v for k, v in params.items() if re.search(rf"[$:]{k}\b", sql)}


def snapshot_for(ws: Workspace, as_of: datetime) -> pa.Table | None:
    """The latest snapshot computed as of ``as_of`` or earlier (else the earliest one)."""
    import pyarrow.parquet as pq

    with ws.control.read() as conn:
        row = conn.execute(sa.select(snapshots.c.path).where(snapshots.c.as_of <= as_of)
                           .order_by(snapshots.c.as_of.desc(), snapshots.c.snapshot_id.desc())
                           .limit(1)).first()
        if row is None:
            row = conn.execute(sa.select(snapshots.c.path).order_by(snapshots.c.as_of)
                               .limit(1)).first()
    return None if row is None else pq.read_table(ws.root / row.path)


def stored_members(ws: Workspace) -> pa.Table:
    from tierwise.store.tables import segment_members

    with ws.control.read() as conn:
        rows = conn.execute(sa.select(segment_members.c.segment_key,
                                      segment_members.c.customer_id)).all()
    return pa.table({"segment_key": pa.array([r[0] for r in rows], pa.string()),
                     "customer_id": pa.array([r[1] for r in rows], pa.string())})


def run_compiled(ws: Workspace, compiled: CompiledRule, as_of: datetime) -> pa.Table:
    with ws.control.read() as conn:
        people = customer_store.as_arrow(conn)
    arrow = {"customers": people}
    if compiled.uses_snapshot:
        facts = snapshot_for(ws, as_of)
        if facts is None:
            raise RuleError("this rule uses computed fields (RFM, tier, lifecycle, CLV, …): "
                            "run `tierwise compute` first")
        arrow["snapshot"] = facts
    if compiled.uses_members:
        arrow["segment_members"] = stored_members(ws)
    scans = {name: ws.facts.scan(name) for name in compiled.sources}
    with ws.engine.session(scans, arrow) as session:
        return session.query(compiled.sql, _used(compiled.params, compiled.sql))


def evaluate_rule(ws: Workspace, rule: str | Condition, as_of: datetime | None = None,
                  resolve: Callable[[str], Condition | None] | None = None,
                  key: str | None = None) -> pa.Table:
    """Members (a one-column ``customer_id`` table, sorted) of a rule at ``as_of``.

    >>> evaluate_rule(ws, "COUNT(orders, LAST 30d) >= 2").num_rows  # doctest: +SKIP
    """
    tree = parse(rule) if isinstance(rule, str) else rule
    as_of = as_of or utcnow()
    compiled = compile_rule(tree, ws.engine.name, as_of, ws.config.zone, resolve, key=key)
    return run_compiled(ws, compiled, as_of)
