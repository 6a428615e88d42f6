"""Customers side by side by a dimension: the same headline figures per group.

``by_dimension`` groups the customers of a snapshot by one of their computed values (tier,
lifecycle stage, RFM segment, churn risk) or one of their own fields (city, province,
country, industry, company size, channel, owner, gender, tag), after narrowing them by any
of the same (``values`` on computed ones, ``fields`` on their own; the customer list takes
the same filters, so each group links to exactly its customers). Per group it gives
``summaries.kpis`` — the figures of the overview — and the group's shares of customers and
revenue. The CLI, the API and the dashboard all call this one function.

A customer with several tags is in each of their tags' groups (tag shares can add up to
more than 1); customers without a value are one group (value ``None``).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tierwise.errors import TierwiseError
from tierwise.models.compute import Snapshot
from tierwise.models.summaries import kpis, kpis_by
from tierwise.segments.vocabulary import vocabulary
from tierwise.store import customer_mirror
from tierwise.store import customers as customer_store
from tierwise.workspace import Workspace

#: Computed values (snapshot columns) a breakdown groups or filters by.
VALUE_DIMENSIONS = ("tier", "lifecycle", "rfm_segment", "churn_risk")
#: The customers' own fields a breakdown groups or filters by.
FIELD_DIMENSIONS = (*customer_store.FILTER_COLUMNS, "tag")
DIMENSIONS = (*VALUE_DIMENSIONS, *FIELD_DIMENSIONS)
#: The vocabulary's name of each computed value.
ENUMERATED = {"tier": "tier", "lifecycle": "lifecycle", "rfm_segment": "rfm.segment",
              "churn_risk": "churn_risk"}


def by_dimension(ws: Workspace, snapshot: Snapshot, dimension: str,
                 values: dict[str, str] | None = None,
                 fields: dict[str, str] | None = None,
                 lang: str | None = None) -> dict[str, Any]:
    """Per value of ``dimension``: the customers' figures, biggest revenue first, and the
    figures of all the customers the filters leave (``total``). Filters on tier,
    lifecycle, RFM segment, churn risk and gender take codes or labels; a value that names
    none is an error with the valid ones (in ``lang``)."""
    if dimension not in DIMENSIONS:
        raise TierwiseError(f"cannot group customers by {dimension!r}; expected one of "
                            f"{', '.join(DIMENSIONS)}",
                            zh=f"不能按 {dimension!r} 分组：可用的维度有 {', '.join(DIMENSIONS)}")
    values, fields = dict(values or {}), dict(fields or {})
    unknown = sorted(set(values) - set(VALUE_DIMENSIONS)) + sorted(
        set(fields) - set(FIELD_DIMENSIONS))
    if unknown:
        raise TierwiseError(f"unknown filter(s) {', '.join(unknown)}; expected some of "
                            f"{', '.join(DIMENSIONS)}",
                            zh=f"未知的筛选条件 {', '.join(unknown)}："
                            f"可用的有 {', '.join(DIMENSIONS)}")
    words = vocabulary(ws, lang)  # labels in either language are taken for codes
    values = {c: words.code(ENUMERATED[c], v) for c, v in values.items()}
    if "gender" in fields:
        fields["gender"] = words.code("gender", fields["gender"])
    table = _joined(ws, snapshot.table, dimension, fields)
    for column, wanted in values.items():
        table = table.filter(pc.equal(table.column(column), wanted))
    for column, wanted in fields.items():
        table = _with_tag(table, wanted) if column == "tag" else table.filter(
            pc.equal(table.column(column), wanted))
    total = kpis(table)
    groups = []
    for value, figures in _grouped(table, dimension):
        figures["customer_share"] = figures["customers"] / total["customers"] \
            if total["customers"] else None
        figures["revenue_share"] = figures["revenue"] / total["revenue"] \
            if total["revenue"] else None
        groups.append({"value": value, **figures})
    groups.sort(key=lambda g: (-g["revenue"], -g["customers"], str(g["value"])))
    return {"snapshot_id": snapshot.snapshot_id, "as_of": snapshot.as_of, "by": dimension,
            "values": values, "fields": fields, "total": total, "groups": groups}


def _joined(ws: Workspace, snap: pa.Table, dimension: str,
            fields: dict[str, str]) -> pa.Table:
    """The snapshot with the customer fields the breakdown reads (none personal)."""
    wanted = [c for c in dict.fromkeys([dimension, *fields])
              if c in FIELD_DIMENSIONS]
    if not wanted:
        return snap
    columns = ["customer_id", *("tags" if c == "tag" else c for c in wanted)]
    people = customer_mirror.read(ws.root, ws.control).select(columns)
    return snap.join(people, "customer_id", join_type="left outer")


def _tags(table: pa.Table) -> list[list[str]]:
    """Each customer's tags (the customers' copy keeps them as JSON text)."""
    return [sorted(set(json.loads(t))) if isinstance(t, str) else sorted(set(t or []))
            for t in table.column("tags").to_pylist()]


def _with_tag(table: pa.Table, tag: str) -> pa.Table:
    return table.filter(pa.array([tag in tags for tags in _tags(table)], pa.bool_()))


def _grouped(table: pa.Table, dimension: str) -> list[tuple[Any, dict[str, Any]]]:
    if dimension != "tag":
        return kpis_by(table, table.column(dimension).combine_chunks())
    rows: list[int] = []
    keys: list[str | None] = []
    for i, tags in enumerate(_tags(table)):
        found: list[str | None] = [*tags] or [None]
        for tag in found:
            rows.append(i)
            keys.append(tag)
    return kpis_by(table.take(pa.array(rows, pa.int64())), pa.array(keys, pa.string()))


__all__ = ["DIMENSIONS", "FIELD_DIMENSIONS", "VALUE_DIMENSIONS", "by_dimension"]
