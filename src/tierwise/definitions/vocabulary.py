"""Fields with a fixed set of values: their codes, their labels in each language, and the
rule literals that name them.

A rule may name a value by its code (``'champions'``), by its label in either language
(``'冠军客户'``, ``'Champions'``) or by the head of a label written ``head · tail``
(``'A 类'`` for ``A 类 · 核心客户``); case, spaces and ``·`` do not matter. ``normalize``
turns every such literal into the code before a rule is compiled, and refuses a literal
that names no value, listing the valid ones in the workspace's language with the closest
as a "did you mean".

The fixed enumerations (lifecycle stage, churn risk, gender, order status) are declared
here once; the dashboard, the CLI and the reports label values from the same tables. The
tier and RFM segment enumerations depend on a workspace's settings: ``models.labels``
builds them.

>>> vocabulary = Vocabulary((LIFECYCLE,), "en")
>>> from tierwise.definitions.segment_parser import parse
>>> from tierwise.definitions.segment_ast import to_text
>>> to_text(vocabulary.normalize(parse("lifecycle IN ('流失预警', 'Churned')")))
"lifecycle IN ('at_risk', 'churned')"
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from tierwise.definitions import holidays
from tierwise.definitions.schemas import GENDER, ORDER_STATUS, ROLE
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
    IsNull,
    Literal,
    Not,
    Operand,
    Or,
)
from tierwise.definitions.segment_fields import RuleError

Labels = Mapping[str, Mapping[str, str]]  # code -> language -> label
LANGUAGES = ("zh-CN", "en")
#: The computed values (snapshot columns) customers are filtered and grouped by, with the
#: rule field — the enumeration — each one is. A customer's own fields (city, gender, …)
#: are named alike in both.
VALUE_COLUMNS: dict[str, str] = {"tier": "tier", "lifecycle": "lifecycle",
                                 "rfm_segment": "rfm.segment", "churn_risk": "churn_risk"}


def _key(text: str) -> str:
    """How literals are compared with codes and labels: NFKC, case-folded, without spaces
    and middle dots (``'A 类'``, ``'a类'`` and ``'Ａ類'`` are not all equal, but the first
    two are)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if not ch.isspace() and ch not in "·・.")


@dataclass(frozen=True)
class Enumeration:
    """The values of one field as rules name it (``tier``, ``rfm.segment``,
    ``orders.status``): codes in their order, with labels and other accepted spellings."""

    name: str
    codes: tuple[str, ...]
    labels: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    #: Further spellings accepted for a code (the import's synonyms: ``'男'``, ``'已付款'``).
    spellings: tuple[tuple[str, str], ...] = ()
    _index: dict[str, str] = field(default_factory=dict, compare=False, hash=False,
                                   repr=False)

    @classmethod
    def of(cls, name: str, labels: Labels, codes: tuple[str, ...] | list[str] | None = None,
           spellings: Mapping[str, str] | None = None) -> Enumeration:
        order = tuple(codes) if codes is not None else tuple(labels)
        return cls(name, order,
                   tuple((c, tuple(sorted(labels.get(c, {}).items()))) for c in order),
                   tuple(sorted((spellings or {}).items())))

    def __post_init__(self) -> None:
        index: dict[str, str] = {}
        ambiguous: set[str] = set()

        def add(form: str, code: str) -> None:
            key = _key(form)
            if not key or key in ambiguous:
                return
            if index.get(key, code) != code:
                ambiguous.add(key)
                del index[key]
                return
            index[key] = code

        for spelling, code in self.spellings:
            add(spelling, code)
        for code, labels in self.labels:
            for _, label in labels:
                add(label, code)
                for part in label.split("·"):
                    add(part, code)
        for code in self.codes:  # a code always names itself
            ambiguous.discard(_key(code))
            index[_key(code)] = code
        object.__setattr__(self, "_index", index)

    def label(self, code: str, lang: str) -> str:
        return dict(dict(self.labels).get(code, ())).get(lang, code)

    def code(self, literal: str) -> str | None:
        """The code ``literal`` names, or None."""
        return self._index.get(_key(literal))

    def shown(self, code: str, lang: str) -> str:
        label = self.label(code, lang)
        if label == code:
            return f"'{code}'"
        return f"'{code}'（{label}）" if lang == "zh-CN" else f"'{code}' ({label})"

    def listing(self, lang: str) -> str:
        return ", ".join(self.shown(c, lang) for c in self.codes)

    def closest(self, literal: str) -> list[str]:
        """Codes whose code, label or spelling is closest to ``literal``."""
        found = difflib.get_close_matches(_key(literal), list(self._index), n=6, cutoff=0.5)
        codes: list[str] = []
        for key in found:
            if (code := self._index[key]) not in codes:
                codes.append(code)
        return codes[:3]


