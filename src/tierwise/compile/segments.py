"""Segment rule → sqlglot expression tree → SQL for the engine's dialect.

A pure function of the rule, ``as_of`` and the time zone. Every value from a rule
(strings, numbers, dates, relative dates, window starts, JSON keys) becomes a bound named
parameter; identifiers come only from the field catalogue. The query returns the ids of
the members, ordered by customer_id:

    SELECT c.customer_id FROM customers AS c
    LEFT JOIN snapshot AS s ON ...                         -- computed fields, if used
    LEFT JOIN (SELECT customer_id, COUNT(*) AS v FROM orders WHERE ... GROUP BY customer_id)
         AS a1 ON a1.customer_id = c.customer_id           -- one join per distinct aggregate
    WHERE <condition, two-valued: a comparison with a NULL side is false>

Semantics (see docs/segments.md): aggregates see rows with ``as_of − window < time ≤
as_of``; order aggregates count paid orders unless the WHERE mentions ``status``;
``COUNT``/``SUM``/``COUNT_DISTINCT`` of no rows are 0, the others NULL; ``DAYS_SINCE_*``
are whole days elapsed.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlglot import exp

from tierwise.compile.compiled import (
    FLAT_JOINS,
    CompiledBatch,
    CompiledRule,
    QueryReads,
    compiled_from,
)
from tierwise.compile.dialects import days_elapsed, render_tree
from tierwise.definitions import holidays
from tierwise.definitions.segment_ast import (
    Aggregate,
    And,
    Between,
    Call,
    Compare,
    Condition,
    Contains,
    Field,
    InList,
    InSegment,
    IsNull,
    Literal,
    Not,
    Operand,
    Or,
    RelativeDate,
    check_as_of,
    operand_text,
)
from tierwise.definitions.segment_fields import (
    CUSTOMER_COLUMN,
    LIVE_FIELDS,
    NPS_CLASSES,
    TIME_COLUMN,
    FieldInfo,
    RuleError,
    article,
    children,
    customer_field,
    operands,
    source_field,
    validate,
)
from tierwise.definitions.vocabulary import Vocabulary

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: A rule's date-part function → the SQL function (or ``compile.dialects`` helper).
_DATE_PARTS = {"YEAR": "YEAR", "MONTH": "MONTH", "DAY": "DAYOFMONTH", "HOUR": "HOUR",
               "WEEKDAY": "ISO_WEEKDAY"}
_OPS: dict[str, type[exp.Expr]] = {"=": exp.EQ, "!=": exp.EQ, ">": exp.GT,
                                          ">=": exp.GTE, "<": exp.LT, "<=": exp.LTE}


def shift(as_of: datetime, amount: int, unit: str, zone: ZoneInfo) -> datetime:
    """as_of minus a duration, in wall-clock terms of ``zone`` (months and years are
    calendar months and years; the day is clamped to the month's length)."""
    local = as_of.astimezone(zone)
    if unit in ("d", "w"):
        return (local - timedelta(days=amount * (7 if unit == "w" else 1))).astimezone(zone)
    months = amount * (12 if unit == "y" else 1)
    year, month = divmod(local.month - 1 - months, 12)
    year += local.year
    month += 1
    last_day = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return local.replace(year=year, month=month, day=min(local.day, last_day))


def _false() -> exp.Expr:
    return exp.false()




def _two_valued(expression: exp.Expr) -> exp.Expr:
    return exp.Coalesce(this=expression, expressions=[_false()])


def _fn(name: str, *args: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this=name, expressions=list(args))


@dataclass
class _Scope:
    """One SELECT over customers (IN_SEGMENT opens a nested one)."""

    alias: str
    joins: list[tuple[str, exp.Select]] = field(default_factory=list)
    aggregates: dict[Aggregate, str] = field(default_factory=dict)
    uses_snapshot: bool = False
    uses_leads: bool = False
    #: True when aggregates come from the batch's shared ``aggregates`` table.
    uses_shared: bool = False


#: Dialects whose grouped passes are faster when they first keep only the rows some
#: aggregate counts (``_Compiler.aggregates_query``): DuckDB's pass of the 50-segment
#: benchmark went from 6.4 s to 2.8 s. Spark's went from 28 s to 45 s (it evaluates each
#: condition again in its FILTER), so it reads every row as before.
ROWS_FIRST = frozenset({"duckdb"})


class _Compiler:
    def __init__(self, as_of: datetime, zone: ZoneInfo,
                 resolve: Callable[[str], Condition | None] | None) -> None:
        check_as_of(as_of)
        self.as_of = as_of
        self.zone = zone
        self.resolve = resolve
        self.params: dict[str, Any] = {"as_of": as_of, "tz": zone.key}
        #: How each parameter that follows the clock is computed from as_of
        #: (``CompiledBatch.at`` recomputes them for another instant).
        self.recipes: dict[str, Callable[[datetime], Any]] = {}
        self.counter = 0
        self.uses_snapshot = False
        self.uses_members = False
        self.uses_leads = False
        self.stack: list[str] = []
        #: Aggregate → column of the shared aggregates table (batch mode), else None.
        self.shared: dict[Aggregate, str] | None = None

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def bind(self, value: Any) -> exp.Expr:
        key = self.name("p")
        self.params[key] = value
        return exp.Placeholder(this=key)

    def bind_clock(self, recipe: Callable[[datetime], Any]) -> exp.Expr:
        """A parameter computed from as_of (a window's start, a relative date, today)."""
        placeholder = self.bind(recipe(self.as_of))
        self.recipes[placeholder.name] = recipe
        return placeholder

    # -- query ---------------------------------------------------------------------------
    def query(self, rule: Condition) -> tuple[exp.Select, str]:
        scope = _Scope(self.name("c"))
        where = self.condition(rule, scope)
        select = exp.select(exp.column("customer_id", table=scope.alias))
        return self._joins(scope, select).where(where), scope.alias

    def values(self, operands: list[Operand]) -> exp.Select:
        """SELECT customer_id and the value of each operand (for explanations)."""
        scope = _Scope(self.name("c"))
        outputs = [exp.alias_(self.operand(o, scope, None)[0], f"v{i}")
                   for i, o in enumerate(operands)]
        return self._joins(scope, exp.select(exp.column("customer_id", table=scope.alias),
                                             *outputs))

    def _joins(self, scope: _Scope, select: exp.Select) -> exp.Select:
        """FROM customers, and the LEFT JOINs the scope's fields and aggregates need."""
        select = select.from_(exp.alias_(exp.to_table("customers"), scope.alias, table=True))
        tables: list[tuple[str, exp.Expr]] = []
        if scope.uses_snapshot:
            self.uses_snapshot = True
            tables.append((scope.alias + "_s", exp.to_table("snapshot")))
        if scope.uses_leads:
            self.uses_leads = True
            tables.append((scope.alias + "_l", exp.to_table("lead_scores")))
        if scope.uses_shared:
            tables.append((scope.alias + "_g", exp.to_table("aggregates")))
        tables += [(alias, subquery.subquery()) for alias, subquery in scope.joins]
        for alias, table in tables:
            joined = (table.as_(alias) if isinstance(table, exp.Subquery)
                      else exp.alias_(table, alias, table=True))
            select = select.join(joined, join_type="left",
                                 on=exp.EQ(this=exp.column("customer_id", table=alias),
                                           expression=exp.column("customer_id",
                                                                 table=scope.alias)))
        return select

    # -- conditions ----------------------------------------------------------------------
    def condition(self, node: Condition, scope: _Scope,
                  source: str | None = None) -> exp.Expr:
        if isinstance(node, And):
            return exp.and_(*[self.condition(o, scope, source) for o in node.operands])
        if isinstance(node, Or):
            return exp.or_(*[self.condition(o, scope, source) for o in node.operands])
        if isinstance(node, Not):
            return exp.Not(this=exp.paren(self.condition(node.operand, scope, source)))
        if isinstance(node, InSegment):
            return self.in_segment(node, scope)
        if isinstance(node, IsNull):
            value, _ = self.operand(node.operand, scope, source)
            test: exp.Expr = exp.Is(this=value, expression=exp.Null())
            return exp.Not(this=test) if node.negated else test
        if isinstance(node, Compare):
            left, right = self.pair(node.left, node.right, scope, source)
            test = _two_valued(_OPS[node.op](this=left, expression=right))
            return exp.Not(this=test) if node.op == "!=" else test
        if isinstance(node, InList):
            value, kind = self.operand(node.operand, scope, source)
            items = [self.coerce(v, kind) for v in node.values]
            value = self.adapt(value, kind, node.values[0])
            test = _two_valued(exp.In(this=value, expressions=items))
            return exp.Not(this=test) if node.negated else test
        if isinstance(node, Between):
            left, low = self.pair(node.operand, node.low, scope, source)
            left_again, high = self.pair(node.operand, node.high, scope, source)
            test = _two_valued(exp.and_(exp.GTE(this=left, expression=low),
                                        exp.LTE(this=left_again, expression=high)))
            return exp.Not(this=test) if node.negated else test
        if isinstance(node, Contains):
            value, kind = self.operand(node.operand, scope, source)
            needle, _ = self.operand(node.value, scope, source)
            if kind == "list":
                found: exp.Expr = _fn("JSON_LIST_HAS", value, needle)
            else:
                found = exp.GT(this=exp.StrPosition(this=value, substr=needle),
                               expression=exp.Literal.number(0))
            test = _two_valued(found)
            return exp.Not(this=test) if node.negated else test
        raise TypeError(f"not a condition: {node!r}")

    def in_segment(self, node: InSegment, scope: _Scope) -> exp.Expr:
        if self.resolve is None:
            raise RuleError(f"IN_SEGMENT({node.key!r}): no segments are defined here",
                            zh=f"IN_SEGMENT({node.key!r})：这里没有定义任何分群")
        if node.key in self.stack:
            cycle = " → ".join([*self.stack[self.stack.index(node.key):], node.key])
            raise RuleError(f"IN_SEGMENT forms a cycle: {cycle}",
                            zh=f"IN_SEGMENT 形成了循环引用：{cycle}")
        rule = self.resolve(node.key)
        if rule is None:  # a static list or a frozen snapshot: its stored members
            self.uses_members = True
            stored = (exp.select(exp.column("customer_id", table="m"))
                      .from_(exp.alias_(exp.to_table("segment_members"), "m", table=True))
                      .where(exp.EQ(this=exp.column("segment_key", table="m"),
                                    expression=self.bind(node.key))))
            return exp.In(this=exp.column("customer_id", table=scope.alias),
                          query=stored.subquery())
        self.stack.append(node.key)
        try:
            inner, _ = self.query(rule)
        finally:
            self.stack.pop()
        return exp.In(this=exp.column("customer_id", table=scope.alias),
                      query=inner.subquery())

    # -- operands ------------------------------------------------------------------------
    def pair(self, left: Operand, right: Operand, scope: _Scope,
             source: str | None) -> tuple[exp.Expr, exp.Expr]:
        """Both sides of a comparison, with literals coerced to the other side's kind."""
        if isinstance(left, Literal | RelativeDate) and not isinstance(right, Literal |
                                                                       RelativeDate):
            r, l_ = self.pair(right, left, scope, source)
            return l_, r
        value, kind = self.operand(left, scope, source)
        if isinstance(right, Literal | RelativeDate):
            return self.adapt(value, kind, right), self.coerce(right, kind)
        other, other_kind = self.operand(right, scope, source)
        return self.match(value, kind, left, other, other_kind, right)

    def match(self, value: exp.Expr, kind: str, node: Operand, other: exp.Expr,
              other_kind: str, other_node: Operand) -> tuple[exp.Expr, exp.Expr]:
        """Two non-literal sides of a comparison in one kind: a time against a date is
        compared as the local date, an event property against a number as a number; sides
        that cannot be compared (a date against an amount) are the rule's error, not an
        engine's guess."""
        if kind == other_kind:
            return value, other
        kinds = {kind, other_kind}
        if kinds == {"timestamp", "date"}:
            def day(v: exp.Expr, k: str) -> exp.Expr:
                return exp.cast(_fn("LOCAL_TS", exp.Placeholder(this="tz"), v), "DATE") \
                    if k == "timestamp" else v
            return day(value, kind), day(other, other_kind)
        if kinds == {"json", "number"}:
            def number(v: exp.Expr, k: str) -> exp.Expr:
                return exp.TryCast(this=v, to=exp.DataType.build("DOUBLE")) \
                    if k == "json" else v
            return number(value, kind), number(other, other_kind)
        if kinds == {"json", "string"}:
            return value, other
        raise RuleError(f"{operand_text(node)} is {article(kind)} and "
                        f"{operand_text(other_node)} is {article(other_kind)}: they cannot "
                        "be compared",
                        zh=f"{operand_text(node)} 是{article(kind, True)}，"
                        f"{operand_text(other_node)} 是{article(other_kind, True)}：两者不能比较")

    def adapt(self, value: exp.Expr, kind: str, literal: Operand) -> exp.Expr:
        """Change the field side for the literal: local date, or JSON text as a number."""
        if kind == "timestamp" and isinstance(literal, Literal) and isinstance(
                literal.value, str) and _DATE_ONLY.match(literal.value):
            return exp.cast(_fn("LOCAL_TS", exp.Placeholder(this="tz"), value), "DATE")
        if kind == "timestamp" and isinstance(literal, RelativeDate) and literal.today:
            return exp.cast(_fn("LOCAL_TS", exp.Placeholder(this="tz"), value), "DATE")
        if kind == "json" and isinstance(literal, Literal) and not isinstance(literal.value,
                                                                               str):
            return exp.TryCast(this=value, to=exp.DataType.build("DOUBLE"))
        return value

    def coerce(self, literal: Operand, kind: str) -> exp.Expr:
        if isinstance(literal, RelativeDate):
            zone, amount, unit = self.zone, literal.amount, literal.unit
            if literal.today:
                return self.bind_clock(lambda t: t.astimezone(zone).date())
            if kind == "date":
                return self.bind_clock(lambda t: shift(t, amount, unit, zone).date())
            if kind != "timestamp":
                raise RuleError(f"a relative date such as -{literal.amount}{literal.unit} can "
                                f"only be compared with a date or time, not a {kind}",
                                zh=f"相对日期（如 -{literal.amount}{literal.unit}）只能与日期或"
                                f"时间比较，不能与{article(kind, True)}比较")
            return self.bind_clock(lambda t: shift(t, amount, unit, zone))
        assert isinstance(literal, Literal)
        value = literal.value
        if kind in ("timestamp", "date"):
            if not isinstance(value, str):
                raise RuleError(f"compare dates with a date in quotes such as '2025-01-31', "
                                f"not {value!r}",
                                zh=f"日期请用引号括起的日期比较，例如 '2025-01-31'，"
                                f"而不是 {value!r}")
            try:
                if _DATE_ONLY.match(value) or kind == "date":
                    return self.bind(date.fromisoformat(value[:10]))
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise RuleError(f"{value!r} is not a date such as '2025-01-31' or a time such "
                                f"as '2025-01-31 18:00'",
                                zh=f"{value!r} 不是日期（如 '2025-01-31'）或时间"
                                f"（如 '2025-01-31 18:00'）") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=self.zone)
            return self.bind(parsed)
        if kind == "number" and isinstance(value, str):
            raise RuleError(f"{value!r} is text; this field holds numbers",
                            zh=f"{value!r} 是文本；这个字段是数值")
        if kind in ("string", "list") and not isinstance(value, str):
            return self.bind(str(value))
        return self.bind(value)

    def operand(self, node: Operand, scope: _Scope,
                source: str | None) -> tuple[exp.Expr, str]:
        if isinstance(node, Literal):
            return self.bind(node.value), "number" if not isinstance(node.value, str) \
                else "string"
        if isinstance(node, RelativeDate):
            return self.coerce(node, "timestamp"), "timestamp"
        if isinstance(node, Aggregate):
            return self.aggregate(node, scope)
        if isinstance(node, Call):
            return self.call(node, scope, source), "number"
        assert isinstance(node, Field)
        if source is not None:
            return self.column(source_field(source, node), "r"), \
                source_field(source, node).kind
        info = customer_field(node)
        if info.table == "live":
            value, _ = self.aggregate(LIVE_FIELDS[node.name], scope)
            if node.name == "nps_class":
                return exp.Case(ifs=[exp.If(this=exp.GTE(this=value.copy(),
                                                         expression=exp.Literal.number(floor)),
                                            true=exp.Literal.string(name))
                                     for name, floor in NPS_CLASSES]), "string"
            return value, info.kind
        if info.table == "snapshot":
            scope.uses_snapshot = True
            return exp.column(info.column, table=scope.alias + "_s"), info.kind
        if info.table == "leads":  # no score yet reads as 0
            scope.uses_leads = True
            return exp.Coalesce(this=exp.column(info.column, table=scope.alias + "_l"),
                                expressions=[exp.Literal.number(0)]), info.kind
        return self.column(info, scope.alias), info.kind

    def call(self, node: Call, scope: _Scope, source: str | None) -> exp.Expr:
        """A part of a date or time in the workspace's zone, or a countdown in days."""
        zone = self.zone
        if node.function == "DAYS_UNTIL_HOLIDAY":
            code = str(getattr(node.argument, "value", ""))
            if code not in holidays.LABELS:
                raise RuleError(f"DAYS_UNTIL_HOLIDAY({operand_text(node.argument)}): not a "
                                f"holiday; expected one of {', '.join(holidays.LABELS)}",
                                zh=f"DAYS_UNTIL_HOLIDAY({operand_text(node.argument)})：不是"
                                f"节日；可用的节日：{', '.join(holidays.LABELS)}")

            def countdown(t: datetime) -> int:
                try:
                    return holidays.days_until(code, t.astimezone(zone).date())
                except LookupError as exc:
                    raise RuleError(exc.args[0]) from None  # Said words

            return self.bind_clock(countdown)
        value, kind = self.operand(node.argument, scope, source)
        local = _fn("LOCAL_TS", exp.Placeholder(this="tz"), value) if kind == "timestamp" \
            else value
        if node.function in _DATE_PARTS:
            return _fn(_DATE_PARTS[node.function], local)
        # DAYS_UNTIL_ANNIVERSARY: days from today to the next (month, day) of the date,
        # 0 on the day; 29 February falls on 28 February in a common year.
        day = exp.cast(local, "DATE") if kind == "timestamp" else local
        month, dom = _fn("MONTH", day), _fn("DAYOFMONTH", day.copy())
        today = self.bind_clock(lambda t: t.astimezone(zone).date())

        def anniversary(years_on: int) -> exp.Expr:
            year = self.bind_clock(lambda t: t.astimezone(zone).year + years_on)
            leap_day = self.bind_clock(
                lambda t: 29 if calendar.isleap(t.astimezone(zone).year + years_on) else 28)
            on = exp.Case(ifs=[exp.If(this=exp.and_(
                exp.EQ(this=month.copy(), expression=exp.Literal.number(2)),
                exp.EQ(this=dom.copy(), expression=exp.Literal.number(29))),
                true=leap_day)], default=dom.copy())
            return _fn("MAKE_DATE", year, month.copy(), on)

        def days_to(target: exp.Expr) -> exp.Expr:
            return exp.DateDiff(this=target, expression=today.copy(), unit=exp.var("DAY"))

        this_year, next_year = anniversary(0), anniversary(1)
        return exp.Case(ifs=[exp.If(this=exp.GTE(this=this_year, expression=today.copy()),
                                    true=days_to(this_year.copy()))],
                        default=days_to(next_year))

    def column(self, info: FieldInfo, table: str) -> exp.Expr:
        ref = exp.column(info.column, table=table)
        if info.json_key is not None:
            return _fn("JSON_TEXT", ref, self.bind(f"$.{info.json_key}"))
        return ref

    # -- aggregates ----------------------------------------------------------------------
    def aggregate(self, node: Aggregate, scope: _Scope) -> tuple[exp.Expr, str]:
        if self.shared is not None:
            # Batch mode: every aggregate of every rule is one column of one table, computed
            # in a single pass per source (see aggregates_query).
            if node not in self.shared:
                self.shared[node] = f"g{len(self.shared) + 1}"
            scope.uses_shared = True
            value: exp.Expr = exp.column(self.shared[node], table=scope.alias + "_g")
        else:
            if node in scope.aggregates:
                alias = scope.aggregates[node]
            else:
                alias = self.name("a")
                scope.aggregates[node] = alias
                scope.joins.append((alias, self.aggregate_query(node)))
            value = exp.column("v", table=alias)
        if node.function in ("COUNT", "SUM", "COUNT_DISTINCT"):
            value = exp.Coalesce(this=value, expressions=[exp.Literal.number(0)])
        kind = "number"
        if node.function in ("MIN", "MAX", "LATEST") and node.column is not None:
            kind = source_field(node.source, Field((node.column,))).kind
        return value, kind

    def aggregate_query(self, node: Aggregate) -> exp.Select:
        """One aggregate as its own grouped subquery (single-rule mode)."""
        time_col = exp.column(TIME_COLUMN[node.source], table="r")
        filters = [exp.LTE(this=time_col, expression=exp.Placeholder(this="as_of")),
                   *self.aggregate_filters(node)]
        customer = _customer_of(node.source)
        return (exp.select(_as_customer_id(customer),
                           exp.alias_(self.aggregate_value(node, None), "v"))
                .from_(exp.alias_(exp.to_table(node.source), "r", table=True))
                .where(exp.and_(*filters))
                .group_by(customer.copy()))

    def aggregates_query(self, rows_first: bool = False) -> exp.Select | None:
        """Batch mode: every shared aggregate, one grouped pass per source, one row per
        customer; ``rows_first``: each pass first keeps the rows some aggregate counts
        (``ROWS_FIRST``)."""
        if not self.shared:
            return None
        by_source: dict[str, list[tuple[Aggregate, str]]] = {}
        for node, column in self.shared.items():
            by_source.setdefault(node.source, []).append((node, column))
        parts = []
        columns: list[exp.Expr] = []
        for source, nodes in sorted(by_source.items()):
            alias = f"s_{source}"
            time_col = exp.column(TIME_COLUMN[source], table="r")
            filters = [self.aggregate_filters(node) for node, _ in nodes]
            if rows_first and all(filters):
                grouped = self._rows_first(source, nodes, filters)
            else:
                outputs = [exp.alias_(self.aggregate_value(node, exp.and_(
                    *(f or [exp.true()]))), column) for (node, column), f in zip(
                        nodes, filters, strict=True)]
                customer = _customer_of(source)
                where = exp.LTE(this=time_col, expression=exp.Placeholder(this="as_of"))
                grouped = (exp.select(_as_customer_id(customer), *outputs)
                           .from_(exp.alias_(exp.to_table(source), "r", table=True))
                           .where(where)
                           .group_by(customer.copy()))
            parts.append((alias, grouped))
            columns += [exp.column(column, table=alias) for _, column in nodes]
        if len(parts) == 1:
            return parts[0][1]
        # the passes side by side: a rule LEFT JOINs the table to the customers, so a
        # customer without rows needs no row of it (joining every customer here cost a
        # quarter of a second more at 1.4M customers)
        (first, pass_), *rest = parts
        ids = [exp.column("customer_id", table=first)]
        joins = []
        for alias, grouped in rest:
            joins.append((grouped.subquery().as_(alias), exp.EQ(
                this=exp.column("customer_id", table=alias), expression=_first(ids))))
            ids.append(exp.column("customer_id", table=alias))
        select = (exp.select(exp.alias_(_first(ids), "customer_id"), *columns)
                  .from_(pass_.subquery().as_(first)))
        for joined, on in joins:
            select = select.join(joined, join_type="full", on=on)
        return select

    def _rows_first(self, source: str, nodes: list[tuple[Aggregate, str]],
                    filters: list[list[exp.Expr]]) -> exp.Select:
        """One source's grouped pass over only the rows some aggregate counts (the others
        would make each FILTER say no, row by row: at 30M events and 8 filtered counts,
        most of the pass). A customer left with no row reads NULL instead of 0 or NULL,
        which ``aggregate`` makes 0 for the counts and sums, as for anyone without rows.

        Each distinct row condition besides the window (status, WHERE) is computed once
        per row, as a column ``_k<n>`` of an inner SELECT, and the FILTERs and the row
        filter read that column: four counts of pricing-page views over four windows
        extracted the JSON property of each row four times in their FILTERs and four
        times more in the row filter."""
        time_col = exp.column(TIME_COLUMN[source], table="r")
        named: dict[str, str] = {}  # a condition's text, values in place → its column
        computed: list[exp.Expr] = []
        kept: list[list[exp.Expr]] = []
        # per condition column (None: none), the windows of its aggregates; None when one
        # of them has no window (then every row meeting the condition counts)
        windows: dict[str | None, list[exp.Expr] | None] = {}
        for (node, _), conjuncts in zip(nodes, filters, strict=True):
            window, rest = ((conjuncts[:1], conjuncts[1:]) if node.window is not None
                            else ([], conjuncts))
            name = None
            if rest:
                condition = exp.and_(*(c.copy() for c in rest))
                text = self._valued(condition)
                if text not in named:
                    named[text] = f"_k{len(named) + 1}"
                    computed.append(exp.alias_(condition, named[text]))
                name = named[text]
                rest = [exp.column(name, table="r")]
            kept.append([c.copy() for c in window] + rest)
            bounds = windows.setdefault(name, [])
            if bounds is not None and window:
                bounds.append(window[0].copy())
            else:
                windows[name] = None
        outputs = [exp.alias_(self.aggregate_value(node, exp.and_(*f)), column)
                   for (node, column), f in zip(nodes, kept, strict=True)]
        customer = _customer_of(source)
        tests = []
        for name, bounds in windows.items():
            test: list[exp.Expr] = [exp.paren(exp.or_(*bounds))] if bounds else []
            if name is not None:
                test.append(exp.column(name, table="r"))
            tests.append(exp.paren(exp.and_(*test)))
        counted = exp.or_(*tests)
        read = sorted({c.name for e in (*outputs, counted, customer)
                       for c in e.find_all(exp.Column) if c.table == "r"} - set(named.values()))
        rows = (exp.select(*(exp.column(name, table="r") for name in read), *computed)
                .from_(exp.alias_(exp.to_table(source), "r", table=True))
                .where(exp.LTE(this=time_col, expression=exp.Placeholder(this="as_of"))))
        return (exp.select(_as_customer_id(customer), *outputs)
                .from_(rows.subquery().as_("r"))
                .where(counted)
                .group_by(customer.copy()))

    def _valued(self, condition: exp.Expr) -> str:
        """``condition``'s text with the values of its plain parameters in place of their
        names: two rules' ``type = 'page_view'`` bind two parameters of one value. A
        parameter that follows the clock keeps its name (its value changes with as_of)."""

        def value(node: exp.Expr) -> exp.Expr:
            if (isinstance(node, exp.Placeholder) and node.name.startswith("p")
                    and node.name not in self.recipes and node.name in self.params):
                bound = self.params[node.name]
                return exp.Literal.string(f"{type(bound).__name__}:{bound!r}")
            return node

        return condition.copy().transform(value).sql()

    def aggregate_filters(self, node: Aggregate) -> list[exp.Expr]:
        """Row conditions of an aggregate besides time ≤ as_of: window, paid, WHERE."""
        scope = _Scope("r")
        time_col = exp.column(TIME_COLUMN[node.source], table="r")
        filters: list[exp.Expr] = []
        if node.window is not None:
            zone, amount, unit = self.zone, node.window.amount, node.window.unit
            filters.append(exp.GT(this=time_col.copy(), expression=self.bind_clock(
                lambda t: shift(t, amount, unit, zone))))
        if node.source in ("orders", "account_orders") and not _mentions(node.where, "status"):
            filters.append(exp.EQ(this=exp.column("status", table="r"),
                                  expression=self.bind("paid")))
        if node.where is not None:
            filters.append(self.condition(node.where, scope, node.source))
        return filters

    def aggregate_value(self, node: Aggregate, condition: exp.Expr | None) -> exp.Expr:
        """The aggregate over source rows ``r``; with ``condition``, as FILTER (WHERE …)."""
        column = (self.column(source_field(node.source, Field((node.column,))), "r")
                  if node.column else None)
        time_col = exp.column(TIME_COLUMN[node.source], table="r")

        def filtered(agg: exp.Expr) -> exp.Expr:
            return agg if condition is None else exp.Filter(
                this=agg, expression=exp.Where(this=condition))

        fn = node.function
        if fn == "COUNT":
            return filtered(exp.Count(this=exp.Star()))
        if fn == "COUNT_DISTINCT":
            return filtered(exp.Count(this=exp.Distinct(expressions=[column])))
        if fn == "LATEST":  # the value in the latest row (by the source's time)
            return filtered(exp.ArgMax(this=column, expression=time_col))
        if fn in ("SUM", "AVG", "MIN", "MAX"):
            return filtered({"SUM": exp.Sum, "AVG": exp.Avg, "MIN": exp.Min,
                             "MAX": exp.Max}[fn](this=column))
        # DAYS_SINCE_LAST / DAYS_SINCE_FIRST: whole days of 86,400 s elapsed
        edge = filtered(exp.Max(this=time_col) if fn == "DAYS_SINCE_LAST"
                        else exp.Min(this=time_col))
        return days_elapsed(edge, exp.Placeholder(this="as_of"))


