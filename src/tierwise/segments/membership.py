"""Batch evaluation: members now vs members before → the diff, the history, the run record.

Each segment's diff, history rows and run record are written in one transaction. A
segment that fails records its error and the others still run.

Reasons: ``rule_change`` (the definition version differs from the last run's),
``backfill`` (as_of earlier than the last run's), ``data_change`` (otherwise), ``time``
(a sweep found that time alone moved someone across a window), ``manual`` (static lists
edited by hand, snapshots frozen).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from tierwise.compile.compiled import CompiledBatch, CompiledRule
from tierwise.compile.segments import compile_batch
from tierwise.definitions.segment_ast import Condition
from tierwise.definitions.vocabulary import Vocabulary
from tierwise.engines.base import Engine
from tierwise.errors import NotFoundError, TierwiseError
from tierwise.segments import catalog as defs
from tierwise.segments.evaluate import Evaluation
from tierwise.segments.vocabulary import vocabulary
from tierwise.store import changes, memberships, sizes
from tierwise.store.control import Connection, utcnow
from tierwise.workspace import Workspace


@dataclass
class RunResult:
    key: str
    version: int
    as_of: datetime
    members: int | None
    entered: int | None
    exited: int | None
    seconds: float
    reason: str | None
    error: str | None = None


def resolver(definitions: dict[str, defs.SegmentDefinition]
             ) -> Callable[[str], Condition | None]:
    """IN_SEGMENT resolution: a dynamic segment's rule, or None for stored members."""

    def resolve(key: str) -> Condition | None:
        if key not in definitions:
            raise TierwiseError(f"IN_SEGMENT({key!r}): no such segment; known: "
                                f"{', '.join(sorted(definitions)) or 'none'}",
                                zh=f"IN_SEGMENT({key!r})：没有这个分群；已有的分群："
                                f"{', '.join(sorted(definitions)) or '无'}")
        return definitions[key].condition()

    return resolve


def applied_resolver(ws: Workspace) -> Callable[[str], Condition | None]:
    """IN_SEGMENT resolution over the applied definitions of the workspace."""
    return resolver({k: a.definition for k, a in defs.applied(ws).items()})


def apply_diff(conn: Connection, key: str, version: int, as_of: datetime,
               entered: Iterable[str], exited: Iterable[str], reason: str,
               prepared: Any = None) -> None:
    apply_diffs(conn, as_of, [(key, version, sorted(entered), sorted(exited), reason)],
                prepared)


def apply_diffs(conn: Connection, as_of: datetime, diffs: list[memberships.Diff],
                prepared: Any = None) -> None:
    """Several segments' changes at one instant (``memberships.write_diffs``: one insert per
    table for all), then their triggers and playbooks in the same order: their outbox rows
    commit with the change (nothing lost, nothing recorded twice); they read no
    memberships, so writing all changes first tells them nothing different."""
    memberships.write_diffs(conn, as_of, diffs)
    for key, _, entered, exited, reason in diffs:
        changes.membership_changed(conn, key, entered, exited, reason, as_of, prepared)


def members_among(conn: Connection, key: str, scope: Collection[str]) -> set[str]:
    """The current members of ``key`` among the customers in ``scope``."""
    return memberships.among(conn, [key], scope)[key]


def changes_between(members: pa.Array | pa.ChunkedArray, before: pa.Array
                    ) -> tuple[list[str], list[str]]:
    """Who entered (in ``members``, not in ``before``) and who left, compared in Arrow:
    only the changed ids become Python strings (a batch over a million customers finds
    millions of members and, once settled, few changes). Each side holds an id once (a
    rule selects rows of the customers; stored members are keyed by segment and id), so
    when every stored member is found among ``members`` nobody left, and the second look-up
    (a hash table of every member) is not needed."""
    if isinstance(members, pa.ChunkedArray):
        members = members.combine_chunks()
    stayed = pc.is_in(members, value_set=before)
    kept = pc.sum(stayed).as_py() or 0
    entered = members.filter(pc.invert(stayed)).to_pylist() if kept < len(members) else []
    exited = before.filter(pc.invert(pc.is_in(before, value_set=members))).to_pylist() \
        if kept < len(before) else []
    return entered, exited


def _why(last: Any, version: int, as_of: datetime, reason: str | None) -> str:
    """The reason of a run given the segment's last successful one (see the module)."""
    if last is not None and last["version"] != version:
        return "rule_change"
    if last is not None and last["as_of"] > as_of:
        return "backfill"
    return reason or "data_change"


