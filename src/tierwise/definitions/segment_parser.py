"""The text form of the segment language → syntax tree, with errors that point at the spot.

>>> to_text(parse("count(orders, last 30d) >= 2 and not in_segment('churned')"))
"COUNT(orders, LAST 30d) >= 2 AND NOT IN_SEGMENT('churned')"
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

from tierwise.definitions.segment_ast import (
    AGGREGATES,
    FUNCTIONS,
    MAX_DEPTH,
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
    RuleLimitError,
    Window,
    to_text,
)
from tierwise.errors import TierwiseError

_T = TypeVar("_T")
KEYWORDS = {"AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL", "CONTAINS", "WHERE", "LAST",
            "IN_SEGMENT", "TODAY"}

_RESERVED = KEYWORDS | set(AGGREGATES) | set(FUNCTIONS)

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<duration>-?\d+[dwmy](?![\w]))
  | (?P<number>-?\d+(?:\.\d+)?(?![\w]))
  | (?P<string>'(?:[^']|'')*')
  | (?P<op>!=|<>|>=|<=|=|>|<)
  | (?P<punct>[(),.])
  | (?P<ident>[^\W\d][\w]*)
""", re.VERBOSE | re.UNICODE)


class SegmentSyntaxError(TierwiseError):
    """A rule that does not parse. ``line`` and ``column`` are 1-based."""

    def __init__(self, message: str, text: str, offset: int, zh: str | None = None) -> None:
        line = text.count("\n", 0, offset) + 1
        start = text.rfind("\n", 0, offset) + 1
        end = text.find("\n", offset)
        source_line = text[start:end if end >= 0 else len(text)]
        column = offset - start + 1
        pointer = f"\n  {source_line}\n  {' ' * (column - 1)}^"
        super().__init__(f"line {line}, column {column}: {message}{pointer}",
                         zh=f"第 {line} 行第 {column} 列：{zh or message}{pointer}")
        self.line, self.column, self.reason = line, column, message