def _first(values: list[exp.Column]) -> exp.Expr:
    """The first of ``values`` that is not NULL."""
    if len(values) == 1:
        return values[0].copy()
    return exp.Coalesce(this=values[0].copy(), expressions=[v.copy() for v in values[1:]])


def _customer_of(source: str) -> exp.Column:
    """The column of source rows ``r`` naming the customer a row counts for."""
    return exp.column(CUSTOMER_COLUMN[source], table="r")


def _as_customer_id(column: exp.Column) -> exp.Expr:
    return column.copy() if column.name == "customer_id" else exp.alias_(column.copy(),
                                                                         "customer_id")


def _mentions(node: Condition | None, name: str) -> bool:
    if node is None:
        return False
    if any(isinstance(o, Field) and o.path[-1] == name for o in operands(node)):
        return True
    return any(_mentions(child, name) for child in children(node))


def compile_rule(rule: Condition, dialect: str, as_of: datetime, zone: ZoneInfo,
                 resolve: Callable[[str], Condition | None] | None = None,
                 pretty: bool = False, key: str | None = None, *,
                 vocabulary: Vocabulary) -> CompiledRule:
    """SQL (for ``dialect``) and parameters selecting the members of ``rule`` at ``as_of``.

    ``resolve`` maps an IN_SEGMENT key to that segment's rule; ``key`` is the rule's own
    segment key, if it has one, so that a reference back to it is reported as a cycle.
    Literals of enumerated fields are turned into codes with ``vocabulary`` (a label in
    either language names its code; a literal that names no value is a ``RuleError``).
    """
    validate(rule)
    rule = vocabulary.normalize(rule)
    compiler = _Compiler(as_of, zone, vocabulary.resolving(resolve))
    if key is not None:
        compiler.stack.append(key)
    tree, alias = compiler.query(rule)
    tree = tree.order_by(exp.column("customer_id", table=alias))
    return compiled_from(tree, render_tree(tree, dialect, pretty), compiler.params,
                     compiler.uses_snapshot, compiler.uses_members, compiler.uses_leads)


