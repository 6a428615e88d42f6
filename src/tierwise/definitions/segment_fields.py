"""What a segment rule may name: customer fields, computed fields, aggregate sources.

``validate`` checks a parsed rule against this catalogue and rejects unknown names with
the closest valid ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass

from tierwise.definitions.schemas import TABLES, source_schema
from tierwise.definitions.segment_ast import (
    SOURCES,
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
)
from tierwise.errors import TierwiseError

Kind = str  # string, number, timestamp, date, list, json


@dataclass(frozen=True)
class FieldInfo:
    kind: Kind
    table: str  # customers, snapshot, live (computed from orders at as_of), source
    column: str
    json_key: str | None = None


#: The kind a rule sees for each kind of canonical column.
RULE_KIND: dict[str, Kind] = {"string": "string", "enum": "string", "float": "number",
                              "int": "number", "timestamp": "timestamp", "date": "date",
                              "tags": "list", "json": "json"}


def _columns(table: str) -> dict[str, Kind]:
    """A canonical table's columns as rules see them (``definitions.schemas`` declares
    them once; the customer reference is how a source joins, not a column to ask about)."""
    schema = TABLES["customers"] if table == "customers" else source_schema(table)
    return {c.name: RULE_KIND[c.kind] for c in schema.columns
            if table == "customers" or c.name != schema.customer_refs[0]}


#: Customer master data; the JSON column is reached through ``attributes.<key>``.
CUSTOMER_FIELDS: dict[str, Kind] = {name: kind for name, kind in _columns("customers").items()
                                    if kind != "json"}
#: Fields of the latest customer-facts snapshot (``tierwise compute``), by rule name.
COMPUTED_FIELDS: dict[str, tuple[str, Kind]] = {
    "rfm.r": ("rfm_r", "number"), "rfm.f": ("rfm_f", "number"), "rfm.m": ("rfm_m", "number"),
    "rfm.score": ("rfm_score", "number"), "rfm.cell": ("rfm_cell", "string"),
    "rfm.segment": ("rfm_segment", "string"), "tier": ("tier", "string"),
    "value_score": ("value_score", "number"), "lifecycle": ("lifecycle", "string"),
    "clv": ("clv", "number"), "profit_clv": ("profit_clv", "number"),
    "p_alive": ("p_alive", "number"), "expected_purchases": ("expected_purchases", "number"),
    "churn_risk": ("churn_risk", "string"),
    "churn_probability": ("churn_probability", "number"),
    "lookalike_score": ("lookalike_score", "number"),
    "referrals": ("referrals", "number"),
    "referral_revenue": ("referral_revenue", "number"),
    "contribution_12m": ("contribution_12m", "number"),
}
#: Kept current by the server as events arrive (``models.leads``).
LEAD_FIELDS: dict[str, tuple[str, Kind]] = {"lead_score": ("lead_score", "number")}
def _latest(source: str, column: str) -> Aggregate:
    """The value of ``column`` in the customer's latest row of ``source`` that has one."""
    return Aggregate("LATEST", source, column, IsNull(Field((column,)), negated=True), None)


#: Computed at as_of like an aggregate: the first and last paid order, the customer's
#: latest NPS score (0–10) and its class, and their mean CSAT (1–5) over all feedback.
LIVE_FIELDS: dict[str, Aggregate] = {
    "last_order_at": Aggregate("MAX", "orders", "ordered_at", None, None),
    "first_order_at": Aggregate("MIN", "orders", "ordered_at", None, None),
    "nps": _latest("feedback", "nps"),
    "nps_class": _latest("feedback", "nps"),
    "csat": Aggregate("AVG", "feedback", "csat", None, None),
}
LIVE_KINDS: dict[str, Kind] = {"last_order_at": "timestamp", "first_order_at": "timestamp",
                               "nps": "number", "nps_class": "string", "csat": "number"}
#: NPS classes by score: promoters 9–10, passives 7–8, detractors 0–6.
NPS_CLASSES = (("promoter", 9), ("passive", 7), ("detractor", 0))


def nps_class(score: float | None) -> str | None:
    """The class of an NPS score, as the field ``nps_class`` computes it in a rule."""
    if score is None:
        return None
    return next((name for name, floor in NPS_CLASSES if score >= floor), None)

SOURCE_COLUMNS: dict[str, dict[str, Kind]] = {source: _columns(source) for source in SOURCES}
TIME_COLUMN: dict[str, str] = {source: str(source_schema(source).time_column)
                               for source in SOURCES}
#: The column naming the customer a source's row counts for (``referrer_id`` for referrals,
#: ``account_id`` for contacts).
CUSTOMER_COLUMN: dict[str, str] = {source: source_schema(source).customer_refs[0]
                                   for source in SOURCES}
