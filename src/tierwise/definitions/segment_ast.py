"""The segment language's syntax tree, its JSON form, and its canonical text form.

Every node is a frozen dataclass. ``to_json`` / ``from_json`` convert to and from plain
dicts (the JSON form the UI and API speak); ``to_text`` prints the canonical text form.
Text → tree → JSON → tree → text gives back the canonical text, and JSON → tree → text →
tree → JSON gives back the same JSON.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tierwise.errors import TierwiseError

# -- limits --------------------------------------------------------------------------------
# Every rule tierwise accepts can be compiled and run: numbers fit the engines' types,
# windows and relative dates stay within the calendar, nesting stays within what the
# compiler walks. A rule beyond them is refused where it is written, with the limit named.

#: Conditions nested deeper than this (NOT, parentheses, aggregate WHERE) are refused.
MAX_DEPTH = 50
#: The longest window or relative date per unit: a hundred years.
MAX_SPAN = {"d": 36_600, "w": 5_220, "m": 1_200, "y": 100}
#: Whole numbers are 64-bit, as in every engine's BIGINT.
MAX_INTEGER = 2**63 - 1
#: Evaluations happen at instants in these years (relative dates and windows reach at most
#: a hundred years further back).
EARLIEST_AS_OF = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_AS_OF = datetime(3000, 1, 1, tzinfo=UTC)


class RuleLimitError(TierwiseError):
    """A rule (or an evaluation instant) beyond what tierwise evaluates; says the limit."""


def check_span(amount: int, unit: str, shown: str) -> None:
    """``shown`` is how the rule wrote it (``LAST 30d``, ``-6m``)."""
    if unit not in MAX_SPAN:
        raise RuleLimitError(f"{shown}: the unit is d, w, m or y",
                             zh=f"{shown}：单位是 d、w、m 或 y")
    if not 0 <= amount <= MAX_SPAN[unit]:
        raise RuleLimitError(f"{shown}: at most {MAX_SPAN[unit]:,}{unit} (a hundred years)",
                             zh=f"{shown}：最多 {MAX_SPAN[unit]:,}{unit}（一百年）")


def check_number(value: int | float) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise RuleLimitError(f"the number {value!r} is not finite",
                             zh=f"数字 {value!r} 不是有限数")
    if isinstance(value, int) and abs(value) > MAX_INTEGER:
        raise RuleLimitError(f"the number {value} is too large: whole numbers go up to "
                             f"{MAX_INTEGER:,} (write it with a decimal point for a "
                             "larger, approximate number)",
                             zh=f"数字 {value} 太大：整数最大为 {MAX_INTEGER:,}"
                             "（更大的近似数请带小数点书写）")
    if isinstance(value, float) and abs(value) > 1e300:
        raise RuleLimitError(f"the number {value:g} is too large (at most 1e300)",
                             zh=f"数字 {value:g} 太大（最大 1e300）")


def check_as_of(as_of: datetime) -> None:
    """Refuse an evaluation instant outside 1900–2999 (naive instants count as UTC)."""
    at = as_of if as_of.tzinfo is not None else as_of.replace(tzinfo=UTC)
    if not EARLIEST_AS_OF <= at < LATEST_AS_OF:
        raise RuleLimitError(f"as_of {as_of.isoformat()}: expected an instant from "
                             f"{EARLIEST_AS_OF.year} to {LATEST_AS_OF.year - 1}",
                             zh=f"as_of {as_of.isoformat()}：时刻应在 {EARLIEST_AS_OF.year} 年到 "
                             f"{LATEST_AS_OF.year - 1} 年之间")


# -- operands ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A customer or computed field: ``city``, ``attributes.industry``, ``rfm.segment``."""

    path: tuple[str, ...]

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Literal:
    """A number, a string, or None (only produced by ``IS NULL`` internally)."""

    value: str | int | float

    def __post_init__(self) -> None:
        if isinstance(self.value, int | float) and not isinstance(self.value, bool):
            check_number(self.value)


