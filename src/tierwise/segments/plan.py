"""Plan before apply: what changing segment definitions would do, before anything is saved."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from tierwise.compile.segments import compile_rule
from tierwise.definitions.segment_ast import Condition
from tierwise.errors import TierwiseError
from tierwise.segments import definitions as defs
from tierwise.segments.evaluate import Evaluation
from tierwise.segments.membership import current_members, resolver
from tierwise.workspace import Workspace

SAMPLE = 10


@dataclass
class PlanItem:
    key: str
    change: str  # new, changed, unchanged
    version: int | None  # the applied version, if any
    old_rule: str | None
    new_rule: str | None
    entering: list[str] = field(default_factory=list)
    leaving: list[str] = field(default_factory=list)
    members_after: int | None = None
    #: Why the new rule could not be evaluated (it can still be applied).
    error: str | None = None


def plan(ws: Workspace, as_of: datetime) -> list[PlanItem]:
    """Compare ``segments/*.yaml`` with the applied versions and evaluate the changes."""
    files = defs.load_files(ws)
    applied = defs.applied(ws)
    merged = {k: a.definition for k, a in applied.items()}
    merged.update(files)
    defs.dependency_order(merged)  # unknown references and cycles fail here
    resolve = resolver(merged)
    items = []
    with Evaluation(ws, as_of) as evaluation:  # one engine session for every definition
        for key, definition in files.items():
            items.append(plan_item(ws, key, definition, applied.get(key), as_of, resolve,
                                    evaluation))
    return items


def plan_item(ws: Workspace, key: str, definition: defs.SegmentDefinition,
               before: defs.Applied | None, as_of: datetime,
               resolve: Callable[[str], Condition | None], evaluation: Evaluation
               ) -> PlanItem:
    new_spec = definition.canonical()
    if before is not None and before.definition.canonical() == new_spec:
        return PlanItem(key, "unchanged", before.version, new_spec.get("rule"),
                        new_spec.get("rule"))
    item = PlanItem(key, "new" if before is None else "changed",
                    before.version if before else None,
                    before.definition.canonical().get("rule") if before else None,
                    new_spec.get("rule"))
    tree = definition.condition()
    if tree is None or definition.status != "active":
        return item
    try:
        compiled = compile_rule(tree, ws.engine.name, as_of, ws.config.zone, resolve, key=key)
        after = set(evaluation.run(compiled)["customer_id"].to_pylist())
    except TierwiseError as exc:
        item.error = str(exc)
        return item
    with ws.control.read() as conn:
        now = current_members(conn, key)
    item.entering = sorted(after - now)
    item.leaving = sorted(now - after)
    item.members_after = len(after)
    return item


def apply(ws: Workspace, items: list[PlanItem], note: str | None = None) -> dict[str, int]:
    """Save the new and changed definitions of a plan; returns key → new version."""
    files = defs.load_files(ws)
    return {item.key: defs.save(ws, files[item.key], note) for item in items
            if item.change != "unchanged"}
