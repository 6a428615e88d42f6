"""Segment definitions: YAML files in ``segments/`` (reviewable in git), applied versions in
the control store.

``segments/<key>.yaml``::

    key: high_value_active
    names: {zh-CN: 高价值活跃客户, en: High-value active}
    description: Two or more orders in 30 days, average order above 5,000.
    rule: COUNT(orders, LAST 30d) >= 2 AND AVG(orders.amount, LAST 30d) > 5000
    owner: crm-team
    tags: [value]
    status: active          # or paused
    kind: dynamic           # dynamic | static | snapshot

The rule may also be given in its JSON form (``rule_json``). ``plan`` compares the files
with the applied versions; ``apply`` stores changed ones as new versions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tierwise.definitions import invalid
from tierwise.definitions.segment_ast import Condition, from_json, to_text
from tierwise.definitions.segment_fields import RuleError, segment_references, validate
from tierwise.definitions.segment_parser import parse
from tierwise.errors import Invalid, TierwiseError
from tierwise.store import versions
from tierwise.workspace import Workspace

KIND = "segment"
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class SegmentDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    names: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    rule: str | None = None
    rule_json: dict[str, Any] | None = None
    owner: str | None = None
    tags: list[str] = Field(default_factory=list)
    status: Literal["active", "paused"] = "active"
    kind: Literal["dynamic", "static", "snapshot"] = "dynamic"

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not _KEY.match(value):
            raise Invalid("a key is lower-case letters, digits and _, starting with a "
                          "letter (at most 64)",
                          zh="key 由小写字母、数字和 _ 组成，以字母开头（最多 64 个字符）")
        return value

    def name(self, lang: str) -> str:
        """The name shown in ``lang``: the English one, then the key, when it has none."""
        return self.names.get(lang) or self.names.get("en") or self.key

    def condition(self) -> Condition | None:
        if self.kind != "dynamic":
            return None
        if self.rule is not None:
            return parse(self.rule)
        if self.rule_json is not None:
            return from_json(self.rule_json)
        raise RuleError(f"segment {self.key}: a dynamic segment needs a rule",
                        zh=f"分群 {self.key}：动态分群需要一条规则")

    def canonical(self) -> dict[str, Any]:
        """The stored form: the rule in canonical text, no JSON duplicate."""
        data = self.model_dump(exclude_none=True)
        tree = self.condition()
        data.pop("rule_json", None)
        if tree is not None:
            data["rule"] = to_text(tree)
        return data


def load_file(path: Path) -> SegmentDefinition:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        definition = SegmentDefinition.model_validate(data)
    except yaml.YAMLError as exc:
        raise TierwiseError(f"{path}: not valid YAML: {exc}",
                            zh=f"{path}：不是有效的 YAML：{exc}") from None
    except ValidationError as exc:
        raise TierwiseError.about(str(path), invalid.problems(exc)) from None
    if definition.key != path.stem:
        raise TierwiseError(f"{path}: the key {definition.key!r} must match the file name",
                            zh=f"{path}：key {definition.key!r} 必须与文件名一致")
    try:
        tree = definition.condition()
        if tree is not None:
            validate(tree)
    except TierwiseError as exc:
        raise TierwiseError.about(str(path), exc) from None
    return definition


def folder(ws: Workspace) -> Path:
    return ws.root / "segments"


def load_files(ws: Workspace) -> dict[str, SegmentDefinition]:
    found = {}
    for path in sorted(folder(ws).glob("*.yaml")):
        definition = load_file(path)
        found[definition.key] = definition
    return found


def write_file(ws: Workspace, definition: SegmentDefinition) -> Path:
    folder(ws).mkdir(exist_ok=True)
    path = folder(ws) / f"{definition.key}.yaml"
    path.write_text(yaml.safe_dump(definition.canonical(), allow_unicode=True,
                                   sort_keys=False, width=100), encoding="utf-8")
    return path


@dataclass
class Applied:
    definition: SegmentDefinition
    version: int


def applied(ws: Workspace) -> dict[str, Applied]:
    """The latest applied version of every segment."""
    with ws.control.read() as conn:
        latest = versions.latest_specs(conn, KIND)
    return {key: Applied(SegmentDefinition.model_validate(json.loads(spec)), version)
            for key, version, spec in latest}


def known(ws: Workspace, key: str) -> str:
    """``key`` when a segment of that key is applied, else an error naming the known ones:
    an unknown key must not read as an empty segment."""
    found = sorted(applied(ws))
    if key not in found:
        raise TierwiseError(f"no segment {key!r}; the segments are {', '.join(found) or 'none'}",
                            zh=f"没有分群 {key!r}；已有的分群：{'、'.join(found) or '无'}")
    return key


def names_in(ws: Workspace, lang: str) -> dict[str, str]:
    """Every applied segment's name in ``lang``, by key."""
    return {key: a.definition.name(lang) for key, a in applied(ws).items()}


def save(ws: Workspace, definition: SegmentDefinition, note: str | None = None) -> int:
    with ws.control.write() as conn:
        return versions.save(conn, KIND, definition.key, definition.canonical(), note)


def dependency_order(definitions: dict[str, SegmentDefinition]) -> list[str]:
    """Keys so that every segment comes after the segments it references.

    A reference to an unknown segment or a cycle is an error naming it.
    """
    refs: dict[str, set[str]] = {}
    for key, definition in definitions.items():
        tree = definition.condition()
        refs[key] = segment_references(tree) if tree is not None else set()
        missing = refs[key] - set(definitions)
        if missing:
            raise RuleError(f"segment {key} references unknown segment(s) "
                            f"{', '.join(sorted(missing))}",
                            zh=f"分群 {key} 引用了不存在的分群 {', '.join(sorted(missing))}")
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(key: str, path: list[str]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            cycle = path[path.index(key):] + [key]
            raise RuleError(f"IN_SEGMENT forms a cycle: {' → '.join(cycle)}",
                            zh=f"IN_SEGMENT 形成了循环引用：{' → '.join(cycle)}")
        state[key] = 1
        for ref in sorted(refs[key]):
            visit(ref, [*path, key])
        state[key] = 2
        order.append(key)

    for key in sorted(definitions):
        visit(key, [])
    return order
