"""Segment members, their history and the runs that changed them, as the front ends read
them (``segment_members``, ``segment_history``, ``segment_runs``)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from tierwise.store import sizes
from tierwise.store.control import as_utc, chunked, text_column
from tierwise.store.tables import segment_history, segment_members, segment_runs


def _run(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for key in ("as_of", "started_at", "finished_at"):
        if key in out:
            out[key] = as_utc(out[key])
    return out


def runs(conn: sa.Connection, key: str, limit: int = 50) -> list[dict[str, Any]]:
    """A segment's evaluations, newest first."""
    return [_run(r) for r in conn.execute(
        sa.select(segment_runs).where(segment_runs.c.segment_key == key)
        .order_by(segment_runs.c.run_id.desc()).limit(limit))]


def last_run(conn: sa.Connection, key: str, succeeded: bool = False) -> dict[str, Any] | None:
    """A segment's latest evaluation (``succeeded``: the latest without an error)."""
    query = sa.select(segment_runs).where(segment_runs.c.segment_key == key)
    if succeeded:
        query = query.where(segment_runs.c.error.is_(None))
    row = conn.execute(query.order_by(segment_runs.c.run_id.desc()).limit(1)).first()
    return _run(row) if row is not None else None


def recent_runs(conn: sa.Connection, per_segment: int = 30) -> dict[str, list[dict[str, Any]]]:
    """The latest ``per_segment`` evaluations of every segment, oldest first."""
    r = segment_runs.c
    ranked = sa.select(r.segment_key, r.started_at, r.seconds, r.members, r.as_of,
                       sa.func.row_number().over(partition_by=r.segment_key,
                                                 order_by=r.run_id.desc()).label("n")
                       ).subquery()
    found: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(sa.select(ranked).where(ranked.c.n <= per_segment)
                            .order_by(ranked.c.segment_key, ranked.c.n.desc())):
        found.setdefault(row.segment_key, []).append(_run(row))
    return found


