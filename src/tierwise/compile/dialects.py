"""SQL written once in DuckDB's dialect, rendered for each engine with sqlglot.

What sqlglot cannot translate by itself is declared here as data: portable helper
functions a query may call, and how each dialect spells them.

- ``SECOND_MAX(x)`` — aggregate: the second-largest distinct value in a group (NULL if
  none). DuckDB: ``max(x, 2)[2]``; Spark: the second of the sorted distinct values.
- ``JSON_TEXT(json, path)`` — the text at a JSON path (``$.key``) of a JSON string.
- ``JSON_LIST_HAS(json_list, value)`` — whether a JSON array of strings holds ``value``.
- ``ISO_WEEKDAY(d)`` — Monday 1 … Sunday 7 (DuckDB ``isodow``; Spark from ``dayofweek``).
- ``LOCAL_TS(zone, ts)`` — the wall-clock time of instant ``ts`` in ``zone``
  (DuckDB: ``timezone(zone, ts)`` on a TIMESTAMPTZ; Spark: ``from_utc_timestamp(ts,
  zone)`` with the session time zone set to UTC, see
  https://spark.apache.org/docs/latest/api/sql/#from_utc_timestamp).
- ``DAYS_ELAPSED(start, end)`` — whole days of 86,400 s from instant ``start`` to ``end``
  (floor), from their difference in microseconds: exact on every engine, where DuckDB's
  difference in seconds counts the second boundaries crossed (a day 0.4 s short would
  count) and Spark's truncates.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import sqlglot
from sqlglot import exp

Rewrite = Callable[[list[exp.Expr]], exp.Expr]

def _duck_second_max(a: list[exp.Expr]) -> exp.Expr:
    return exp.maybe_parse(f"max({a[0].sql('duckdb')}, 2)[2]", dialect="duckdb")


def _spark_second_max(a: list[exp.Expr]) -> exp.Expr:
    arg = a[0].sql("spark")
    return exp.maybe_parse(f"try_element_at(sort_array(collect_set({arg}), false), 2)",
                           dialect="spark")


def _fn(name: str, *args: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this=name, expressions=list(args))


def _days_elapsed(a: list[exp.Expr]) -> exp.Expr:
    micros = exp.DateDiff(this=a[1], expression=a[0], unit=exp.var("MICROSECOND"))
    day = exp.Literal.number(86_400_000_000)
    return exp.cast(exp.Floor(this=exp.Div(this=micros, expression=day)), "BIGINT")


def days_elapsed(start: exp.Expr, end: exp.Expr) -> exp.Expr:
    """``DAYS_ELAPSED(start, end)`` in an expression tree (spelled out by ``render_tree``)."""
    return _fn("DAYS_ELAPSED", start, end)


HELPERS: dict[str, dict[str, Rewrite]] = {
    "JSON_TEXT": {"duckdb": lambda a: _fn("json_extract_string", a[0], a[1]),
                  "spark": lambda a: _fn("get_json_object", a[0], a[1])},
    "JSON_LIST_HAS": {
        "duckdb": lambda a: _fn("list_contains", exp.maybe_parse(
            f"from_json({a[0].sql('duckdb')}, '[\"VARCHAR\"]')", dialect="duckdb"), a[1]),
        "spark": lambda a: _fn("array_contains", exp.maybe_parse(
            f"from_json({a[0].sql('spark')}, 'array<string>')", dialect="spark"), a[1]),
    },
    "SECOND_MAX": {"duckdb": _duck_second_max, "spark": _spark_second_max},
    # ISO day of the week, Monday 1 … Sunday 7 (Spark's dayofweek counts from Sunday = 1)
    "ISO_WEEKDAY": {
        "duckdb": lambda a: _fn("isodow", a[0]),
        "spark": lambda a: exp.maybe_parse(
            f"((dayofweek({a[0].sql('spark')}) + 5) % 7) + 1", dialect="spark"),
    },
    "DAYS_ELAPSED": {"duckdb": _days_elapsed, "spark": _days_elapsed},
    "LOCAL_TS": {
        "duckdb": lambda a: exp.Anonymous(this="timezone", expressions=[a[0], a[1]]),
        "spark": lambda a: exp.Anonymous(this="from_utc_timestamp", expressions=[a[1], a[0]]),
    },
}


@cache
def render(sql: str, dialect: str) -> str:
    """Parse ``sql`` (DuckDB dialect plus the helpers above) and print it for ``dialect``."""
    return render_tree(sqlglot.parse_one(sql, read="duckdb"), dialect)


def render_tree(tree: exp.Expr, dialect: str, pretty: bool = False) -> str:
    """Print an expression tree for ``dialect``, spelling out the helpers."""

    def rewrite(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Anonymous) and node.name.upper() in HELPERS:
            spellings = HELPERS[node.name.upper()]
            if dialect not in spellings:
                raise ValueError(f"{node.name} has no spelling for {dialect}")
            # helpers inside a helper's arguments are spelled out first
            return spellings[dialect]([arg.transform(rewrite) for arg in node.expressions])
        return node

    return tree.transform(rewrite).sql(dialect=dialect, pretty=pretty)
