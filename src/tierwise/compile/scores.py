"""Lead scores as SQL: points for events that match conditions, decaying with age.

    SELECT r.customer_id,
           SUM((CASE WHEN <cond 1> THEN p1 ELSE 0 END + …) * POWER(0.5, age_days / half_life))
    FROM events AS r WHERE r.occurred_at <= :as_of GROUP BY r.customer_id

Conditions are those of ``COUNT(events WHERE …)`` and compile the same way (bound
parameters, catalogue identifiers only).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlglot import exp

from tierwise.compile.compiled import CompiledRule, compiled_from
from tierwise.compile.dialects import render_tree
from tierwise.compile.segments import _Compiler, _Scope
from tierwise.definitions.segment_ast import Condition
from tierwise.definitions.segment_fields import validate


def compile_event_points(rules: list[tuple[Condition, float]], half_life_days: float,
                         dialect: str, as_of: datetime, zone: ZoneInfo) -> CompiledRule:
    """Per customer with matching events: ``customer_id``, ``score`` (decayed points)."""
    compiler = _Compiler(as_of, zone, None)
    scope = _Scope("r")
    points: list[exp.Expr] = []
    for condition, value in rules:
        validate(condition, source="events")
        test = exp.Coalesce(this=compiler.condition(condition, scope, "events"),
                            expressions=[exp.false()])
        points.append(exp.Case(ifs=[exp.If(this=test, true=compiler.bind(float(value)))],
                               default=exp.Literal.number(0)))
    total: exp.Expr = points[0] if points else exp.Literal.number(0)
    for extra in points[1:]:
        total = exp.Add(this=total, expression=extra)
    seconds = exp.DateDiff(this=exp.Placeholder(this="as_of"),
                           expression=exp.column("occurred_at", table="r"),
                           unit=exp.var("SECOND"))
    age = exp.Div(this=exp.cast(seconds, "DOUBLE"), expression=compiler.bind(
        86400.0 * half_life_days))
    decay = exp.Pow(this=exp.Literal.number(0.5), expression=age)
    tree = (exp.select(exp.column("customer_id", table="r"),
                       exp.alias_(exp.Sum(this=exp.Mul(this=exp.paren(total),
                                                       expression=decay)), "score"))
            .from_(exp.alias_(exp.to_table("events"), "r", table=True))
            .where(exp.LTE(this=exp.column("occurred_at", table="r"),
                           expression=exp.Placeholder(this="as_of")))
            .group_by(exp.column("customer_id", table="r"))
            .order_by(exp.column("customer_id", table="r")))
    return compiled_from(tree, render_tree(tree, dialect), compiler.params, False)


def compile_points_per_event(rules: list[tuple[Condition, float]], dialect: str,
                             as_of: datetime, zone: ZoneInfo) -> CompiledRule:
    """Every event up to ``as_of`` that earns points: ``customer_id``, ``occurred_at``,
    ``points`` (not decayed), by customer and time — the history a replay walks."""
    compiler = _Compiler(as_of, zone, None)
    scope = _Scope("r")
    total: exp.Expr = exp.Literal.number(0)
    for condition, value in rules:
        validate(condition, source="events")
        test = exp.Coalesce(this=compiler.condition(condition, scope, "events"),
                            expressions=[exp.false()])
        total = exp.Add(this=total, expression=exp.Case(
            ifs=[exp.If(this=test, true=compiler.bind(float(value)))],
            default=exp.Literal.number(0)))
    inner = (exp.select(exp.column("customer_id", table="r"),
                        exp.column("occurred_at", table="r"), exp.alias_(total, "points"))
             .from_(exp.alias_(exp.to_table("events"), "r", table=True))
             .where(exp.LTE(this=exp.column("occurred_at", table="r"),
                            expression=exp.Placeholder(this="as_of"))))
    tree = (exp.select("customer_id", "occurred_at", "points")
            .from_(inner.subquery("e"))
            .where(exp.NEQ(this=exp.column("points"), expression=exp.Literal.number(0)))
            .order_by("customer_id", "occurred_at"))
    return compiled_from(tree, render_tree(tree, dialect), compiler.params, False)


__all__ = ["compile_event_points", "compile_points_per_event"]
