"""Rules in the user's words: the workspace's vocabulary of enumerated values, and what a
rule's free-text literals find in the data.

Enumerated fields (tier, RFM segment, lifecycle, churn risk, gender, order status) take a
code or a label in either language and are compiled with the code; a literal that names
no value is the rule's error (``definitions.vocabulary``). Free-text fields (city,
industry, attributes, event types, …) take any text, so a literal no row carries is a
warning instead: ``no customer has city = '上海市'; '上海' has 1,204``.

The vocabulary itself comes from ``segments.vocabulary``.
"""

from __future__ import annotations

import difflib
from collections import Counter, defaultdict
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime

from tierwise.compile.dialects import render
from tierwise.compile.segments import compile_rule, compile_values
from tierwise.definitions.segment_ast import Condition, Field
from tierwise.definitions.segment_fields import customer_field, source_field, validate
from tierwise.definitions.segment_parser import parse
from tierwise.definitions.vocabulary import literals
from tierwise.segments.evaluate import Evaluation
from tierwise.segments.vocabulary import vocabulary
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace

#: Distinct values read for a "did you mean" (the most frequent ones).
SUGGEST_FROM = 5_000


def _text(lang: str, key: str, **values: object) -> str:
    zh = lang == "zh-CN"
    texts = {
        "none": ("没有{who}满足 {field} = '{literal}'", "no {who} has {field} = '{literal}'"),
        "close": ("；{values}", "; {values}"),
        "has": ("'{value}' 有 {count:,} 个", "'{value}' has {count:,}"),
    }
    zh_text, en_text = texts[key]
    return (zh_text if zh else en_text).format(**values)


_WHO = {None: ("客户", "customer"), "orders": ("订单", "order"), "events": ("事件", "event"),
        "tickets": ("工单", "ticket"), "feedback": ("反馈", "feedback"),
        "referrals": ("推荐记录", "referral"), "opportunities": ("商机", "opportunity"),
        "opportunity_stages": ("商机阶段变更", "stage change"),
        "contacts": ("联系人", "contact"), "account_orders": ("订单", "order"),
        "account_events": ("事件", "event")}


def unseen(ws: Workspace, rule: Condition, as_of: datetime, lang: str | None = None,
           evaluation: Evaluation | None = None) -> list[str]:
    """Warnings for the free-text literals of ``rule`` that no row carries, each with the
    closest values that do (personal fields are not looked up: a warning must not tell
    which names or phone numbers exist)."""
    words = vocabulary(ws, lang)
    wanted: dict[tuple[str | None, Field], list[str]] = defaultdict(list)
    for source, field, text in literals(rule):
        name = field.name if source is None else f"{source}.{field.path[-1]}"
        if words.of(name) is not None or ws.personal_data.field_is_personal(field.path,
                                                                            source):
            continue
        info = customer_field(field) if source is None else source_field(source, field)
        if info.kind not in ("string", "json") or (info.kind == "json" and source):
            continue  # event properties and other JSON of sources are not looked up
        if text not in wanted[source, field]:
            wanted[source, field].append(text)
    if not wanted:
        return []
    warnings = []
    # the caller's session when it has one open for as_of (a plan), else one of our own
    with nullcontext(evaluation) if evaluation is not None else Evaluation(ws, as_of) as ev:
        for (source, field), texts in wanted.items():
            counts = _counts(ws, ev, source, field, as_of)
            for text in texts:
                if counts.get(text):
                    continue
                zh = words.lang == "zh-CN"
                who = _WHO.get(source, (source, source))[0 if zh else 1]
                shown = field.name if source is None else f"{source}.{field.path[-1]}"
                message = _text(words.lang, "none", who=who, field=shown, literal=text)
                close = difflib.get_close_matches(text, list(counts), n=3, cutoff=0.4)
                if close:
                    message += _text(words.lang, "close", values=", ".join(
                        _text(words.lang, "has", value=v, count=counts[v]) for v in close))
                warnings.append(message)
    return warnings


def _counts(ws: Workspace, evaluation: Evaluation, source: str | None, field: Field,
            as_of: datetime) -> Counter[str]:
    """How many customers (or rows of ``source``) carry each value of ``field``: the most
    frequent ``SUGGEST_FROM``."""
    if source is None:
        compiled = compile_values([field], ws.engine.name, as_of, ws.config.zone)
        column = evaluation.run(compiled).column("v0")
        found = Counter(str(v) for v in column.to_pylist() if v is not None)
    else:
        name = field.path[-1]
        evaluation.register_sources({source})  # some are registered on demand
        rows = evaluation.session.query(render(
            f'SELECT "{name}" AS value, count(*) AS n FROM "{source}" '
            f'WHERE "{name}" IS NOT NULL GROUP BY "{name}"', ws.engine.name))
        found = Counter(dict(zip((str(v) for v in rows.column("value").to_pylist()),
                                 rows.column("n").to_pylist(), strict=True)))
    return Counter(dict(found.most_common(SUGGEST_FROM)))


@dataclass
class Checked:
    """A rule as it will be compiled (literals of enumerated fields as codes) and the
    warnings about its free-text literals."""

    rule: Condition
    warnings: list[str]


def check(ws: Workspace, rule: str | Condition, as_of: datetime | None = None,
          look_up: bool = True, lang: str | None = None) -> Checked:
    """Parse (if text), validate and normalize ``rule``; with ``look_up``, also look its
    free-text literals up in the data. What check, preview, plan and save all do first."""
    tree = parse(rule) if isinstance(rule, str) else rule
    validate(tree)
    words = vocabulary(ws, lang)
    tree = words.normalize(tree)
    when = as_of or utcnow()
    # compiled once, so that kinds that cannot meet (a time compared with text, a number
    # with a word) are errors here too, not only when the rule runs; the segments a rule
    # names are read as member lists (their own rules are checked when they are saved)
    compile_rule(tree, ws.engine.name, when, ws.config.zone, lambda _key: None,
                 vocabulary=words)
    warnings = unseen(ws, tree, when, lang) if look_up else []
    return Checked(tree, warnings)