@dataclass(frozen=True)
class RelativeDate:
    """``-30d``, ``-4w``, ``-6m``, ``-1y`` (as_of minus that), or ``today`` (amount 0, 'd')."""

    amount: int
    unit: str  # d, w, m, y
    today: bool = False

    def __post_init__(self) -> None:
        check_span(self.amount, self.unit, f"-{self.amount}{self.unit}")


@dataclass(frozen=True)
class Window:
    amount: int
    unit: str  # d, w, m, y

    def __post_init__(self) -> None:
        check_span(self.amount, self.unit, f"LAST {self.amount}{self.unit}")


@dataclass(frozen=True)
class Aggregate:
    """``SUM(orders.amount WHERE status = 'paid', LAST 30d)``."""

    function: str  # COUNT, SUM, AVG, MIN, MAX, COUNT_DISTINCT, DAYS_SINCE_LAST, LATEST, …
    source: str  # orders, events, tickets, feedback or referrals
    column: str | None
    where: Condition | None
    window: Window | None


@dataclass(frozen=True)
class Call:
    """A part of a date or time, or a countdown: ``MONTH(birth_date)``,
    ``HOUR(events.occurred_at)``, ``DAYS_UNTIL_ANNIVERSARY(signup_at)``,
    ``DAYS_UNTIL_HOLIDAY('春节')`` (see ``FUNCTIONS``)."""

    function: str
    argument: Field | Literal


Operand = Field | Literal | RelativeDate | Aggregate | Call

# -- conditions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    op: str  # = != > >= < <=
    left: Operand
    right: Operand


@dataclass(frozen=True)
class InList:
    operand: Operand
    values: tuple[Literal, ...]
    negated: bool = False


@dataclass(frozen=True)
class Between:
    operand: Operand
    low: Operand
    high: Operand
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    operand: Operand
    negated: bool = False


@dataclass(frozen=True)
class Contains:
    operand: Operand
    value: Operand
    negated: bool = False


@dataclass(frozen=True)
class InSegment:
    key: str


@dataclass(frozen=True)
class Not:
    operand: Condition


@dataclass(frozen=True)
class And:
    operands: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Condition, ...]


Condition = Compare | InList | Between | IsNull | Contains | InSegment | Not | And | Or

AGGREGATES = ("COUNT", "SUM", "AVG", "MIN", "MAX", "COUNT_DISTINCT", "DAYS_SINCE_LAST",
              "DAYS_SINCE_FIRST", "LATEST")
#: Functions of one date or time field (or, for holidays, a holiday's name): numbers.
FUNCTIONS = ("YEAR", "MONTH", "DAY", "WEEKDAY", "HOUR", "DAYS_UNTIL_ANNIVERSARY",
             "DAYS_UNTIL_HOLIDAY")
#: Sources a rule can aggregate: a row counts for its customer; a referral counts for the one
#: who referred (``COUNT(referrals) >= 3``); a contact for its account, and in
#: ``account_orders`` / ``account_events`` an account's own rows and its contacts' count for it.
SOURCES = ("orders", "events", "tickets", "feedback", "referrals", "opportunities",
           "opportunity_stages", "contacts", "account_orders", "account_events")
COMPARE_OPS = ("=", "!=", ">", ">=", "<", "<=")

# -- text form -----------------------------------------------------------------------------


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def operand_text(node: Operand) -> str:
    if isinstance(node, Field):
        return node.name
    if isinstance(node, Literal):
        value = node.value
        if isinstance(value, str):
            return _quote(value)
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(node, RelativeDate):
        return "today" if node.today else f"-{node.amount}{node.unit}"
    if isinstance(node, Call):
        return f"{node.function}({operand_text(node.argument)})"
    target = node.source if node.column is None else f"{node.source}.{node.column}"
    parts = [target]
    if node.where is not None:
        parts[0] += f" WHERE {to_text(node.where)}"
    if node.window is not None:
        parts.append(f"LAST {node.window.amount}{node.window.unit}")
    return f"{node.function}({', '.join(parts)})"