JSON_COLUMNS: dict[str, str] = {table: c.name for table in ("customers", *SOURCES)
                                for c in (TABLES["customers"] if table == "customers"
                                          else source_schema(table)).columns
                                if c.kind == "json"}

class RuleError(TierwiseError):
    """A rule that parses but names something that does not exist or cannot work."""


def _suggest(name: str, options: list[str], zh: bool = False) -> str:
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.6)
    if not close:
        return ""
    return f"（是不是要写 {'、'.join(close)}？）" if zh else f"; did you mean {', '.join(close)}?"


def customer_field(field: Field) -> FieldInfo:
    name = field.name
    if name in CUSTOMER_FIELDS:
        return FieldInfo(CUSTOMER_FIELDS[name], "customers", name)
    if name in COMPUTED_FIELDS:
        column, kind = COMPUTED_FIELDS[name]
        return FieldInfo(kind, "snapshot", column)
    if name in LIVE_FIELDS:
        return FieldInfo(LIVE_KINDS[name], "live", name)
    if name in LEAD_FIELDS:
        column, kind = LEAD_FIELDS[name]
        return FieldInfo(kind, "leads", column)
    if field.path[0] == "attributes" and len(field.path) == 2:
        return FieldInfo("json", "customers", "attributes", field.path[1])
    options = [*CUSTOMER_FIELDS, *COMPUTED_FIELDS, *LIVE_FIELDS, *LEAD_FIELDS,
               "attributes.<key>"]
    raise RuleError(f"unknown field {name!r}{_suggest(name, options)} "
                    f"(fields: {', '.join(options)})",
                    zh=f"未知字段 {name!r}{_suggest(name, options, True)}；"
                    f"可用字段：{', '.join(options)}")


def source_field(source: str, field: Field) -> FieldInfo:
    columns = SOURCE_COLUMNS[source]
    path = field.path[1:] if field.path[0] == source and len(field.path) > 1 else field.path
    name = path[0]
    if name in columns and columns[name] == "json" and len(path) == 2:
        return FieldInfo("json", "source", name, path[1])
    if name in columns and len(path) == 1:
        return FieldInfo(columns[name], "source", name)
    options = [c if k != "json" else f"{c}.<key>" for c, k in columns.items()]
    extras = JSON_COLUMNS.get(source)
    kept = (f"; columns an import did not map are kept as {extras}: write "
            f"{extras}.{'.'.join(path)}" if extras and len(path) == 1 else "")
    kept_zh = (f"；导入时未映射的列保存在 {extras} 中：请写 {extras}.{'.'.join(path)}"
               if extras and len(path) == 1 else "")
    if source == "referrals":  # what they are worth is a customer field, not a column
        kept = ("; the paid revenue of the customers someone referred is the customer field "
                "referral_revenue (e.g. referral_revenue >= 5000), computed by tierwise compute")
        kept_zh = ("；被推荐客户的已付收入是客户字段 referral_revenue（例如 referral_revenue >= "
                   "5000），由 tierwise compute 计算")
    raise RuleError(f"{source} has no column {'.'.join(path)!r}"
                    f"{_suggest('.'.join(path), options)}{kept} (columns: "
                    f"{', '.join(options)})",
                    zh=f"{source} 没有列 {'.'.join(path)!r}"
                    f"{_suggest('.'.join(path), options, True)}{kept_zh}；可用的列："
                    f"{', '.join(options)}")


def operands(node: Condition) -> Iterator[Operand]:
    """The operands a leaf condition compares (none for AND, OR, NOT, IN_SEGMENT)."""
    if isinstance(node, Compare):
        yield from (node.left, node.right)
    elif isinstance(node, InList | IsNull):
        yield node.operand
    elif isinstance(node, Between):
        yield from (node.operand, node.low, node.high)
    elif isinstance(node, Contains):
        yield from (node.operand, node.value)


def children(node: Condition) -> Iterator[Condition]:
    if isinstance(node, And | Or):
        yield from node.operands
    elif isinstance(node, Not):
        yield node.operand


def segment_references(node: Condition) -> set[str]:
    """Keys named by IN_SEGMENT anywhere in the rule."""
    found = {node.key} if isinstance(node, InSegment) else set()
    for child in children(node):
        found |= segment_references(child)
    return found


