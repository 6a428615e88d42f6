"""Sales opportunities (商机): the stages a workspace's pipeline goes through, and how a
stage is named.

The stage list is a setting (``opportunity_stages``, in pipeline order, with ``won_stage``
and ``lost_stage`` among them); the default is the common Chinese B2B pipeline 线索 →
商机 → 方案 → 谈判 → 赢单 / 输单. A stage is stored as written in the list; imports, rules
and triggers also take its English label (for the default list) and ignore case and
spaces, so ``'won'``, ``'Won'`` and ``'赢单'`` name the same stage. A value that names no
stage is an error listing the stages, never a row or rule that matches nothing.

>>> values = stage_values(DEFAULT_STAGES)
>>> values.code("Negotiation"), values.code("赢 单"), values.code("closed")
('谈判', '赢单', None)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tierwise.definitions.vocabulary import Enumeration

DEFAULT_STAGES = ("线索", "商机", "方案", "谈判", "赢单", "输单")
DEFAULT_WON = "赢单"
DEFAULT_LOST = "输单"
#: English labels of the default stages (a workspace's own stages are their own labels).
_DEFAULT_LABELS = {"线索": "Lead", "商机": "Opportunity", "方案": "Proposal",
                   "谈判": "Negotiation", "赢单": "Won", "输单": "Lost"}
_DEFAULT_SPELLINGS = {"closed won": "赢单", "closed lost": "输单", "qualified": "商机",
                      "negotiating": "谈判", "solution": "方案", "quote": "方案",
                      "报价": "方案", "成交": "赢单", "丢单": "输单", "失败": "输单"}
#: The rule fields whose values are stages.
STAGE_FIELDS = ("opportunities.stage", "opportunity_stages.stage",
                "opportunity_stages.from_stage")


def stage_values(stages: Sequence[str], name: str = "opportunities.stage") -> Enumeration:
    """The stages as an enumeration: codes in pipeline order, English labels and the common
    other spellings for the default stages."""
    labels = {s: {"zh-CN": s, "en": _DEFAULT_LABELS[s]} for s in stages
              if s in _DEFAULT_LABELS}
    spellings = {k: v for k, v in _DEFAULT_SPELLINGS.items() if v in stages}
    return Enumeration.of(name, labels, tuple(stages), spellings)


def stage_enumerations(stages: Sequence[str]) -> tuple[Enumeration, ...]:
    """One enumeration per rule field that holds a stage."""
    first = stage_values(stages, STAGE_FIELDS[0])
    return (first, *(replace(first, name=name) for name in STAGE_FIELDS[1:]))


def stage_problem(stages: object, won: object, lost: object) -> tuple[str, str] | None:
    """What is wrong with the stage settings (English, Chinese), or None."""
    if not isinstance(stages, list) or len(stages) < 2 or not all(
            isinstance(s, str) and s.strip() and len(s) <= 64 for s in stages):
        return ("opportunity_stages: expected a list of at least two stage names such as "
                "[\"线索\", \"商机\", \"赢单\", \"输单\"]",
                "opportunity_stages：应为至少两个阶段名称的列表，例如 [\"线索\", \"商机\", "
                "\"赢单\", \"输单\"]")
    values = stage_values(stages)
    if len({values.code(s) for s in stages}) != len(stages):
        return (f"opportunity_stages: {stages!r} names a stage twice (case and spaces do not "
                "count)", f"opportunity_stages：{stages!r} 有重复的阶段（不区分大小写和空格）")
    for setting, value in (("won_stage", won), ("lost_stage", lost)):
        if not isinstance(value, str) or value not in stages:
            return (f"{setting} = {value!r}: expected one of opportunity_stages "
                    f"({', '.join(stages)})",
                    f"{setting} = {value!r}：应为 opportunity_stages 之一（{'、'.join(stages)}）")
    if won == lost:
        return (f"won_stage and lost_stage are both {won!r}: expected two different stages",
                f"won_stage 与 lost_stage 都是 {won!r}：应为两个不同的阶段")
    return None


__all__ = ["DEFAULT_LOST", "DEFAULT_STAGES", "DEFAULT_WON", "STAGE_FIELDS", "stage_enumerations",
           "stage_problem", "stage_values"]