@dataclass(frozen=True)
class Token:
    kind: str  # duration number string op punct ident keyword end
    text: str
    offset: int

    @property
    def upper(self) -> str:
        return self.text.upper()

    def describe(self, zh: bool = False) -> str:
        if self.kind == "end":
            return "规则结尾" if zh else "the end of the rule"
        return repr(self.text)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position] == "'":
                raise SegmentSyntaxError("this 'string' is not closed with a quote", text,
                                         position, zh="这个 '字符串' 缺少结尾的引号")
            raise SegmentSyntaxError(f"unexpected character {text[position]!r}", text, position,
                                     zh=f"意外的字符 {text[position]!r}")
        kind = match.lastgroup or ""
        value = match.group()
        if kind != "space":
            if kind == "ident" and value.upper() in _RESERVED:
                kind = "keyword"
            tokens.append(Token(kind, value, position))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    def nested(self, token: Token) -> None:
        """One level deeper (NOT, a parenthesis, an aggregate's WHERE); refused past the
        limit, so that no rule is too deep to compile."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SegmentSyntaxError(f"conditions are nested more than {MAX_DEPTH} levels "
                                     "deep here", self.text, token.offset,
                                     zh=f"此处条件嵌套超过 {MAX_DEPTH} 层")

    def made(self, token: Token, build: Callable[[], _T]) -> _T:
        """``build()``, with a value beyond the language's limits reported at ``token``."""
        try:
            return build()
        except RuleLimitError as exc:
            raise SegmentSyntaxError(exc.args[0], self.text, token.offset, exc.zh) from None

    # -- helpers -------------------------------------------------------------------------
    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.token
        self.index += 1
        return token

    def is_keyword(self, *words: str) -> bool:
        return self.token.kind == "keyword" and self.token.upper in words

    def accept(self, *words: str) -> bool:
        if self.is_keyword(*words):
            self.advance()
            return True
        return False

    def fail(self, expected: str, zh: str, token: Token | None = None) -> SegmentSyntaxError:
        """``expected`` (in English and Chinese) was not found at ``token``."""
        token = token or self.token
        return SegmentSyntaxError(f"expected {expected}, found {token.describe()}", self.text,
                                  token.offset, zh=f"这里应为{zh}，实际是{token.describe(True)}")

    def expect_punct(self, char: str, what: str, zh: str) -> None:
        if self.token.kind == "punct" and self.token.text == char:
            self.advance()
            return
        raise self.fail(what, zh)

    # -- grammar -------------------------------------------------------------------------
    def parse(self) -> Condition:
        if self.token.kind == "end":
            raise self.fail("a condition", "一个条件")
        node = self.or_expr()
        if self.token.kind != "end":
            raise self.fail("AND, OR or the end of the rule", " AND、OR 或规则结尾")
        return node

    def or_expr(self) -> Condition:
        items = [self.and_expr()]
        while self.accept("OR"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Condition:
        items = [self.not_expr()]
        while self.accept("AND"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Condition:
        token = self.token
        if self.accept("NOT"):
            self.nested(token)
            node = Not(self.not_expr())
            self.depth -= 1
            return node
        return self.primary()

    def primary(self) -> Condition:
        if self.token.kind == "punct" and self.token.text == "(":
            self.nested(self.advance())
            node = self.or_expr()
            self.expect_punct(")", "')' to close the parenthesis", "闭合括号的 ')'")
            self.depth -= 1
            return node
        if self.accept("IN_SEGMENT"):
            self.expect_punct("(", "'(' after IN_SEGMENT", " IN_SEGMENT 后的 '('")
            if self.token.kind != "string":
                raise self.fail("a segment key in quotes, such as 'churned'",
                                "用引号括起的分群键，例如 'churned'")
            key = _unquote(self.advance().text)
            self.expect_punct(")", "')' after the segment key", "分群键后的 ')'")
            return InSegment(key)
        return self.predicate()

    def predicate(self) -> Condition:
        left = self.operand()
        token = self.token
        if token.kind == "op":
            self.advance()
            op = "!=" if token.text == "<>" else token.text
            return Compare(op, left, self.operand())
        negated = self.accept("NOT")
        if self.accept("IN"):
            self.expect_punct("(", "'(' to start the list after IN", " IN 后开始列表的 '('")
            values = [self.literal()]
            while self.token.kind == "punct" and self.token.text == ",":
                self.advance()
                values.append(self.literal())
            self.expect_punct(")", "',' or ')' in the IN list", " IN 列表中的 ',' 或 ')'")
            return InList(left, tuple(values), negated)
        if self.accept("BETWEEN"):
            low = self.operand()
            if not self.accept("AND"):
                raise self.fail("AND between the two bounds of BETWEEN",
                                "BETWEEN 两个边界之间的 AND")
            return Between(left, low, self.operand(), negated)
        if self.accept("CONTAINS"):
            return Contains(left, self.operand(), negated)
        if negated:
            raise self.fail("IN, BETWEEN or CONTAINS after NOT",
                            " NOT 后的 IN、BETWEEN 或 CONTAINS")
        if self.accept("IS"):
            is_not = self.accept("NOT")
            if not self.accept("NULL"):
                raise self.fail("NULL after IS" + (" NOT" if is_not else ""),
                                f" IS{' NOT' if is_not else ''} 后的 NULL")
            return IsNull(left, is_not)
        raise self.fail("a comparison (=, !=, >, >=, <, <=, IN, NOT IN, BETWEEN, IS NULL, "
                        f"CONTAINS) after {_describe(left)}",
                        f" {_describe(left)} 后的比较（=、!=、>、>=、<、<=、IN、NOT IN、BETWEEN、"
                        "IS NULL、CONTAINS）")

    def literal(self) -> Literal:
        token = self.token
        if token.kind == "string":
            self.advance()
            return Literal(_unquote(token.text))
        if token.kind == "number":
            self.advance()
            return self.made(token, lambda: Literal(_number(token.text)))
        raise self.fail("a number or a 'string'", "数字或 '字符串'")

    def operand(self) -> Operand:
        token = self.token
        if token.kind in ("string", "number"):
            return self.literal()
        if token.kind == "duration":
            if not token.text.startswith("-"):
                raise SegmentSyntaxError(f"a relative date needs a minus sign: -{token.text} "
                                         "means that long before as_of", self.text,
                                         token.offset,
                                         zh=f"相对日期需要负号：-{token.text} 表示计算时刻之前"
                                         "这么久")
            self.advance()
            return self.made(token, lambda: RelativeDate(int(token.text[1:-1]), token.text[-1]))
        if self.accept("TODAY"):
            return RelativeDate(0, "d", today=True)
        if token.kind == "keyword" and token.upper in AGGREGATES:
            return self.aggregate()
        if token.kind == "keyword" and token.upper in FUNCTIONS:
            return self.call()
        if token.kind == "ident":
            return Field(self.path())
        raise self.fail("a field, a number, a 'string', a relative date such as -30d, or an "
                        "aggregate such as COUNT(orders)",
                        "字段、数字、'字符串'、相对日期（如 -30d）或聚合（如 COUNT(orders)）")

    def path(self) -> tuple[str, ...]:
        parts = [self.advance().text]
        while self.token.kind == "punct" and self.token.text == ".":
            self.advance()
            if self.token.kind not in ("ident", "keyword"):
                raise self.fail("a name after '.'", " '.' 后的名称")
            parts.append(self.advance().text)
        return tuple(parts)

    def call(self) -> Call:
        function = self.advance().upper
        self.expect_punct("(", f"'(' after {function}", f" {function} 后的 '('")
        argument: Field | Literal
        if function == "DAYS_UNTIL_HOLIDAY":
            if self.token.kind != "string":
                raise self.fail("a holiday's name in quotes, such as '春节' or 'National Day'",
                                "用引号括起的节日名称，例如 '春节' 或 'National Day'")
            argument = self.literal()
        elif self.token.kind == "ident":
            argument = Field(self.path())
        else:
            raise self.fail(f"a date or time field, such as {function}(birth_date)",
                            f"日期或时间字段，例如 {function}(birth_date)")
        self.expect_punct(")", f"')' to close {function}(", f"闭合 {function}( 的 ')'")
        return Call(function, argument)

    def aggregate(self) -> Aggregate:
        function = self.advance().upper
        self.expect_punct("(", f"'(' after {function}", f" {function} 后的 '('")
        if self.token.kind != "ident":
            raise self.fail("a source: orders, events, tickets or feedback",
                            "数据源：orders、events、tickets 或 feedback")
        start = self.token
        path = self.path()
        if len(path) > 2:
            raise SegmentSyntaxError(f"expected source or source.column, found "
                                     f"{'.'.join(path)!r}", self.text, start.offset,
                                     zh=f"这里应为 数据源 或 数据源.列，实际是 {'.'.join(path)!r}")
        source = path[0].lower()
        column = path[1] if len(path) == 2 else None
        where = None
        if self.is_keyword("WHERE"):
            self.nested(self.advance())
            where = self.or_expr()
            self.depth -= 1
        window = None
        if self.token.kind == "punct" and self.token.text == ",":
            self.advance()
            if not self.accept("LAST"):
                raise self.fail("LAST after ',' (as in LAST 30d)", " ',' 后的 LAST（如 LAST 30d）")
            if self.token.kind != "duration" or self.token.text.startswith("-"):
                raise self.fail("a window such as 30d, 4w, 6m or 1y after LAST",
                                " LAST 后的时间窗口，如 30d、4w、6m 或 1y")
            token = self.advance()
            window = self.made(token, lambda: Window(int(token.text[:-1]), token.text[-1]))
        self.expect_punct(")", f"',' LAST …, WHERE … or ')' to close {function}(",
                          f" ',' LAST …、WHERE … 或闭合 {function}( 的 ')'")
        return Aggregate(function, source, column, where, window)


def _unquote(text: str) -> str:
    return text[1:-1].replace("''", "'")


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def _describe(node: Operand) -> str:
    if isinstance(node, Field):
        return node.name
    if isinstance(node, Aggregate | Call):
        return f"{node.function}(…)"
    return "the value"


@lru_cache(maxsize=1024)
def parse(text: str) -> Condition:
    """Parse a rule's text form; raises ``SegmentSyntaxError`` pointing at the problem.

    Kept per text (the trees are immutable): the real-time worker reads every applied
    definition several times a second."""
    return _Parser(text).parse()


__all__ = ["SegmentSyntaxError", "parse", "to_text", "tokenize"]