@dataclass(frozen=True)
class Vocabulary:
    """The enumerated fields a workspace's rules may name, and the language of its
    messages."""

    enumerations: tuple[Enumeration, ...]
    lang: str = "en"

    def of(self, name: str) -> Enumeration | None:
        return next((e for e in self.enumerations if e.name == name), None)

    def code(self, name: str, literal: str) -> str:
        """The code ``literal`` names among the values of field ``name`` (a field without
        an enumeration takes any text); ``RuleError`` when it names none."""
        enumeration = self.of(name)
        if enumeration is None:
            return literal
        found = enumeration.code(literal)
        if found is None:
            raise self.unknown(enumeration, literal)
        return found

    def column_code(self, column: str, literal: str) -> str:
        """``code`` for a snapshot column or customer field (``tier``, ``rfm_segment``,
        ``gender``, ``city``…): a filter's value as its code."""
        return self.code(VALUE_COLUMNS.get(column, column), literal)

    def column_label(self, column: str, value: object, lang: str) -> str:
        """A column's value in words (tiers, stages, … by their labels; cities as they
        are)."""
        enumeration = self.of(VALUE_COLUMNS.get(column, column))
        return enumeration.label(str(value), lang) if enumeration is not None else str(value)

    def normalize(self, rule: Condition) -> Condition:
        """``rule`` with every literal compared with an enumerated field in code form;
        ``RuleError`` for a literal that names no value of its field."""
        return _Normalizer(self).condition(rule, None)

    def resolving(self, resolve: Callable[[str], Condition | None] | None
                  ) -> Callable[[str], Condition | None] | None:
        """``resolve`` (IN_SEGMENT) giving normalized rules."""
        if resolve is None:
            return None
        inner = resolve

        def normalized(key: str) -> Condition | None:
            found = inner(key)
            return None if found is None else self.normalize(found)

        return normalized

    def unknown(self, enumeration: Enumeration, literal: str) -> RuleError:
        """The error for ``literal``, naming the valid values, in both languages (shown in
        this vocabulary's language unless the caller's language is chosen)."""
        close = enumeration.closest(literal)

        def text(lang: str) -> str:
            names = ", ".join(enumeration.shown(c, lang) for c in close)
            if lang == "zh-CN":
                hint = f"；是否要写 {names}？" if close else "。"
                return (f"{enumeration.name} 没有取值 '{literal}'{hint}"
                        f"可用的取值：{enumeration.listing(lang)}")
            hint = f"; did you mean {names}?" if close else "."
            return (f"{enumeration.name} has no value '{literal}'{hint} "
                    f"Valid values: {enumeration.listing(lang)}")

        return RuleError(text(self.lang), zh=text("zh-CN"), en=text("en"))


