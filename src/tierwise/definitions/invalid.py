"""What was wrong with a definition or a request body, in both languages.

Pydantic words its validation errors in English; a zh-CN user of a trigger, a playbook, a
segment definition, a tier setting or an API body gets them in Chinese too. Each error is
worded from its type and context (the English is pydantic's own message); a type not
listed here keeps the English in both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from tierwise.errors import Said, in_both, joined

#: Chinese for each error type; ``{name}`` fields come from the error's context.
_ZH = {
    "missing": "缺少必填项",
    "extra_forbidden": "不认识这个字段（不允许额外的字段）",
    "literal_error": "应为 {expected} 之一",
    "enum": "应为 {expected} 之一",
    "int_parsing": "应为整数",
    "int_type": "应为整数",
    "int_from_float": "应为整数，不能有小数部分",
    "float_parsing": "应为数字",
    "float_type": "应为数字",
    "finite_number": "应为有限的数字",
    "bool_parsing": "应为 true 或 false",
    "bool_type": "应为 true 或 false",
    "string_type": "应为文本",
    "list_type": "应为列表",
    "dict_type": "应为对象（键值对）",
    "model_type": "应为对象（键值对）",
    "model_attributes_type": "应为对象（键值对）",
    "greater_than": "应大于 {gt}",
    "greater_than_equal": "应大于或等于 {ge}",
    "less_than": "应小于 {lt}",
    "less_than_equal": "应小于或等于 {le}",
    "string_too_short": "至少 {min_length} 个字符",
    "string_too_long": "最多 {max_length} 个字符",
    "too_short": "至少 {min_length} 项",
    "too_long": "最多 {max_length} 项",
    "string_pattern_mismatch": "不符合格式 {pattern}",
    "datetime_parsing": "应为日期时间，例如 2025-01-31T09:00:00+08:00",
    "datetime_from_date_parsing": "应为日期时间，例如 2025-01-31T09:00:00+08:00",
    "datetime_type": "应为日期时间，例如 2025-01-31T09:00:00+08:00",
    "date_parsing": "应为日期，例如 2025-01-31",
    "date_from_datetime_parsing": "应为日期，例如 2025-01-31",
    "date_type": "应为日期，例如 2025-01-31",
    "timezone_aware": "应带时区，例如 +08:00",
    "json_invalid": "不是有效的 JSON",
    "url_parsing": "不是有效的网址",
    "url_scheme": "网址协议应为 {expected_schemes}",
}


def location(loc: Sequence[Any]) -> str:
    """``actions.0.url`` for a field's path."""
    return ".".join(str(p) for p in loc)


def message(error: Mapping[str, Any]) -> Said:
    """One validation error's message (without where it is)."""
    en = str(error.get("msg", ""))
    context = error.get("ctx") or {}
    cause = context.get("error")
    if error.get("type") == "value_error" and cause is not None:
        # a validator's own error: its words, in both languages when it has them
        return Said(*in_both(cause))
    zh = _ZH.get(str(error.get("type")))
    if zh is None:
        return Said(en, en)
    try:
        return Said(en, zh.format(**context))
    except (KeyError, IndexError):
        return Said(en, en)


def problems(exc: ValidationError, first: str = "") -> Said:
    """All of ``exc``'s errors as "where: what; …"; ``first`` names a field at the top."""
    found = []
    for error in exc.errors():
        where = location(error["loc"]) or first
        en, zh = message(error).both()
        found.append(Said(f"{where}: {en}", f"{where}：{zh}") if where else Said(en, zh))
    return joined(found)