_PRECEDENCE = {"Or": 1, "And": 2, "Not": 3}


def to_text(node: Condition, parent: int = 0) -> str:
    """The canonical text of a condition (keywords upper case, minimal parentheses)."""
    kind = type(node).__name__
    if isinstance(node, Or | And):
        joiner = " OR " if isinstance(node, Or) else " AND "
        own = _PRECEDENCE[kind]
        text = joiner.join(to_text(o, own) for o in node.operands)
        return f"({text})" if own < parent else text
    if isinstance(node, Not):
        return f"NOT {to_text(node.operand, _PRECEDENCE['Not'])}"
    if isinstance(node, Compare):
        return f"{operand_text(node.left)} {node.op} {operand_text(node.right)}"
    if isinstance(node, InList):
        values = ", ".join(operand_text(v) for v in node.values)
        return f"{operand_text(node.operand)} {'NOT IN' if node.negated else 'IN'} ({values})"
    if isinstance(node, Between):
        word = "NOT BETWEEN" if node.negated else "BETWEEN"
        return (f"{operand_text(node.operand)} {word} {operand_text(node.low)} AND "
                f"{operand_text(node.high)}")
    if isinstance(node, IsNull):
        return f"{operand_text(node.operand)} IS {'NOT ' if node.negated else ''}NULL"
    if isinstance(node, Contains):
        word = "NOT CONTAINS" if node.negated else "CONTAINS"
        return f"{operand_text(node.operand)} {word} {operand_text(node.value)}"
    if isinstance(node, InSegment):
        return f"IN_SEGMENT({_quote(node.key)})"
    raise TypeError(f"not a condition: {node!r}")


def conditions_of(node: Condition) -> dict[str, Any] | None:
    """A rule as one flat list of conditions joined by AND or by OR, for a form with a row
    per condition: ``{"join": "AND", "rows": [{"left", "op", "value"}, ...]}``.

    None when the rule nests AND inside OR (or the other way), or negates a group: such a
    rule only has a text form.
    """
    join = "OR" if isinstance(node, Or) else "AND"
    operands = node.operands if isinstance(node, And | Or) else (node,)
    rows = []
    for item in operands:
        if isinstance(item, Compare):
            rows.append({"left": operand_text(item.left), "op": item.op,
                         "value": operand_text(item.right)})
        elif isinstance(item, InList):
            rows.append({"left": operand_text(item.operand),
                         "op": "NOT IN" if item.negated else "IN",
                         "value": ", ".join(operand_text(v) for v in item.values)})
        elif isinstance(item, Between):
            rows.append({"left": operand_text(item.operand),
                         "op": "NOT BETWEEN" if item.negated else "BETWEEN",
                         "value": f"{operand_text(item.low)} AND {operand_text(item.high)}"})
        elif isinstance(item, IsNull):
            rows.append({"left": operand_text(item.operand),
                         "op": "IS NOT NULL" if item.negated else "IS NULL", "value": ""})
        elif isinstance(item, Contains):
            rows.append({"left": operand_text(item.operand),
                         "op": "NOT CONTAINS" if item.negated else "CONTAINS",
                         "value": operand_text(item.value)})
        elif isinstance(item, InSegment):
            rows.append({"left": "IN_SEGMENT", "op": "", "value": _quote(item.key)})
        elif isinstance(item, Not) and isinstance(item.operand, InSegment):
            rows.append({"left": "NOT IN_SEGMENT", "op": "", "value": _quote(item.operand.key)})
        else:
            return None
    return {"join": join, "rows": rows}


# -- JSON form -----------------------------------------------------------------------------


