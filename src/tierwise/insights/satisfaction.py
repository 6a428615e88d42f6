"""Satisfaction: NPS and CSAT from the feedback customers gave, overall and by a dimension.

The per-customer values are the segment language's own fields, computed by its compiler at
``as_of`` (so that a figure here and a rule such as ``nps_class = 'promoter'`` count the same
customers): ``nps`` — the customer's latest NPS score (0–10), ``nps_class`` — promoter
(9–10), passive (7–8) or detractor (0–6), and ``csat`` — the mean of their CSAT ratings
(1–5). From them:

* **NPS** = 100 × (promoters − detractors) / customers with a score, from −100 to 100
  (Reichheld's Net Promoter Score, one answer per customer: their latest);
* **CSAT** = the mean of the customers' mean ratings, and the share of rated customers
  whose mean is 4 or more ("satisfied", the usual top-two-box reading of a 1–5 scale).

``by`` groups the same figures by a column of the latest snapshot (tier, lifecycle, RFM
segment, churn risk) or by a customer field (city, industry, owner, …).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tierwise.compile.segments import compile_values
from tierwise.definitions.segment_ast import Field, Operand
from tierwise.definitions.segment_fields import CUSTOMER_FIELDS
from tierwise.definitions.vocabulary import VALUE_COLUMNS
from tierwise.errors import TierwiseError
from tierwise.segments.evaluate import Evaluation
from tierwise.store import customers as customer_store
from tierwise.workspace import Workspace

#: The customers' own fields satisfaction is broken down by (none of them personal data).
CUSTOMER_DIMENSIONS = customer_store.FILTER_COLUMNS
SATISFIED = 4.0


def dimensions() -> list[str]:
    return [*VALUE_COLUMNS, *CUSTOMER_DIMENSIONS]


def default_as_of(ws: Workspace) -> datetime:
    """The latest snapshot's instant (the dashboard's figures are of it), else now."""
    from tierwise.models import compute
    from tierwise.store.control import utcnow

    found = compute.list_snapshots(ws)
    return max((s["as_of"] for s in found), default=None) or utcnow()


def labelled(ws: Workspace, found: dict[str, Any], lang: str) -> dict[str, Any]:
    """``found`` with each group's value in words (``label``) beside its code."""
    from tierwise.segments.vocabulary import vocabulary

    by = found.get("by")
    if by is None:
        return found
    words = vocabulary(ws, lang)
    groups = [{**g, "label": g["value"] if g["value"] is None
               else words.column_label(by, g["value"], lang)} for g in found["groups"]]
    return {**found, "groups": groups}


def satisfaction(ws: Workspace, as_of: datetime, by: str | None = None) -> dict[str, Any]:
    """NPS and CSAT at ``as_of`` for everyone, and per value of ``by`` when given."""
    if by is not None and by not in VALUE_COLUMNS and by not in CUSTOMER_DIMENSIONS:
        raise TierwiseError(f"cannot break satisfaction down by {by!r}; expected one of "
                            f"{', '.join(dimensions())}",
                            zh=f"不能按 {by!r} 细分满意度：可用的维度有 {', '.join(dimensions())}")
    operands: list[Operand] = [Field(("nps",)), Field(("nps_class",)), Field(("csat",))]
    if by is not None:
        name = VALUE_COLUMNS.get(by, by)
        assert by in VALUE_COLUMNS or name in CUSTOMER_FIELDS
        operands.append(Field(tuple(name.split("."))))
    compiled = compile_values(operands, ws.engine.name, as_of, ws.config.zone)
    with Evaluation(ws, as_of) as evaluation:
        table: pa.Table = evaluation.run(compiled)
    answered = table.filter(pc.or_(pc.is_valid(table["v0"]), pc.is_valid(table["v2"])))
    rows = answered.to_pylist()
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row.get("v3") if by is not None else None].append(row)
    found = {"as_of": as_of, "customers": table.num_rows, **_figures(rows)}
    if by is not None:
        found["by"] = by
        found["groups"] = sorted(
            ({"value": value, **_figures(members)} for value, members in groups.items()),
            key=lambda g: (-g["respondents"], str(g["value"])))
    return found


def _figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    classes = [r["v1"] for r in rows if r["v1"] is not None]
    respondents = len(classes)
    promoters = classes.count("promoter")
    detractors = classes.count("detractor")
    ratings = [float(r["v2"]) for r in rows if r["v2"] is not None]
    return {
        "respondents": respondents, "promoters": promoters,
        "passives": classes.count("passive"), "detractors": detractors,
        "nps": round(100.0 * (promoters - detractors) / respondents, 1) if respondents
        else None,
        "rated": len(ratings),
        "csat": round(sum(ratings) / len(ratings), 2) if ratings else None,
        "satisfied_share": round(sum(r >= SATISFIED for r in ratings) / len(ratings), 4)
        if ratings else None,
    }


__all__ = ["SATISFIED", "default_as_of", "dimensions", "labelled", "satisfaction"]