def evaluate_segment(ws: Workspace, key: str, version: int, as_of: datetime,
                     compiled: CompiledRule | str, evaluation: Evaluation,
                     shared_seconds: float = 0.0, *, reason: str | None = None,
                     found: pa.Array | None = None) -> RunResult:
    """Evaluate one compiled rule (or record ``compiled``, an error message) and write the
    diff, history and run. ``shared_seconds`` is this segment's share of the batch's
    aggregate pass, counted in its duration; ``found``, its members if the batch's
    rules ran together (``Evaluation.run_many``).

    When ``evaluation`` is restricted to some customers (``Evaluation(only=…)``), only
    their memberships are compared and changed, and a run is recorded only if one changed.
    ``reason`` (``time`` for sweeps) replaces ``data_change`` as the reason.
    """
    started = utcnow()
    t0 = time.perf_counter() - shared_seconds
    scope = evaluation.only
    try:
        if isinstance(compiled, str):
            raise TierwiseError(compiled)
        members = evaluation.run(compiled)["customer_id"] if found is None else found
        with ws.control.write() as conn:
            ws.control.lock(conn, f"segment:{key}")
            why = _why(memberships.last_succeeded(conn, [key]).get(key), version, as_of,
                       reason)
            before = memberships.current_ids(conn, key) if scope is None else pa.array(
                list(members_among(conn, key, scope)), pa.string())
            entered, exited = changes_between(members, before)
            apply_diff(conn, key, version, as_of, entered, exited, why)
            seconds = time.perf_counter() - t0
            if scope is None:
                total = len(members)
                sizes.settle(conn, {key: total})
            else:
                total = sizes.of(conn, [key])[key]
            if scope is None or entered or exited:
                memberships.record_run(
                    conn, segment_key=key, version=version, as_of=as_of, started_at=started,
                    seconds=seconds, members=total, entered=len(entered),
                    exited=len(exited), reason=why)
        return RunResult(key, version, as_of, total, len(entered), len(exited),
                         seconds, why)
    except Exception as exc:  # noqa: BLE001 - one failing segment must not stop the others
        seconds = time.perf_counter() - t0
        with ws.control.write() as conn:
            memberships.record_run(
                conn, segment_key=key, version=version, as_of=as_of, started_at=started,
                seconds=seconds, error=str(exc))
        return RunResult(key, version, as_of, None, None, None, seconds, None, str(exc))


def evaluate_all(ws: Workspace, as_of: datetime | None = None,
                 keys: Collection[str] | None = None, *,
                 only: Collection[str] | None = None,
                 reason: str | None = None,
                 reason_of: Callable[[str, str], str] | None = None) -> list[RunResult]:
    """Evaluate active dynamic segments (all, or ``keys``) in dependency order, for every
    customer or ``only`` some (see ``evaluate_segment`` for ``reason``).

    With ``only``, ``reason_of(segment, customer)`` may give the reason of each change
    instead (a real-time pass that carries both new data and the clock's changes); rule
    changes and backfills still take precedence."""
    as_of = as_of or utcnow()
    applied = defs.applied(ws)
    definitions = {k: a.definition for k, a in applied.items()}
    order = defs.dependency_order(definitions)
    resolve = resolver(definitions)
    chosen = [k for k in order if (keys is None or k in keys)
              and definitions[k].status == "active" and definitions[k].kind == "dynamic"]
    rules = {k: r for k in chosen if (r := definitions[k].condition()) is not None}
    batch = _compiled(rules, ws.engine, as_of, ws.config.zone, resolve,
                      tuple(sorted((k, a.version) for k, a in applied.items())),
                      vocabulary(ws))
    results = []
    with Evaluation(ws, as_of, only) as evaluation:
        t0 = time.perf_counter()
        try:
            evaluation.prepare(batch)
        except Exception as exc:  # the shared pass failed: every segment records why
            batch.errors.update({k: f"aggregate pass failed: {exc}" for k in batch.rules})
            batch.rules.clear()
        share = (time.perf_counter() - t0) / max(1, len(chosen))
        if evaluation.only is not None:
            return _evaluate_scoped(ws, {k: applied[k].version for k in chosen}, as_of,
                                    batch, evaluation, share, reason, reason_of)
        # every rule's members in one query (one scan of the customers and the aggregates
        # instead of one a rule); a rule that fails there runs and fails on its own below
        ready = {k: c for k in chosen if isinstance(c := batch.rules.get(k), CompiledRule)}
        t0 = time.perf_counter()
        together = (evaluation.run_many(ready) if len(ready) > 1 else None) or {}
        if together:
            share += (time.perf_counter() - t0) / len(together)
        for key in chosen:
            compiled = batch.rules.get(key) or batch.errors.get(key, "not compiled")
            results.append(evaluate_segment(ws, key, applied[key].version, as_of, compiled,
                                            evaluation, share, reason=reason,
                                            found=together.get(key)))
    return results