def operand_json(node: Operand) -> dict[str, Any]:
    if isinstance(node, Field):
        return {"field": node.name}
    if isinstance(node, Literal):
        return {"value": node.value}
    if isinstance(node, RelativeDate):
        return {"today": True} if node.today else {"relative": f"-{node.amount}{node.unit}"}
    if isinstance(node, Call):
        return {"function": node.function, "of": operand_json(node.argument)}
    out: dict[str, Any] = {"aggregate": node.function, "source": node.source}
    if node.column is not None:
        out["column"] = node.column
    if node.where is not None:
        out["where"] = to_json(node.where)
    if node.window is not None:
        out["last"] = f"{node.window.amount}{node.window.unit}"
    return out


def to_json(node: Condition) -> dict[str, Any]:
    if isinstance(node, And):
        return {"and": [to_json(o) for o in node.operands]}
    if isinstance(node, Or):
        return {"or": [to_json(o) for o in node.operands]}
    if isinstance(node, Not):
        return {"not": to_json(node.operand)}
    if isinstance(node, Compare):
        return {"op": node.op, "left": operand_json(node.left),
                "right": operand_json(node.right)}
    if isinstance(node, InList):
        return {"op": "not_in" if node.negated else "in", "left": operand_json(node.operand),
                "values": [v.value for v in node.values]}
    if isinstance(node, Between):
        return {"op": "not_between" if node.negated else "between",
                "left": operand_json(node.operand), "low": operand_json(node.low),
                "high": operand_json(node.high)}
    if isinstance(node, IsNull):
        return {"op": "is_not_null" if node.negated else "is_null",
                "left": operand_json(node.operand)}
    if isinstance(node, Contains):
        return {"op": "not_contains" if node.negated else "contains",
                "left": operand_json(node.operand), "right": operand_json(node.value)}
    if isinstance(node, InSegment):
        return {"in_segment": node.key}
    raise TypeError(f"not a condition: {node!r}")


class JSONRuleError(TierwiseError):
    """The JSON form of a rule is malformed; the message gives the path to the problem."""


def _unit(text: str, where: str) -> tuple[int, str]:
    body = text.lstrip("-")
    if len(body) < 2 or body[-1] not in "dwmy" or not body[:-1].isdigit():
        raise JSONRuleError(f"{where}: {text!r} is not a duration such as 30d, 4w, 6m or 1y",
                            zh=f"{where}：{text!r} 不是时长（如 30d、4w、6m 或 1y）")
    return int(body[:-1]), body[-1]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "…"


def _one_of(data: dict[str, Any], key: str, names: Collection[str], where: str) -> str:
    """``data[key]`` upper-cased, which must be one of ``names``."""
    name = str(data[key]).upper()
    if name not in names:
        raise JSONRuleError(f"{where}.{key}: {name!r} is not one of {', '.join(names)}",
                            zh=f"{where}.{key}：{name!r} 不在 {', '.join(names)} 之中")
    return name


def operand_from_json(data: Any, where: str, depth: int = 0) -> Operand:
    if not isinstance(data, dict):
        raise JSONRuleError(f"{where}: expected an object, found {_short(data)}",
                            zh=f"{where}：应为对象，实际是 {_short(data)}")
    if "field" in data:
        return Field(tuple(str(data["field"]).split(".")))
    if "value" in data:
        value = data["value"]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise JSONRuleError(f"{where}.value: expected a number or a string",
                                zh=f"{where}.value：应为数字或字符串")
        return Literal(value)
    if data.get("today"):
        return RelativeDate(0, "d", today=True)
    if "relative" in data:
        amount, unit = _unit(str(data["relative"]), f"{where}.relative")
        return RelativeDate(amount, unit)
    if "aggregate" in data:
        function = _one_of(data, "aggregate", AGGREGATES, where)
        window = None
        if "last" in data:
            window = Window(*_unit(str(data["last"]), f"{where}.last"))
        condition = from_json(data["where"], f"{where}.where", depth + 1) \
            if "where" in data else None
        return Aggregate(function, str(data.get("source")), data.get("column"), condition,
                         window)
    if "function" in data:
        function = _one_of(data, "function", FUNCTIONS, where)
        argument = operand_from_json(data.get("of"), f"{where}.of", depth)
        if not isinstance(argument, Field | Literal):
            raise JSONRuleError(f"{where}.of: expected a field (or a holiday's name)",
                                zh=f"{where}.of：应为字段（或节日名称）")
        return Call(function, argument)
    raise JSONRuleError(f"{where}: expected one of field, value, relative, today, aggregate, "
                        "function", zh=f"{where}：应为 field、value、relative、today、aggregate "
                        "或 function 之一")