def compile_batch(rules: dict[str, Condition], dialect: str, as_of: datetime,
                  zone: ZoneInfo, resolve: Callable[[str], Condition | None] | None = None,
                  subqueries_in_columns: bool = True, *,
                  vocabulary: Vocabulary) -> CompiledBatch:
    """Compile many rules at once so that each source is read once for all of them.
    ``subqueries_in_columns``: the engine takes ``IN (SELECT …)`` in a SELECT column, so
    rules holding one may run as columns of one SELECT too (``Engine`` says)."""
    compiler = _Compiler(as_of, zone, vocabulary.resolving(resolve))
    compiler.shared = {}
    compiled: dict[str, CompiledRule] = {}
    errors: dict[str, str] = {}
    for key, rule in rules.items():
        compiler.uses_snapshot = compiler.uses_members = compiler.uses_leads = False
        try:
            validate(rule)
            rule = vocabulary.normalize(rule)
            compiler.stack = [key]
            tree, alias = compiler.query(rule)
        except RuleError as exc:
            errors[key] = str(exc)
            continue
        flat = _flat(tree, alias, dialect, subqueries_in_columns)
        tree = tree.order_by(exp.column("customer_id", table=alias))
        compiled[key] = compiled_from(tree, render_tree(tree, dialect), compiler.params,
                                  compiler.uses_snapshot, compiler.uses_members,
                                  compiler.uses_leads, flat)
    aggregates = compiler.aggregates_query(rows_first=dialect in ROWS_FIRST)
    return CompiledBatch(render_tree(aggregates, dialect) if aggregates is not None else None,
                         compiled, errors, compiler.params,
                         QueryReads.of(aggregates) if aggregates is not None
                         else QueryReads(frozenset(), frozenset(), frozenset()),
                         compiler.recipes)