def validate(node: Condition, source: str | None = None) -> None:
    """Raise ``RuleError`` for unknown fields, sources, columns or misused aggregates."""
    if isinstance(node, InSegment):
        if source is not None:
            raise RuleError("IN_SEGMENT cannot be used inside an aggregate's WHERE",
                            zh="聚合的 WHERE 中不能使用 IN_SEGMENT")
        return
    for child in children(node):
        validate(child, source)
    for operand in operands(node):
        if isinstance(operand, Field):
            if source is None:
                customer_field(operand)
            else:
                source_field(source, operand)
        elif isinstance(operand, Aggregate):
            if source is not None:
                raise RuleError("an aggregate cannot be nested inside another's WHERE",
                                zh="聚合不能嵌套在另一个聚合的 WHERE 中")
            check_aggregate(operand)
        elif isinstance(operand, Call):
            check_call(operand, source)


def call_field(node: Call, source: str | None) -> FieldInfo | None:
    """The field a function reads (None for a holiday's countdown)."""
    if not isinstance(node.argument, Field):
        return None
    return customer_field(node.argument) if source is None \
        else source_field(source, node.argument)


def check_call(node: Call, source: str | None) -> None:
    if node.function == "DAYS_UNTIL_HOLIDAY":
        if not (isinstance(node.argument, Literal) and isinstance(node.argument.value, str)):
            raise RuleError("DAYS_UNTIL_HOLIDAY takes a holiday's name in quotes, such as "
                            "DAYS_UNTIL_HOLIDAY('春节')",
                            zh="DAYS_UNTIL_HOLIDAY 需要用引号括起的节日名称，例如 "
                            "DAYS_UNTIL_HOLIDAY('春节')")
        return
    info = call_field(node, source)
    if info is None:
        raise RuleError(f"{node.function} takes a date or time field, such as "
                        f"{node.function}(birth_date)",
                        zh=f"{node.function} 需要一个日期或时间字段，例如 "
                        f"{node.function}(birth_date)")
    wanted = ("timestamp",) if node.function == "HOUR" else ("date", "timestamp")
    if info.kind not in wanted:
        what = "a time field such as signup_at" if node.function == "HOUR" \
            else "a date or time field such as birth_date or signup_at"
        name = node.argument.name if isinstance(node.argument, Field) else ""
        what_zh = "时间字段（如 signup_at）" if node.function == "HOUR" \
            else "日期或时间字段（如 birth_date 或 signup_at）"
        raise RuleError(f"{node.function}({name}): {name} is {article(info.kind)}; "
                        f"{node.function} takes {what}",
                        zh=f"{node.function}({name})：{name} 是{article(info.kind, True)}；"
                        f"{node.function} 需要{what_zh}")


def check_aggregate(node: Aggregate) -> None:
    if node.source not in SOURCE_COLUMNS:
        hint = _suggest(node.source, list(SOURCE_COLUMNS))
        raise RuleError(f"unknown source {node.source!r}{hint}; expected one of "
                        f"{', '.join(SOURCE_COLUMNS)}",
                        zh=f"未知数据源 {node.source!r}"
                        f"{_suggest(node.source, list(SOURCE_COLUMNS), True)}；可用的数据源："
                        f"{', '.join(SOURCE_COLUMNS)}")
    needs_column = node.function in ("SUM", "AVG", "MIN", "MAX", "COUNT_DISTINCT", "LATEST")
    if needs_column and node.column is None:
        raise RuleError(f"{node.function} needs a column, such as {node.function}"
                        f"({node.source}.{_example(node.source)})",
                        zh=f"{node.function} 需要指定一列，例如 {node.function}"
                        f"({node.source}.{_example(node.source)})")
    if not needs_column and node.column is not None:
        raise RuleError(f"{node.function} counts rows of a source: write "
                        f"{node.function}({node.source}), not {node.source}.{node.column}",
                        zh=f"{node.function} 统计数据源的行数：请写 "
                        f"{node.function}({node.source})，而不是 {node.source}.{node.column}")
    if node.column is not None:
        info = source_field(node.source, Field((node.column,)))
        if node.function in ("SUM", "AVG") and info.kind != "number":
            raise RuleError(f"{node.function} needs a numeric column; {node.source}."
                            f"{node.column} is {info.kind}",
                            zh=f"{node.function} 需要数值列；{node.source}.{node.column} "
                            f"是{article(info.kind, True)}")
    if node.where is not None:
        validate(node.where, node.source)


def article(kind: str, zh: bool = False) -> str:
    if zh:
        return {"number": "数值", "string": "文本", "timestamp": "时间", "date": "日期",
                "list": "列表", "json": "事件属性"}.get(kind, kind)
    return {"number": "a number", "string": "text", "timestamp": "a time", "date": "a date",
            "list": "a list", "json": "an event property"}.get(kind, kind)


def _example(source: str) -> str:
    return next(c for c, k in SOURCE_COLUMNS[source].items() if k == "number") \
        if any(k == "number" for k in SOURCE_COLUMNS[source].values()) else "type"