def from_json(data: Any, where: str = "rule", depth: int = 0) -> Condition:
    """The condition a JSON form describes; errors name the path (``rule.and[1].left``)."""
    if depth > MAX_DEPTH:
        raise JSONRuleError(f"{where}: conditions are nested more than {MAX_DEPTH} deep",
                            zh=f"{where}：条件嵌套超过 {MAX_DEPTH} 层")
    try:
        return _condition_from_json(data, where, depth)
    except RuleLimitError as exc:
        raise JSONRuleError(f"{where}: {exc.args[0]}",
                            zh=f"{where}：{getattr(exc, 'zh', None) or exc.args[0]}") from None


def _condition_from_json(data: Any, where: str, depth: int) -> Condition:
    if not isinstance(data, dict):
        raise JSONRuleError(f"{where}: expected an object, found {_short(data)}",
                            zh=f"{where}：应为对象，实际是 {_short(data)}")
    for key, cls in (("and", And), ("or", Or)):
        if key in data:
            items = data[key]
            if not isinstance(items, list) or len(items) < 2:
                raise JSONRuleError(f"{where}.{key}: expected a list of at least 2 conditions",
                                    zh=f"{where}.{key}：应为至少包含 2 个条件的列表")
            return cls(tuple(from_json(v, f"{where}.{key}[{i}]", depth + 1)
                             for i, v in enumerate(items)))
    if "not" in data:
        return Not(from_json(data["not"], f"{where}.not", depth + 1))
    if "in_segment" in data:
        return InSegment(str(data["in_segment"]))
    op = data.get("op")
    left = operand_from_json(data.get("left"), f"{where}.left", depth)
    if op in COMPARE_OPS:
        return Compare(op, left, operand_from_json(data.get("right"), f"{where}.right", depth))
    if op in ("in", "not_in"):
        values = data.get("values")
        if not isinstance(values, list) or not values:
            raise JSONRuleError(f"{where}.values: expected a non-empty list",
                                zh=f"{where}.values：应为非空列表")
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise JSONRuleError(f"{where}.values[{i}]: expected a number or a string, "
                                    f"found {_short(v)}",
                                    zh=f"{where}.values[{i}]：应为数字或字符串，实际是 "
                                    f"{_short(v)}")
        return InList(left, tuple(Literal(v) for v in values), op == "not_in")
    if op in ("between", "not_between"):
        return Between(left, operand_from_json(data.get("low"), f"{where}.low", depth),
                       operand_from_json(data.get("high"), f"{where}.high", depth),
                       op == "not_between")
    if op in ("is_null", "is_not_null"):
        return IsNull(left, op == "is_not_null")
    if op in ("contains", "not_contains"):
        return Contains(left, operand_from_json(data.get("right"), f"{where}.right", depth),
                        op == "not_contains")
    raise JSONRuleError(f"{where}.op: {op!r} is not one of {', '.join(COMPARE_OPS)}, in, "
                        "not_in, between, not_between, is_null, is_not_null, contains, "
                        "not_contains",
                        zh=f"{where}.op：{op!r} 不在 {', '.join(COMPARE_OPS)}、in、not_in、"
                        "between、not_between、is_null、is_not_null、contains、not_contains "
                        "之中")
