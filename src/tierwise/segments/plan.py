"""Plan before apply: what changing segment definitions would do, before anything is saved."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from tierwise.compile.segments import compile_rule
from tierwise.definitions.segment_ast import Condition, to_text
from tierwise.definitions.segment_fields import validate
from tierwise.definitions.vocabulary import Vocabulary
from tierwise.errors import TierwiseError
from tierwise.segments import catalog as defs
from tierwise.segments.evaluate import Evaluation
from tierwise.segments.literals import unseen
from tierwise.segments.membership import resolver
from tierwise.segments.vocabulary import vocabulary
from tierwise.store import memberships
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
    #: Free-text literals no row carries (``segments.literals.unseen``).
    warnings: list[str] = field(default_factory=list)


def plan(ws: Workspace, as_of: datetime) -> list[PlanItem]:
    """Compare ``segments/*.yaml`` with the applied versions and evaluate the changes."""
    words = vocabulary(ws)
    files = files_in_codes(ws, words)
    applied = defs.applied(ws)
    merged = {k: a.definition for k, a in applied.items()}
    merged.update(files)
    defs.dependency_order(merged)  # unknown references and cycles fail here
    resolve = resolver(merged)
    items = []
    with Evaluation(ws, as_of) as evaluation:  # one engine session for every definition
        for key, definition in files.items():
            items.append(plan_item(ws, key, definition, applied.get(key), as_of, resolve,
                                    evaluation, words))
    return items


def plan_item(ws: Workspace, key: str, definition: defs.SegmentDefinition,
               before: defs.Applied | None, as_of: datetime,
               resolve: Callable[[str], Condition | None], evaluation: Evaluation,
               words: Vocabulary) -> PlanItem:
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
        item.warnings = unseen(ws, tree, as_of, words.lang, evaluation)
        compiled = compile_rule(tree, ws.engine.name, as_of, ws.config.zone, resolve, key=key,
                                vocabulary=words)
        after = set(evaluation.run(compiled)["customer_id"].to_pylist())
    except TierwiseError as exc:
        item.error = str(exc)
        return item
    with ws.control.read() as conn:
        now = memberships.current(conn, key)
    item.entering = sorted(after - now)
    item.leaving = sorted(now - after)
    item.members_after = len(after)
    return item


def in_codes(definition: defs.SegmentDefinition, words: Vocabulary
             ) -> defs.SegmentDefinition:
    """``definition`` checked for unknown fields and with its rule in code form: a label of
    a tier, RFM segment, stage, … names its code, a literal that names no value is an
    error (``words``: the workspace's vocabulary). What is planned and saved is this form."""
    tree = definition.condition()
    if tree is None:
        return definition
    validate(tree)
    text = to_text(words.normalize(tree))
    return definition.model_copy(update={"rule": text, "rule_json": None})


def files_in_codes(ws: Workspace, words: Vocabulary) -> dict[str, defs.SegmentDefinition]:
    """``segments/*.yaml`` in code form; a file whose rule names no valid value fails
    with its path."""
    found = {}
    for key, definition in defs.load_files(ws).items():
        try:
            found[key] = in_codes(definition, words)
        except TierwiseError as exc:
            raise TierwiseError.about(str(defs.folder(ws) / (key + ".yaml")), exc) from None
    return found


def definitions_with(ws: Workspace, definition: defs.SegmentDefinition
                     ) -> dict[str, defs.SegmentDefinition]:
    """The applied definitions with ``definition`` in place of its key's: checked for
    unknown fields, unknown references and IN_SEGMENT cycles (its values are checked
    where it is put in code form or compiled)."""
    tree = definition.condition()
    if tree is not None:
        validate(tree)
    merged = {k: a.definition for k, a in defs.applied(ws).items()}
    merged[definition.key] = definition
    defs.dependency_order(merged)
    return merged


def plan_definition(ws: Workspace, definition: defs.SegmentDefinition,
                    as_of: datetime) -> PlanItem:
    """The plan of one definition given as it is (by the API, not from its file); give it
    in code form (``in_codes``) so that the plan shows the rule that would be saved."""
    merged = definitions_with(ws, definition)
    with Evaluation(ws, as_of) as evaluation:
        return plan_item(ws, definition.key, definition, defs.applied(ws).get(definition.key),
                         as_of, resolver(merged), evaluation, vocabulary(ws))


def apply_definition(ws: Workspace, definition: defs.SegmentDefinition,
                     note: str | None = None) -> int:
    """Save ``definition`` as its segment's next version and keep ``segments/<key>.yaml``
    in step with it; returns the version. Saved in code form, whatever the caller did."""
    definition = in_codes(definition, vocabulary(ws))
    version = defs.save(ws, definition, note)
    defs.write_file(ws, definition)
    return version


def apply(ws: Workspace, items: list[PlanItem], note: str | None = None) -> dict[str, int]:
    """Save the new and changed definitions of a plan; returns key → new version."""
    files = files_in_codes(ws, vocabulary(ws))
    return {item.key: defs.save(ws, files[item.key], note) for item in items
            if item.change != "unchanged"}