class _Normalizer:
    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary

    def _enumeration(self, operand: Operand, source: str | None) -> Enumeration | None:
        if not isinstance(operand, Field):
            return None
        if source is None:
            return self.vocabulary.of(operand.name)
        path = operand.path[1:] if operand.path[0] == source and len(operand.path) > 1 \
            else operand.path
        return self.vocabulary.of(f"{source}.{'.'.join(path)}")

    def _literal(self, enumeration: Enumeration, value: Operand) -> Operand:
        """A literal compared with an enumerated field, as its code. A number names the
        value spelt that way (tiers may be called 1, 2, 3): ``tier = 1`` is not quietly
        compared as text with no match."""
        if not isinstance(value, Literal):
            return value
        text = value.value if isinstance(value.value, str) else \
            repr(value.value) if isinstance(value.value, float) else str(value.value)
        code = enumeration.code(text)
        if code is None:
            raise self.vocabulary.unknown(enumeration, text)
        return value if code == value.value else Literal(code)

    def operand(self, node: Operand) -> Operand:
        if isinstance(node, Aggregate) and node.where is not None:
            return replace(node, where=self.condition(node.where, node.source))
        if isinstance(node, Call) and node.function == "DAYS_UNTIL_HOLIDAY":
            found = self.vocabulary.of(HOLIDAY.name)
            if found is not None:
                argument = self._literal(found, node.argument)
                assert isinstance(argument, Literal)
                return replace(node, argument=argument)
        return node

    def condition(self, node: Condition, source: str | None) -> Condition:
        if isinstance(node, And | Or):
            return type(node)(tuple(self.condition(c, source) for c in node.operands))
        if isinstance(node, Not):
            return Not(self.condition(node.operand, source))
        if isinstance(node, Compare):
            left, right = self.operand(node.left), self.operand(node.right)
            if (found := self._enumeration(left, source)) is not None:
                right = self._literal(found, right)
            elif (found := self._enumeration(right, source)) is not None:
                left = self._literal(found, left)
            return replace(node, left=left, right=right)
        if isinstance(node, InList):
            operand = self.operand(node.operand)
            found = self._enumeration(operand, source)
            if found is None:
                return replace(node, operand=operand)
            values = tuple(self._literal(found, v) for v in node.values)
            return replace(node, operand=operand,
                           values=tuple(v for v in values if isinstance(v, Literal)))
        if isinstance(node, Between):
            operand = self.operand(node.operand)
            low, high = self.operand(node.low), self.operand(node.high)
            if (found := self._enumeration(operand, source)) is not None:
                low, high = self._literal(found, low), self._literal(found, high)
            return replace(node, operand=operand, low=low, high=high)
        if isinstance(node, Contains):
            operand = self.operand(node.operand)
            value = self.operand(node.value)
            if (found := self._enumeration(operand, source)) is not None:
                value = self._literal(found, value)  # a stage label never is a substring
            return replace(node, operand=operand, value=value)
        if isinstance(node, IsNull):
            return replace(node, operand=self.operand(node.operand))
        return node


def literals(rule: Condition, source: str | None = None
             ) -> Iterator[tuple[str | None, Field, str]]:
    """(source, field, text) of every string literal compared with a field by ``=``,
    ``!=`` or ``IN`` (what a free-text check looks up in the data)."""
    if isinstance(rule, And | Or):
        for child in rule.operands:
            yield from literals(child, source)
    elif isinstance(rule, Not):
        yield from literals(rule.operand, source)
    elif isinstance(rule, Compare | InList | Between | IsNull | Contains):
        sides: list[Operand] = []
        if isinstance(rule, Compare):
            sides = [rule.left, rule.right]
            if rule.op in ("=", "!=", "<>"):
                for a, b in ((rule.left, rule.right), (rule.right, rule.left)):
                    if isinstance(a, Field) and isinstance(b, Literal) \
                            and isinstance(b.value, str):
                        yield source, a, b.value
        elif isinstance(rule, InList):
            sides = [rule.operand]
            if isinstance(rule.operand, Field):
                for v in rule.values:
                    if isinstance(v.value, str):
                        yield source, rule.operand, v.value
        for side in sides:
            if isinstance(side, Aggregate) and side.where is not None:
                yield from literals(side.where, side.source)


def _labels(**pairs: tuple[str, str]) -> dict[str, dict[str, str]]:
    return {code: {"zh-CN": zh, "en": en} for code, (zh, en) in pairs.items()}