def history(conn: sa.Connection, key: str, *, customer_id: str | None = None,
            before: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Entries and exits of a segment, newest first (``before``: a history_id cursor)."""
    h = segment_history.c
    query = sa.select(segment_history).where(h.segment_key == key)
    if customer_id:
        query = query.where(h.customer_id == customer_id)
    if before is not None:
        query = query.where(h.history_id < before)
    return [{**dict(r._mapping), "entered_at": as_utc(r.entered_at),
             "exited_at": as_utc(r.exited_at)}
            for r in conn.execute(query.order_by(h.history_id.desc()).limit(limit))]


def members_page(conn: sa.Connection, key: str, after: str | None = None,
                 limit: int = 100) -> list[dict[str, Any]]:
    """Up to ``limit`` current members in id order after ``after``, with when they
    entered."""
    m = segment_members.c
    query = sa.select(m.customer_id, m.entered_at).where(m.segment_key == key)
    if after:
        query = query.where(m.customer_id > after)
    return [{"customer_id": r.customer_id, "entered_at": as_utc(r.entered_at)}
            for r in conn.execute(query.order_by(m.customer_id).limit(limit))]


def segments_of(conn: sa.Connection, customer_id: str) -> list[str]:
    """The segments a customer is a member of now."""
    return [r[0] for r in conn.execute(
        sa.select(segment_members.c.segment_key)
        .where(segment_members.c.customer_id == customer_id)
        .order_by(segment_members.c.segment_key))]


def last_history_id(conn: sa.Connection, key: str) -> int | None:
    """The newest history entry of a segment: changes with every entry or exit."""
    found = conn.execute(sa.select(sa.func.max(segment_history.c.history_id))
                         .where(segment_history.c.segment_key == key)).scalar()
    return None if found is None else int(found)


def pairs(conn: sa.Connection, only: list[str] | None = None) -> list[tuple[str, str]]:
    """Every stored (segment, customer) membership, or those of the customers ``only``."""
    m = segment_members.c
    if only is None:
        return [(r[0], r[1]) for r in conn.execute(sa.select(m.segment_key, m.customer_id))]
    return [(r[0], r[1]) for part in chunked(only) for r in conn.execute(
        sa.select(m.segment_key, m.customer_id).where(m.customer_id.in_(part)))]


def evaluated_versions(conn: sa.Connection) -> dict[str, int]:
    """Per segment, the latest definition version that was evaluated without an error."""
    return {str(k): int(v) for k, v in conn.execute(
        sa.select(segment_runs.c.segment_key, sa.func.max(segment_runs.c.version))
        .where(segment_runs.c.error.is_(None)).group_by(segment_runs.c.segment_key))}


# -- writing what evaluations find ---------------------------------------------------------

def current(conn: sa.Connection, key: str) -> set[str]:
    """The current members of a segment."""
    return set(current_ids(conn, key).to_pylist())


def current_ids(conn: sa.Connection, key: str) -> pa.Array:
    """The current members of a segment as Arrow (a batch evaluation compares millions)."""
    return text_column(conn, sa.select(segment_members.c.customer_id)
                       .where(segment_members.c.segment_key == key))


def among(conn: sa.Connection, keys: Collection[str], scope: Collection[str]
          ) -> dict[str, set[str]]:
    """The current members of each of ``keys`` among the customers in ``scope``."""
    m = segment_members.c
    found: dict[str, set[str]] = {k: set() for k in keys}
    for part in chunked(sorted(scope)):
        # ``all()``: one fetch for thousands of rows instead of one call per row
        for key, customer in conn.execute(sa.select(m.segment_key, m.customer_id).where(
                m.segment_key.in_(sorted(keys)), m.customer_id.in_(part))).all():
            found[key].add(customer)
    return found


Diff = tuple[str, int, list[str], list[str], str]  # key, version, entered, exited, reason


def write_diffs(conn: sa.Connection, at: datetime, diffs: list[Diff]) -> None:
    """Members who entered and left segments at ``at`` (several segments, or several
    reasons of one): memberships, history and the kept member counts. The entries of all
    go in one insert per table (a real-time round writes a dozen segments' changes; a
    statement per segment and table cost more than the rows)."""
    entries = [(key, version, c, reason) for key, version, entered, _, reason in diffs
               for c in entered]
    for part in chunked(entries):
        conn.execute(segment_members.insert(), [
            {"segment_key": key, "customer_id": c, "entered_at": at, "version": version}
            for key, version, c, _ in part])
        conn.execute(segment_history.insert(), [
            {"segment_key": key, "customer_id": c, "entered_at": at, "enter_reason": reason,
             "version": version} for key, version, c, reason in part])
    deltas: dict[str, int] = {}
    for key, _, entered, exited, reason in diffs:
        for ids in chunked(exited):
            conn.execute(segment_members.delete().where(
                segment_members.c.segment_key == key, segment_members.c.customer_id.in_(ids)))
            conn.execute(segment_history.update().where(
                segment_history.c.segment_key == key, segment_history.c.customer_id.in_(ids),
                segment_history.c.exited_at.is_(None)).values(exited_at=at, exit_reason=reason))
        # ``entered`` are not members yet and ``exited`` are: the size moves by the difference
        deltas[key] = deltas.get(key, 0) + len(entered) - len(exited)
    sizes.change(conn, deltas)


def record_run(conn: sa.Connection, **values: Any) -> None:
    """An evaluation of a segment (segment_key, version, as_of, started_at, seconds, and
    members, entered, exited, reason — or error)."""
    record_runs(conn, [values])


def record_runs(conn: sa.Connection, runs: list[dict[str, Any]]) -> None:
    """Several evaluations (``record_run``'s values each, the same keys in all)."""
    if runs:
        conn.execute(segment_runs.insert(), runs)


def last_succeeded(conn: sa.Connection, keys: Collection[str]) -> dict[str, dict[str, Any]]:
    """The last successful run (version, as_of) of each of ``keys``. One lookup per key,
    newest first on the (segment_key, run_id) index: a grouped ``MAX`` with the error filter
    read every run of the segments (~20 ms a real-time round after 10 minutes)."""
    r = segment_runs.c
    latest = [sa.select(r.run_id).where(r.segment_key == key, r.error.is_(None))
              .order_by(r.run_id.desc()).limit(1).scalar_subquery() for key in sorted(keys)]
    if not latest:
        return {}
    return {row.segment_key: {"version": row.version, "as_of": as_utc(row.as_of)}
            for row in conn.execute(sa.select(r.segment_key, r.version, r.as_of)
                                    .where(r.run_id.in_(latest)))}


def members_at(conn: sa.Connection, key: str, at: datetime) -> list[str]:
    """The members of a segment at a past instant, from its history."""
    h = segment_history.c
    return sorted(r[0] for r in conn.execute(sa.select(h.customer_id).where(
        h.segment_key == key, h.entered_at <= at,
        sa.or_(h.exited_at.is_(None), h.exited_at > at)).distinct()))


def stays_of(conn: sa.Connection, customer_id: str) -> list[dict[str, Any]]:
    """Every stay of a customer in any segment, newest first."""
    h = segment_history.c
    rows = conn.execute(sa.select(h.segment_key, h.entered_at, h.exited_at, h.enter_reason,
                                  h.exit_reason, h.version)
                        .where(h.customer_id == customer_id)
                        .order_by(h.entered_at.desc(), h.segment_key)).all()
    return [{**dict(r._mapping), "entered_at": as_utc(r.entered_at),
             "exited_at": as_utc(r.exited_at)} for r in rows]