def _flat(tree: exp.Select, alias: str, dialect: str, subqueries_in_columns: bool
          ) -> tuple[str, tuple[str, ...]] | None:
    """The rule ``SELECT alias.customer_id FROM customers AS alias [LEFT JOIN …] WHERE …``
    as a two-valued condition over ``customers AS c`` and its joins renamed ``c_s``,
    ``c_l``, ``c_g``; None for any other shape."""
    if any(v for k, v in tree.args.items() if k not in ("expressions", "from_", "joins",
                                                          "where")):
        return None
    where = tree.args.get("where")
    if where is None:
        return None
    names, tables = {alias: "c"}, []
    for join in tree.args.get("joins") or []:
        table = join.this
        suffix = FLAT_JOINS.get(table.name) if isinstance(table, exp.Table) else None
        if suffix is None or table.alias != alias + suffix:
            return None
        names[table.alias] = "c" + suffix
        tables.append(table.name)
    condition = where.this.copy()
    if not subqueries_in_columns and condition.find(exp.Select):
        return None
    for column in condition.find_all(exp.Column):
        if column.table in names:
            column.set("table", exp.to_identifier(names[column.table]))
    return render_tree(_two_valued(condition), dialect), tuple(tables)


def compile_values(operands: list[Operand], dialect: str, as_of: datetime,
                   zone: ZoneInfo) -> CompiledRule:
    """SQL giving, per customer, the value of each operand (fields, aggregates, …)."""
    compiler = _Compiler(as_of, zone, None)
    tree = compiler.values(operands)
    return compiled_from(tree, render_tree(tree, dialect), compiler.params, compiler.uses_snapshot)


__all__ = ["compile_batch", "compile_rule", "compile_values", "shift"]