#: Lifecycle stages (``models.lifecycle`` assigns them) in the order a customer moves.
LIFECYCLE = Enumeration.of("lifecycle", _labels(
    prospect=("潜在客户", "Prospect"), new=("新客户", "New"),
    reactivated=("回流客户", "Reactivated"), loyal=("忠诚客户", "Loyal"),
    active=("活跃客户", "Active"), at_risk=("流失预警", "At risk"),
    dormant=("沉睡客户", "Dormant"), churned=("已流失", "Churned")),
    spellings={"流失": "churned", "流失客户": "churned", "沉睡": "dormant",
               "休眠": "dormant", "活跃": "active", "忠诚": "loyal", "新客": "new",
               "回流": "reactivated", "潜在": "prospect"})
STAGE_LABELS: dict[str, dict[str, str]] = {code: dict(labels)
                                           for code, labels in LIFECYCLE.labels}
STAGES = LIFECYCLE.codes

#: Churn risk bands from P(alive) (``models.lifecycle.churn_risk``).
CHURN_RISK = Enumeration.of("churn_risk", _labels(
    high=("高风险", "High"), medium=("中风险", "Medium"), low=("低风险", "Low")),
    spellings={"高": "high", "中": "medium", "低": "low", "high risk": "high",
               "medium risk": "medium", "low risk": "low"})

GENDER_VALUES = Enumeration.of("gender", _labels(
    male=("男", "Male"), female=("女", "Female"), unknown=("未知", "Unknown"),
    other=("其他", "Other")), spellings=GENDER)

_ROLES = _labels(
    decision_maker=("决策者", "Decision maker"), influencer=("影响者", "Influencer"),
    user=("使用者", "User"), purchasing=("采购", "Purchasing"), finance=("财务", "Finance"),
    technical=("技术", "Technical"), other=("其他", "Other"))
#: A contact's role in its account's decision chain: the customer field ``role`` and the
#: same column of the ``contacts`` source (``COUNT(contacts WHERE role = '决策者')``).
ROLE_VALUES = Enumeration.of("role", _ROLES, spellings=ROLE)
CONTACT_ROLE_VALUES = Enumeration.of("contacts.role", _ROLES, spellings=ROLE)

_ORDER_STATUSES = _labels(paid=("已支付", "Paid"), refunded=("已退款", "Refunded"),
                          cancelled=("已取消", "Cancelled"))
ORDER_STATUS_VALUES = Enumeration.of("orders.status", _ORDER_STATUSES, spellings=ORDER_STATUS)
ACCOUNT_ORDER_STATUS_VALUES = Enumeration.of("account_orders.status", _ORDER_STATUSES,
                                             spellings=ORDER_STATUS)

#: NPS classes (``nps_class``): promoters score 9–10, passives 7–8, detractors 0–6.
NPS_CLASS = Enumeration.of("nps_class", _labels(
    promoter=("推荐者", "Promoter"), passive=("中立者", "Passive"),
    detractor=("贬损者", "Detractor")),
    spellings={"promoters": "promoter", "passives": "passive", "detractors": "detractor",
               "推荐": "promoter", "中立": "passive", "被动者": "passive", "贬损": "detractor"})

#: China's public holidays ``DAYS_UNTIL_HOLIDAY`` counts down to.
HOLIDAY = Enumeration.of("DAYS_UNTIL_HOLIDAY", holidays.LABELS, spellings=holidays.SPELLINGS)

#: The enumerations that do not depend on a workspace's settings.
FIXED: tuple[Enumeration, ...] = (LIFECYCLE, CHURN_RISK, GENDER_VALUES, ORDER_STATUS_VALUES,
                                  NPS_CLASS, HOLIDAY, ROLE_VALUES, CONTACT_ROLE_VALUES,
                                  ACCOUNT_ORDER_STATUS_VALUES)


def label_of(labels: Labels, code: str | None, lang: str) -> str:
    """The label of ``code`` in ``lang`` (the code itself when it has none; — for none)."""
    if code is None:
        return "—"
    return labels.get(code, {}).get(lang, code)
