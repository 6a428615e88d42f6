"""Why a customer is in or out of a segment: the value and outcome of every condition."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tierwise.compile.segments import compile_rule, compile_values
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
    Not,
    Operand,
    Or,
    to_text,
)
from tierwise.errors import NotFoundError
from tierwise.segments.evaluate import Evaluation
from tierwise.segments.vocabulary import vocabulary
from tierwise.workspace import Workspace


@dataclass
class Step:
    depth: int
    text: str
    result: bool
    values: dict[str, Any]


def _leaf_operands(node: Condition) -> list[Operand]:
    candidates: list[Operand] = []
    if isinstance(node, Compare):
        candidates = [node.left, node.right]
    elif isinstance(node, InList | IsNull | Between | Contains):
        candidates = [node.operand]
    return [o for o in candidates if isinstance(o, Field | Aggregate | Call)]


def explain(ws: Workspace, rule: Condition, customer_id: str, as_of: datetime,
            resolve: Callable[[str], Condition | None] | None = None) -> list[Step]:
    """Every condition of ``rule`` for one customer, outermost first."""
    steps: list[Step] = []
    dialect, zone = ws.engine.name, ws.config.zone
    words = vocabulary(ws)

    def holds(node: Condition) -> bool:
        compiled = compile_rule(node, dialect, as_of, zone, resolve, vocabulary=words)
        members = evaluation.run(compiled)["customer_id"]
        return bool(pc.any(pc.equal(members, customer_id)).as_py())

    def value_of(operands: list[Operand]) -> dict[str, Any]:
        if not operands:
            return {}
        compiled = compile_values(operands, dialect, as_of, zone)
        table: pa.Table = evaluation.run(compiled)
        row = table.filter(pc.equal(table["customer_id"], customer_id)).to_pylist()
        from tierwise.definitions.segment_ast import operand_text

        return {operand_text(o): row[0][f"v{i}"] if row else None
                for i, o in enumerate(operands)}

    def walk(node: Condition, depth: int) -> None:
        steps.append(Step(depth, to_text(node), holds(node),
                          value_of(_leaf_operands(node))))
        if isinstance(node, And | Or):
            for child in node.operands:
                walk(child, depth + 1)
        elif isinstance(node, Not):
            walk(node.operand, depth + 1)

    from tierwise.store import customers as customer_store

    with ws.control.read() as conn:
        if customer_store.get(conn, customer_id) is None:
            raise NotFoundError(f"no customer with id {customer_id!r}",
                                zh=f"没有编号为 {customer_id!r} 的客户")
    # One engine session for every step: the data is read and registered once.
    with Evaluation(ws, as_of) as evaluation:
        walk(rule, 0)
    return steps
