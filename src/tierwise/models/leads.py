"""Lead scoring: points for events and properties, decaying with age; crossing the
threshold qualifies the lead once and hands it to sales.

The definition (kind ``lead_scoring``, key ``default``)::

    events:
      - {when: "type = 'page_view' AND properties.page = '/pricing'", points: 10}
      - {when: "type = 'download' AND properties.asset = 'whitepaper'", points: 20}
    properties:
      - {when: "industry = '制造业'", points: 5}
    half_life_days: 30        # an event's points halve every 30 days
    threshold: 50
    task: {type: task, title: "Qualified lead: call within a day", role: sales,
           due_hours: 24}

Scores live in the ``lead_scores`` table and are the segment field ``lead_score``. The
server rescores customers as their events arrive and everyone with a score hourly (decay).
A lead qualifies the first time its score reaches the threshold: ``qualified_at`` is set,
``lead_qualified`` triggers fire and the task is queued, in one transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tierwise.compile.scores import compile_event_points, compile_points_per_event
from tierwise.compile.segments import compile_rule
from tierwise.definitions.automations import LeadScoring
from tierwise.definitions.segment_parser import parse
from tierwise.segments.evaluate import Evaluation
from tierwise.segments.vocabulary import vocabulary
from tierwise.store import changes, versions
from tierwise.store import leads as lead_store
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace


def definition(ws: Workspace) -> LeadScoring | None:
    """The lead-scoring rules in force (None: none were ever saved)."""
    with ws.control.read() as conn:
        latest = versions.latest(conn, "lead_scoring", "default")
    return None if latest is None else LeadScoring.model_validate(latest.spec)


def score(ws: Workspace, spec: LeadScoring, customer_ids: Collection[str] | None,
          as_of: datetime) -> dict[str, float]:
    """Scores at ``as_of`` of the given customers (or everyone with events or matching
    properties); customers with nothing score 0."""
    scores: dict[str, float] = {c: 0.0 for c in customer_ids or ()}
    with Evaluation(ws, as_of, customer_ids) as evaluation:
        if spec.events:
            compiled = compile_event_points([(parse(r.when), r.points) for r in spec.events],
                                            spec.half_life_days, ws.engine.name, as_of,
                                            ws.config.zone)
            table = evaluation.run(compiled)
            for customer, value in zip(table["customer_id"].to_pylist(),
                                       table["score"].to_pylist(), strict=True):
                scores[customer] = float(value or 0.0)
        words = vocabulary(ws) if spec.properties else None
        for rule in spec.properties:
            assert words is not None
            compiled = compile_rule(parse(rule.when), ws.engine.name, as_of, ws.config.zone,
                                    vocabulary=words)
            for customer in evaluation.run(compiled)["customer_id"].to_pylist():
                scores[customer] = scores.get(customer, 0.0) + rule.points
    return scores


@dataclass
class Rescored:
    qualified: int = 0
    #: Customers whose stored score changed (segments on ``lead_score`` follow them).
    changed: set[str] = field(default_factory=set)


def update(ws: Workspace, customer_ids: Collection[str] | None = None,
           as_of: datetime | None = None) -> Rescored:
    """Rescore customers (all scored ones and everyone matching, when None); store the
    scores and qualify leads that reached the threshold."""
    spec = definition(ws)
    if spec is None:
        return Rescored()
    as_of = as_of or utcnow()
    if customer_ids is None:
        with ws.control.read() as conn:
            known = lead_store.scored(conn)
        scores = score(ws, spec, None, as_of)
        for customer in known:
            scores.setdefault(customer, 0.0)
    else:
        scores = score(ws, spec, customer_ids, as_of)
    ids = sorted(scores)
    qualified: list[str] = []
    with ws.control.write() as conn:
        ws.control.lock(conn, "lead_scores")
        stored = lead_store.of(conn, ids)
        before = {c: qualified_at for c, (_, qualified_at) in stored.items()}
        old_scores = {c: score for c, (score, _) in stored.items()}
        fresh: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        for customer in ids:
            value = round(scores[customer], 4)
            crossed = value >= spec.threshold and before.get(customer) is None
            if crossed:
                qualified.append(customer)
            row = {"customer_id": customer, "score": value, "computed_at": as_of,
                   "qualified_at": as_of if crossed else before.get(customer)}
            (changed if customer in before else fresh).append(row)
        changed = [r for r in changed if r["score"] != old_scores.get(r["customer_id"])
                   or r["qualified_at"] != before.get(r["customer_id"])]
        lead_store.write(conn, fresh, changed)
        if qualified:
            items = [{"customer_id": c, "score": round(scores[c], 2),
                      "threshold": spec.threshold} for c in qualified]
            changes.lead_qualified(conn, items, spec.task, as_of)
    return Rescored(len(qualified), {r["customer_id"] for r in (*fresh, *changed)})


def replay(ws: Workspace, as_of: datetime | None = None) -> int:
    """Date qualifications from history: walk each customer's events up to ``as_of`` with
    the rules in force, and where the score (property points plus decayed event points)
    first reached the threshold at an event earlier than the stored ``qualified_at`` — or
    a lead never marked qualified — store that event's instant. Used when lead scoring is
    set up on existing data (scores run hourly would date everyone to their first run).
    Nothing fires: those moments are past. Returns how many dates were set."""
    import math

    spec = definition(ws)
    if spec is None or not spec.events:
        return 0
    as_of = as_of or utcnow()
    static = score(ws, spec.model_copy(update={"events": []}), None, as_of) \
        if spec.properties else {}
    compiled = compile_points_per_event([(parse(r.when), r.points) for r in spec.events],
                                        ws.engine.name, as_of, ws.config.zone)
    with Evaluation(ws, as_of) as evaluation:
        table = evaluation.run(compiled)
    crossed: dict[str, datetime] = {}
    customer, running, last = None, 0.0, None
    rate = math.log(2) / (86400.0 * spec.half_life_days)
    for who, at, points in zip(table["customer_id"].to_pylist(),
                               table["occurred_at"].to_pylist(),
                               table["points"].to_pylist(), strict=True):
        if who != customer:
            customer, running, last = who, 0.0, None
        if who in crossed:
            continue
        if last is not None:
            running *= math.exp(-rate * (at - last).total_seconds())
        running += float(points)
        last = at
        if running + static.get(who, 0.0) >= spec.threshold:
            crossed[who] = at
    if not crossed:
        return 0
    ids = sorted(crossed)
    with ws.control.read() as conn:
        scored = lead_store.of(conn, ids)
    unscored = [c for c in ids if c not in scored]
    now = score(ws, spec, unscored, as_of) if unscored else {}
    with ws.control.write() as conn:
        ws.control.lock(conn, "lead_scores")
        stored = lead_store.of(conn, ids)
        fresh = [{"customer_id": c, "score": round(now.get(c, 0.0), 4), "computed_at": as_of,
                  "qualified_at": crossed[c]} for c in ids if c not in stored]
        changed = [{"customer_id": c, "score": stored[c][0], "computed_at": as_of,
                    "qualified_at": crossed[c]} for c in ids if c in stored
                   and _later(stored[c][1], crossed[c])]
        lead_store.write(conn, fresh, changed)
    return len(fresh) + len(changed)


def _later(stored: datetime | None, crossed: datetime) -> bool:
    """Whether a stored qualification is missing or later than the replayed one."""
    from tierwise.store.control import as_utc

    return stored is None or crossed < as_utc(stored)


__all__ = ["Rescored", "definition", "replay", "score", "update"]