_compiled_cache: OrderedDict[tuple[object, ...], CompiledBatch] = OrderedDict()
_compiled_lock = threading.Lock()


def _compiled(rules: dict[str, Condition], engine: Engine, as_of: datetime, zone: ZoneInfo,
              resolve: Callable[[str], Condition | None], versions: tuple[object, ...],
              words: Vocabulary) -> CompiledBatch:
    """``compile_batch``, kept per segment keys, applied versions (which fix every rule,
    including those IN_SEGMENT inlines), dialect and zone, and re-bound to ``as_of``: the
    real-time worker compiles the same few batches for every micro-batch. The vocabulary
    (tiers and RFM segments change with the settings) is part of the key."""
    key = (engine.name, zone.key, versions, tuple(rules), words)
    with _compiled_lock:
        cached = _compiled_cache.get(key)
        if cached is not None:
            _compiled_cache.move_to_end(key)
    if cached is not None:
        return cached.at(as_of)
    batch = compile_batch(rules, engine.name, as_of, zone, resolve,
                          subqueries_in_columns=engine.subqueries_in_columns,
                          vocabulary=words)
    with _compiled_lock:
        _compiled_cache[key] = batch
        while len(_compiled_cache) > 32:
            _compiled_cache.popitem(last=False)
    return batch.at(as_of)


def _evaluate_scoped(ws: Workspace, versions: dict[str, int], as_of: datetime,
                     batch: CompiledBatch, evaluation: Evaluation, share: float,
                     reason: str | None,
                     reason_of: Callable[[str, str], str] | None = None) -> list[RunResult]:
    """``evaluate_segment`` for many segments restricted to a few customers (real-time
    batches and edge sweeps): every rule runs first, then one transaction reads their
    current members among those customers and writes all diffs, history and outbox rows.
    A segment whose rule fails records its error alone; if the shared write fails, each
    segment is written on its own, so one bad write cannot hold back the others."""
    started = utcnow()
    scope = evaluation.only
    assert scope is not None
    found: dict[str, tuple[set[str], float]] = {}
    results: dict[str, RunResult] = {}
    ready = {k: c for k in versions if isinstance(c := batch.rules.get(k), CompiledRule)}
    t0 = time.perf_counter()
    together = evaluation.run_many(ready) if len(ready) > 1 else None
    if together is not None:
        own = (time.perf_counter() - t0) / len(ready) + share
        found = {k: (set(members.to_pylist()), own) for k, members in together.items()}
    for key, version in versions.items():
        if key in found:
            continue
        compiled = batch.rules.get(key) or batch.errors.get(key, "not compiled")
        t0 = time.perf_counter()
        try:
            if isinstance(compiled, str):
                raise TierwiseError(compiled)
            members = set(evaluation.run(compiled)["customer_id"].to_pylist())
            found[key] = members, time.perf_counter() - t0 + share
        except Exception as exc:  # noqa: BLE001 - recorded like evaluate_segment does
            results[key] = evaluate_segment(ws, key, version, as_of, str(exc), evaluation,
                                            share, reason=reason)
    try:
        results.update(_write_scoped(ws, versions, as_of, found, scope, started, reason,
                                     reason_of))
    except Exception:  # noqa: BLE001 - fall back to one transaction per segment
        for key in found:
            compiled = batch.rules[key]
            results[key] = evaluate_segment(ws, key, versions[key], as_of, compiled,
                                            evaluation, share, reason=reason)
    return [results[k] for k in versions if k in results]


