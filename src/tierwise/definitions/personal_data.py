"""What counts as personal data in a workspace, who may read it, and how it is shown.

Personal data is the customer columns name, e-mail, phone and address, plus every key of
``customers.attributes`` and ``events.properties`` that names personal data: by default
the common names of ID card and passport numbers, WeChat and QQ ids, bank cards, addresses,
e-mail addresses and phone numbers (in English, pinyin and Chinese), and any key the
workspace lists in ``sensitive_attributes`` (minus those it lists in
``public_attributes``).

Every value of personal data that reaches a caller goes through ``PersonalData.show``
(and the helpers built on it): unmasked for callers who may read that customer's PII, masked
for everyone else. A segment rule that reads personal data (``personal_fields``) may only be
previewed, counted, saved or explained by callers allowed to read PII unmasked
(``require_unmasked``): otherwise its counts and explanations are an oracle that rebuilds a
value one character at a time.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from tierwise.definitions.roles import Principal
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
    to_text,
)
from tierwise.definitions.segment_fields import children, operands
from tierwise.definitions.segment_parser import parse
from tierwise.errors import ForbiddenError

#: The customer columns that hold personal data.
PII_COLUMNS = ("name", "email", "phone", "address")


def mask(column: str, value: str | None) -> str | None:
    """A value as shown to someone without PII rights: 138****5678, z***@example.com, 张*."""
    if value is None or value == "":
        return value
    if column == "phone":
        chinese = value.startswith("+86") or (len(value) == 11 and value.startswith("1"))
        digits = value[3:] if value.startswith("+86") else value.lstrip("+")
        if len(digits) <= 4:
            return "*" * len(digits)
        # Chinese mobiles keep the carrier prefix, as shown on receipts and by banks.
        head = digits[:3] if chinese and len(digits) == 11 else ""
        return f"{head}{'*' * (len(digits) - len(head) - 4)}{digits[-4:]}"
    if column == "email":
        local, at, domain = value.partition("@")
        return f"{local[:1]}***{at}{domain}" if at else f"{value[:1]}***"
    if column == "name":
        return value[:1] + "*" * max(1, min(len(value) - 1, 3))
    if column == "address":
        return value[:6] + "***"
    return value


#: Fragments of attribute and property names that hold personal data, found anywhere in
#: the name (lower-cased, NFKC, with everything but letters, digits and CJK removed).
SENSITIVE_NAME_PARTS = (
    "idcard", "idnumber", "citizenid", "nationalid", "shenfenzheng", "身份证", "证件号",
    "passport", "huzhao", "护照",
    "wechat", "weixin", "wxid", "openid", "unionid", "微信",
    "bankcard", "bankaccount", "cardnumber", "iban", "银行卡", "银行账", "卡号",
    "address", "dizhi", "地址", "住址",
    "email", "邮箱", "phone", "shouji", "手机", "电话",
    "birthday", "生日", "realname", "fullname", "姓名", "licenseplate", "车牌",
)
#: Short words that name personal data only as a word of their own (``tel``, ``qq_id``,
#: ``QQ号``), not inside another (``hotel``, ``qqmusic``).
SENSITIVE_WORDS = ("tel", "qq", "ssn", "sfz", "idno", "mobile", "cardno")
_STRIP = re.compile(r"[^0-9a-z\u3400-\u9fff]")
_WORDS = re.compile("|".join(rf"(?<![a-z]){w}(?![a-z])" for w in SENSITIVE_WORDS))


def _normal(name: str) -> str:
    return _STRIP.sub("", unicodedata.normalize("NFKC", name).lower())


def looks_personal(name: str) -> bool:
    """Whether an attribute or property name names personal data by default.

    >>> [looks_personal(n) for n in ("id_card_number", "微信号", "QQ号", "hotel", "segment")]
    [True, True, True, False, False]
    """
    lower = unicodedata.normalize("NFKC", name).lower()
    text = _STRIP.sub("", lower)
    return any(part in text for part in SENSITIVE_NAME_PARTS) or bool(_WORDS.search(lower))


@dataclass(frozen=True)
class PersonalData:
    """A workspace's personal data: built-in columns and sensitive attribute keys."""

    sensitive: frozenset[str] = frozenset()
    public: frozenset[str] = frozenset()
    columns: tuple[str, ...] = PII_COLUMNS
    _cache: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, sensitive: Iterable[str] = (), public: Iterable[str] = ()) -> PersonalData:
        return cls(frozenset(_normal(k) for k in sensitive),
                   frozenset(_normal(k) for k in public))

    def is_sensitive_key(self, key: str) -> bool:
        """Whether ``attributes.<key>`` / ``properties.<key>`` holds personal data."""
        found = self._cache.get(key)
        if found is None:
            normal = _normal(key)
            found = normal in self.sensitive or (normal not in self.public
                                                 and looks_personal(key))
            if len(self._cache) < 10_000:
                self._cache[key] = found
        return found

    def sensitive_keys(self, keys: Iterable[str]) -> list[str]:
        return [k for k in keys if self.is_sensitive_key(k)]

    # -- showing values ---------------------------------------------------------------------
    def mask_json(self, value: Any) -> Any:
        """A JSON object (text or dict) with the values of its sensitive keys masked."""
        data = _as_object(value)
        if data is None:
            return value
        out = {k: mask_value(v) if self.is_sensitive_key(k) else v for k, v in data.items()}
        return json.dumps(out, ensure_ascii=False) if isinstance(value, str) else out

    def mask_customer(self, row: dict[str, Any]) -> dict[str, Any]:
        """A customer row (in place) with its PII columns and sensitive attributes masked."""
        for column in self.columns:
            if column in row:
                row[column] = mask(column, row[column])
        if "attributes" in row:
            row["attributes"] = self.mask_json(row["attributes"])
        return row

    def mask_table(self, table: pa.Table) -> pa.Table:
        """Customers as Arrow (``Workspace.table("customers")``) with PII masked."""
        for name in (*self.columns, "attributes"):
            if name not in table.column_names:
                continue
            values = table[name].to_pylist()
            shown = [self.mask_json(v) for v in values] if name == "attributes" else \
                [mask(name, v) for v in values]
            table = table.set_column(table.schema.get_field_index(name), name,
                                     pa.array(shown, table[name].type))
        return table

    def mask_field(self, path: tuple[str, ...], value: Any) -> Any:
        """A value of a personal field (``email``, ``attributes.wechat``,
        ``properties.email``) as shown masked."""
        if len(path) == 1 and path[0] in self.columns and isinstance(value, str):
            return mask(path[0], value)
        return mask_value(value)

    def field_is_personal(self, path: tuple[str, ...], source: str | None = None) -> bool:
        """Whether a rule field reads personal data: a PII column, a sensitive attribute, or
        (inside an aggregate over ``source``) a sensitive event property."""
        if source is None:
            if len(path) == 1:
                return path[0] in self.columns
            return path[0] == "attributes" and len(path) == 2 and \
                self.is_sensitive_key(path[1])
        inner = path[1:] if path[0] == source and len(path) > 1 else path
        return len(inner) == 2 and inner[0] == "properties" and self.is_sensitive_key(inner[1])