def _write_scoped(ws: Workspace, versions: dict[str, int], as_of: datetime,
                  found: dict[str, tuple[set[str], float]], scope: Collection[str],
                  started: datetime, reason: str | None,
                  reason_of: Callable[[str, str], str] | None = None
                  ) -> dict[str, RunResult]:
    results: dict[str, RunResult] = {}
    if not found:
        return results
    t0 = time.perf_counter()
    with ws.control.write() as conn:
        for key in sorted(found):
            ws.control.lock(conn, f"segment:{key}")
        last = memberships.last_succeeded(conn, found)
        before_all = memberships.among(conn, found, scope)
        hooks = changes.prepare(conn)
        shared = time.perf_counter() - t0
        changed: dict[str, tuple[set[str], set[str], str]] = {}
        diffs: list[memberships.Diff] = []
        for key, (members, _) in found.items():
            why = _why(last.get(key), versions[key], as_of, reason)
            before = before_all[key]
            entered, exited = members - before, before - members
            if reason_of is None or why in ("rule_change", "backfill"):
                parts = {why: (entered, exited)}
            else:  # each change under its own reason; the run under data_change if any
                parts = {}
                for side, ids in enumerate((entered, exited)):
                    for c in ids:
                        parts.setdefault(reason_of(key, c), (set(), set()))[side].add(c)
                if parts:
                    why = "data_change" if "data_change" in parts else sorted(parts)[0]
            changed[key] = entered, exited, why
            diffs += [(key, versions[key], sorted(ins), sorted(outs), part_reason)
                      for part_reason, (ins, outs) in sorted(parts.items()) if ins or outs]
        apply_diffs(conn, as_of, diffs, hooks)
        totals = sizes.of(conn, [k for k, (a, b, _) in changed.items() if a or b])
        runs = []
        for key, (entered, exited, why) in changed.items():
            seconds = found[key][1] + shared / len(found)
            total = totals.get(key)
            if total is not None:
                runs.append({"segment_key": key, "version": versions[key], "as_of": as_of,
                             "started_at": started, "seconds": seconds, "members": total,
                             "entered": len(entered), "exited": len(exited), "reason": why})
            results[key] = RunResult(key, versions[key], as_of, total, len(entered),
                                     len(exited), seconds, why)
        memberships.record_runs(conn, runs)
    return results


def members_at(ws: Workspace, key: str, at: datetime | None = None) -> list[str]:
    """Members now, or at a past instant from the history."""
    with ws.control.read() as conn:
        if at is None:
            return sorted(memberships.current(conn, key))
        return memberships.members_at(conn, key, at)


def edit_static(ws: Workspace, key: str, add: Iterable[str] = (),
                remove: Iterable[str] = (), at: datetime | None = None) -> tuple[int, int]:
    """Add or remove members of a static list (reason ``manual``); returns the counts."""
    applied = defs.applied(ws).get(key)
    if applied is None:
        raise NotFoundError(f"no applied segment {key!r}", zh=f"没有已生效的分群 {key!r}")
    if applied.definition.kind == "dynamic":
        raise TierwiseError(f"{key} is dynamic: its members follow its rule",
                            zh=f"{key} 是动态分群：成员由规则决定，不能手动增删")
    at = at or utcnow()
    with ws.control.write() as conn:
        from tierwise.store.customers import known_ids

        known = set(known_ids(conn).to_pylist())
        unknown = sorted(set(add) - known)
        if unknown:
            listed = ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")
            raise TierwiseError(f"unknown customer id(s): {listed}", zh=f"未知的客户编号：{listed}")
        before = memberships.current(conn, key)
        entered, exited = set(add) - before, set(remove) & before
        apply_diff(conn, key, applied.version, at, entered, exited, "manual")
    return len(entered), len(exited)


def retire(ws: Workspace, key: str, note: str | None = None) -> int:
    """Pause a segment and let every member leave (reason ``rule_change``).

    Definitions and history are kept (a segment's past stays explainable); the paused
    version is saved like any other change and can be re-activated by saving it active.
    Returns how many members left.
    """
    applied = defs.applied(ws).get(key)
    if applied is None:
        raise NotFoundError(f"no applied segment {key!r}", zh=f"没有已生效的分群 {key!r}")
    paused = applied.definition.model_copy(update={"status": "paused"})
    version = defs.save(ws, paused, note or "retired")
    if (defs.folder(ws) / f"{key}.yaml").exists():
        defs.write_file(ws, paused)
    with ws.control.write() as conn:
        members = memberships.current(conn, key)
        apply_diff(conn, key, version, utcnow(), (), members, "rule_change")
    return len(members)


def customer_segments(ws: Workspace, customer_id: str) -> list[dict[str, Any]]:
    """Every stay of a customer in any segment, newest first."""
    with ws.control.read() as conn:
        return memberships.stays_of(conn, customer_id)