def mask_value(value: Any) -> Any:
    """Any other personal value shown masked: a few characters kept, the rest starred.

    >>> mask_value("110101199003077777"), mask_value("wx_zhang"), mask_value(None)
    ('110***********7777', 'w***', None)
    """
    if value is None or value == "":
        return value
    if not isinstance(value, str):
        return _hidden(value)
    if len(value) >= 11 and sum(c.isdigit() for c in value) >= 8:
        return value[:3] + "*" * (len(value) - 7) + value[-4:]
    return value[:1] + "***"


def _hidden(value: Any) -> Any:
    return None if value is None else "***"


def _as_object(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.startswith("{"):
        try:
            found = json.loads(value)
        except ValueError:
            return None
        return found if isinstance(found, dict) else None
    return None


# -- rules that read personal data -------------------------------------------------------

def personal_fields(rule: Condition, personal: PersonalData,
                    resolve: Callable[[str], Condition | None] | None = None,
                    source: str | None = None, _seen: frozenset[str] = frozenset()
                    ) -> list[str]:
    """The personal-data fields a rule reads, in any position: compared, tested for NULL,
    inside NOT or OR, in an aggregate's WHERE, or in a segment it names with IN_SEGMENT
    (``resolve`` gives that segment's rule; written ``IN_SEGMENT('k') → email``).

    >>> from tierwise.definitions.segment_parser import parse
    >>> personal_fields(parse("city = 'x' OR NOT email IS NULL"), PersonalData())
    ['email']
    """
    found: list[str] = []

    def add(name: str) -> None:
        if name not in found:
            found.append(name)

    if isinstance(rule, InSegment):
        inner = resolve(rule.key) if resolve is not None and rule.key not in _seen else None
        if inner is not None:
            for name in personal_fields(inner, personal, resolve, None, _seen | {rule.key}):
                add(f"IN_SEGMENT('{rule.key}') → {name}")
        return found
    for child in children(rule):
        for name in personal_fields(child, personal, resolve, source, _seen):
            add(name)
    for operand in operands(rule):
        if isinstance(operand, Call) and isinstance(operand.argument, Field):
            operand = operand.argument  # MONTH(birth_date) reads birth_date
        if isinstance(operand, Field) and personal.field_is_personal(operand.path, source):
            add(operand.name if source is None else f"{source}.{operand.name}")
        elif isinstance(operand, Aggregate) and operand.where is not None:
            for name in personal_fields(operand.where, personal, resolve, operand.source,
                                        _seen):
                add(name)
    return found


def may_read_all_pii(principal: Principal) -> bool:
    """Whether the principal sees every customer's PII unmasked (``pii:read``)."""
    return principal.can("pii:read")


def require_unmasked(principal: Principal, rule: Condition, personal: PersonalData,
                     resolve: Callable[[str], Condition | None] | None, doing: str,
                     customer_owner: str | None = None, one_customer: bool = False,
                     source: str | None = None) -> None:
    """Refuse (``ForbiddenError``) to ``doing`` a rule that reads personal data for a caller
    who may not read it unmasked: for one customer (``one_customer``, an explanation) the
    owner's PII right counts; for counts over everyone only ``pii:read`` does. ``source``
    names the table of a condition on rows (``events`` for a lead-scoring event rule)."""
    fields = personal_fields(rule, personal, resolve, source)
    if not fields:
        return
    allowed = principal.sees_pii_of(customer_owner) if one_customer \
        else may_read_all_pii(principal)
    if not allowed:
        raise ForbiddenError(
            f"role {principal.role} may not {doing} a rule that reads personal data "
            f"({', '.join(fields)}): that needs pii:read",
            zh=f"角色 {principal.role} 不能{doing}读取个人数据的规则（{', '.join(fields)}）：这需要"
            " pii:read 权限")


def mask_literals(rule: Condition, personal: PersonalData, source: str | None = None
                  ) -> Condition:
    """The rule with every literal compared with personal data masked (``email =
    'zhang@example.com'`` → ``email = 'z***@example.com'``): how a rule is shown to callers
    who may not read PII, since an analyst's rule can hold a customer's e-mail or phone."""

    def personal_path(operand: Operand) -> tuple[str, ...] | None:
        if isinstance(operand, Field) and personal.field_is_personal(operand.path, source):
            return operand.path if source is None else ("properties", operand.path[-1])
        return None

    def hide(path: tuple[str, ...] | None, operand: Operand) -> Operand:
        if path is None or not isinstance(operand, Literal):
            return operand
        return Literal(personal.mask_field(path, operand.value))

    def aggregate(operand: Operand) -> Operand:
        if isinstance(operand, Aggregate) and operand.where is not None:
            return replace(operand, where=mask_literals(operand.where, personal,
                                                        operand.source))
        return operand

    if isinstance(rule, And | Or):
        return type(rule)(tuple(mask_literals(c, personal, source) for c in rule.operands))
    if isinstance(rule, Not):
        return Not(mask_literals(rule.operand, personal, source))
    if isinstance(rule, Compare):
        left, right = aggregate(rule.left), aggregate(rule.right)
        return replace(rule, left=hide(personal_path(right), left),
                       right=hide(personal_path(left), right))
    if isinstance(rule, InList):
        path = personal_path(rule.operand)
        values = tuple(hide(path, v) for v in rule.values)
        return replace(rule, operand=aggregate(rule.operand),
                       values=values)  # type: ignore[arg-type]
    if isinstance(rule, Between):
        path = personal_path(rule.operand)
        return replace(rule, operand=aggregate(rule.operand), low=hide(path, rule.low),
                       high=hide(path, rule.high))
    if isinstance(rule, Contains):
        return replace(rule, operand=aggregate(rule.operand),
                       value=hide(personal_path(rule.operand), rule.value))
    if isinstance(rule, IsNull):
        return replace(rule, operand=aggregate(rule.operand))
    return rule


def rule_as_shown(principal: Principal, rule: str | None, personal: PersonalData) -> str | None:
    """A rule's text as this caller may see it: as written for callers with ``pii:read``,
    with literals compared with personal data masked for everyone else."""
    if rule is None or may_read_all_pii(principal):
        return rule
    tree = parse(rule)
    masked = mask_literals(tree, personal)
    return to_text(masked) if masked != tree else rule
