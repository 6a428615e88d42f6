"""Customers side by side by a dimension: the same headline figures per group.

``by_dimension`` groups the customers of a snapshot by one of their computed values (tier,
lifecycle stage, RFM segment, churn risk) or one of their own fields (city, province,
country, industry, company size, channel, owner, gender, tag), after narrowing them by any
of the same (``values`` on computed ones, ``fields`` on their own; the customer list takes
the same filters, so each group links to exactly its customers). Per group it gives
``summaries.kpis`` — the figures of the overview — and the group's shares of customers and
revenue. The CLI, the API and the dashboard all call this one function.

``attributes.KEY`` groups (and filters) by one key of the customers' attributes (not a
sensitive one); ``segment`` groups by segment membership: each applied segment's current
members are a group. A customer with several tags, or in several segments, is in each of
their groups (shares can add up to more than 1); customers without a value (no tag, no
segment) are one group (value ``None``).
"""

from __future__ import annotations

import json
import weakref
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tierwise.definitions.vocabulary import VALUE_COLUMNS
from tierwise.errors import TierwiseError
from tierwise.models.compute import Snapshot
from tierwise.models.summaries import kpis, kpis_by
from tierwise.segments.vocabulary import vocabulary
from tierwise.services.customers import check_values, is_attribute
from tierwise.store import customer_mirror
from tierwise.store import customers as customer_store
from tierwise.store.customers import ATTRIBUTE_PREFIX, attribute_key, attribute_text
from tierwise.workspace import Workspace

#: Computed values (snapshot columns) a breakdown groups or filters by.
VALUE_DIMENSIONS = tuple(VALUE_COLUMNS)
#: The customers' own fields a breakdown groups or filters by (not those of an account's
#: people: the values grouped have no people).
FIELD_DIMENSIONS = (*(c for c in customer_store.FILTER_COLUMNS
                      if c not in customer_store.PEOPLE_COLUMNS), "tag")
#: Grouping by segment membership (each segment's current members).
SEGMENT_DIMENSION = "segment"
DIMENSIONS = (*VALUE_DIMENSIONS, *FIELD_DIMENSIONS, SEGMENT_DIMENSION)


def by_dimension(ws: Workspace, snapshot: Snapshot, dimension: str,
                 values: dict[str, str] | None = None,
                 fields: dict[str, str] | None = None,
                 lang: str | None = None, segment: str | None = None,
                 period: str | None = None) -> dict[str, Any]:
    """Per value of ``dimension``: the customers' figures, biggest revenue first, and the
    figures of all the customers the filters leave (``total``). Filters on tier,
    lifecycle, RFM segment, churn risk and gender take codes or labels; a value that names
    none is an error with the valid ones (in ``lang``). ``segment``: only its current
    members. ``period`` (2026, 2026H2, 2026Q3, 2026-07, 2026-07-01..2026-08-15): each group
    and the total also get what its customers did in that period and the one before
    (``period``: buyers, orders, revenue, conversion, repurchase, order value, reactivation,
    churn — the periodic review's figures, ``services.review.period_kpis``)."""
    if attribute_key(dimension) and is_attribute(ws, dimension) \
            and dimension not in attribute_keys(ws):
        listed = ", ".join(attribute_keys(ws)) or "none"
        raise TierwiseError(f"no customer has the attribute {dimension!r}; the attributes are "
                            f"{listed}", zh=f"没有客户带有属性 {dimension!r}；已有的属性：{listed}")
    if dimension not in DIMENSIONS and not is_attribute(ws, dimension):
        raise TierwiseError(f"cannot group customers by {dimension!r}; expected one of "
                            f"{', '.join(DIMENSIONS)}",
                            zh=f"不能按 {dimension!r} 分组：可用的维度有 {', '.join(DIMENSIONS)}")
    values, fields = dict(values or {}), dict(fields or {})
    unknown = sorted(set(values) - set(VALUE_DIMENSIONS)) + sorted(
        f for f in set(fields) - set(FIELD_DIMENSIONS) if not is_attribute(ws, f))
    if unknown:
        raise TierwiseError(f"unknown filter(s) {', '.join(unknown)}; expected some of "
                            f"{', '.join(DIMENSIONS)}",
                            zh=f"未知的筛选条件 {', '.join(unknown)}："
                            f"可用的有 {', '.join(DIMENSIONS)}")
    words = vocabulary(ws, lang)  # labels in either language are taken for codes
    values = {c: words.column_code(c, v) for c, v in values.items()}
    if "gender" in fields:
        fields["gender"] = words.column_code("gender", fields["gender"])
    check_values(ws, fields)  # a value nobody has: refused, not an empty breakdown
    if dimension == SEGMENT_DIMENSION and segment is not None:
        raise TierwiseError("by=segment groups by every segment: it cannot also keep one "
                            f"segment's members (segment={segment!r})",
                            zh=f"by=segment 按每个分群分组，不能同时只看一个分群"
                               f"（segment={segment!r}）")
    table = _joined(ws, snapshot.table, dimension, fields)
    if segment is not None:
        table = table.filter(pc.is_in(table.column("customer_id"),
                                      pa.array(members(ws, segment), pa.string())))
    for column, wanted in values.items():
        table = table.filter(pc.equal(table.column(column), wanted))
    for column, wanted in fields.items():
        table = _with_tag(table, wanted) if column == "tag" else table.filter(
            pc.equal(table.column(column), wanted))
    total = kpis(table)
    groups = []
    memberships = _memberships(ws) if dimension == SEGMENT_DIMENSION else {}
    for value, figures in _grouped(table, dimension, memberships):
        figures["customer_share"] = figures["customers"] / total["customers"] \
            if total["customers"] else None
        figures["revenue_share"] = figures["revenue"] / total["revenue"] \
            if total["revenue"] else None
        groups.append({"value": value, **figures})
    if period is not None:
        found_period = _in_period(ws, table, dimension, period, memberships)
        total["period"] = found_period.pop("\x00all")
        for group in groups:
            group["period"] = found_period.get(_key(group["value"]))
    groups.sort(key=lambda g: (-g["revenue"], -g["customers"], str(g["value"])))
    return {"snapshot_id": snapshot.snapshot_id, "as_of": snapshot.as_of, "by": dimension,
            "values": values, "fields": fields, "segment": segment, "total": total,
            "groups": groups}


def _key(value: Any) -> str:
    return "\x00none" if value is None else str(value)


def _in_period(ws: Workspace, table: pa.Table, dimension: str, text: str,
               memberships: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """The review's period figures per group (by ``_key``) and for all (``\x00all``)."""
    from tierwise.services.periods import parse_period
    from tierwise.services.review import period_kpis

    chosen = parse_period(text, ws.config.timezone)
    ids = table.column("customer_id").to_pylist()
    if dimension == "tag":
        lists, index = _tag_sets(table)
        pairs = [(c, t) for c, i in zip(ids, index.tolist(), strict=True)
                 for t in ((lists[i] if i >= 0 else []) or [None])]
    elif dimension == SEGMENT_DIMENSION:
        pairs = [(ids[i], key) for key, rows in _segment_parts(table, memberships)
                 for i in rows.tolist()]
    else:
        pairs = list(zip(ids, table.column(dimension).to_pylist(), strict=True))
    groups = pa.table({
        "customer_id": pa.array([c for c, _ in pairs] + ids, pa.string()),
        "grp": pa.array([_key(v) for _, v in pairs] + ["\x00all"] * len(ids), pa.string())})
    found = period_kpis(ws, groups, chosen, chosen.previous())
    named = {"name": chosen.name, "previous": chosen.previous().name}
    return {r["group"]: {**named, "now": r["now"], "before": r["before"]} for r in found}


def known_segment(ws: Workspace, key: str) -> str:
    """``key`` when a segment of that key is applied, else an error naming the known ones
    (``segments.catalog.known``)."""
    from tierwise.segments import catalog as defs

    return defs.known(ws, key)


def members(ws: Workspace, key: str) -> list[str]:
    """The current members of the applied segment ``key``."""
    from tierwise.segments.membership import members_at

    return members_at(ws, known_segment(ws, key))


def _joined(ws: Workspace, snap: pa.Table, dimension: str,
            fields: dict[str, str]) -> pa.Table:
    """The snapshot with the customer fields the breakdown reads (none personal); an
    attribute ``attributes.KEY`` as a column of that name (``attribute_text`` values)."""
    wanted = [c for c in dict.fromkeys([dimension, *fields])
              if c in FIELD_DIMENSIONS or attribute_key(c)]
    if not wanted:
        return snap
    columns = list(dict.fromkeys(["customer_id", *(
        "tags" if c == "tag" else "attributes" if attribute_key(c) else c for c in wanted)]))
    people = customer_mirror.read(ws.root, ws.control).select(columns)
    for name in wanted:
        key = attribute_key(name)
        if key is not None:
            people = people.append_column(name, _attribute_values(people["attributes"], key))
    return snap.join(people, "customer_id", join_type="left outer")


def _attribute_values(column: pa.ChunkedArray, key: str) -> pa.Array:
    """One key of the customers' attributes (JSON text), each distinct text parsed once."""
    encoded = pc.dictionary_encode(column.combine_chunks())
    parsed = []
    for text in encoded.dictionary.to_pylist():
        try:
            data = json.loads(text) if isinstance(text, str) else {}
        except ValueError:
            data = {}
        parsed.append(attribute_text(data.get(key)) if isinstance(data, dict) else None)
    return pa.array(parsed, pa.string()).take(encoded.indices)


#: The keys found in the customers' copy last read, by workspace: (a weak reference to
#: that copy, the keys). The copy is replaced whenever customers change, so its identity
#: says whether the keys still hold; every breakdown page asks, and a million distinct
#: attribute texts take seconds to parse.
_KEYS: dict[str, tuple[weakref.ref[pa.Table], set[str]]] = {}


def attribute_keys(ws: Workspace) -> list[str]:
    """The attribute keys customers have, as dimensions (``attributes.KEY``), sensitive
    ones left out."""
    people = customer_mirror.read(ws.root, ws.control)
    kept = _KEYS.get(str(ws.root))
    if kept is not None and kept[0]() is people:
        keys = kept[1]
    else:
        keys = _parsed_keys(people["attributes"])
        _KEYS[str(ws.root)] = (weakref.ref(people), keys)
    return [ATTRIBUTE_PREFIX + k for k in sorted(keys)
            if not ws.personal_data.is_sensitive_key(k)]


def _parsed_keys(column: pa.ChunkedArray) -> set[str]:
    keys: set[str] = set()
    for text in pc.unique(column).to_pylist():
        try:
            data = json.loads(text) if isinstance(text, str) else {}
        except ValueError:
            continue
        if isinstance(data, dict):
            keys.update(k for k in data if attribute_key(ATTRIBUTE_PREFIX + k))
    return keys


def _tag_sets(table: pa.Table) -> tuple[list[list[str]], np.ndarray]:
    """The distinct tag lists (the customers' copy keeps them as JSON text) and, per
    customer, the index of theirs (-1: none): a million customers share a few hundred."""
    encoded = pc.dictionary_encode(table.column("tags").combine_chunks())
    lists = [sorted(set(json.loads(t) if isinstance(t, str) else t or []))
             for t in encoded.dictionary.to_pylist()]
    return lists, np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False))


def _with_tag(table: pa.Table, tag: str) -> pa.Table:
    lists, index = _tag_sets(table)
    return table.filter(pa.array(np.isin(index, [i for i, t in enumerate(lists) if tag in t])))


def _memberships(ws: Workspace) -> dict[str, list[str]]:
    """The current members of every applied segment, by key."""
    from tierwise.segments import catalog as defs
    from tierwise.segments.membership import members_at

    return {key: members_at(ws, key) for key in sorted(defs.applied(ws))}


def _segment_parts(table: pa.Table, memberships: dict[str, list[str]]
                   ) -> list[tuple[str | None, np.ndarray]]:
    """The rows of ``table`` in each segment, and (key None) those in none."""
    ids = table.column("customer_id")
    parts: list[tuple[str | None, np.ndarray]] = []
    anywhere = np.zeros(table.num_rows, dtype=bool)
    for key, members in memberships.items():
        inside = pc.is_in(ids, pa.array(members, pa.string())).to_numpy(zero_copy_only=False)
        anywhere |= inside
        parts.append((key, np.flatnonzero(inside)))
    parts.append((None, np.flatnonzero(~anywhere)))
    return parts


def _grouped(table: pa.Table, dimension: str, memberships: dict[str, list[str]]
             ) -> list[tuple[Any, dict[str, Any]]]:
    if dimension not in ("tag", SEGMENT_DIMENSION):
        return kpis_by(table, table.column(dimension).combine_chunks())
    if dimension == SEGMENT_DIMENSION:
        parts = _segment_parts(table, memberships)
    else:
        lists, index = _tag_sets(table)
        tags = sorted({t for listed in lists for t in listed})
        untagged = [i for i, listed in enumerate(lists) if not listed]
        parts = [(tag, np.flatnonzero(np.isin(index, [i for i, listed in enumerate(lists)
                                                      if tag in listed]))) for tag in tags]
        parts.append((None, np.flatnonzero(np.isin(index, [-1, *untagged]))))
    rows = np.concatenate([p for _, p in parts]) if parts else np.array([], dtype=np.int64)
    keys = pa.array([tag for tag, p in parts for _ in range(len(p))], pa.string())
    return [g for g in kpis_by(table.take(pa.array(rows, pa.int64())), keys)
            if g[1]["customers"]]


__all__ = ["DIMENSIONS", "FIELD_DIMENSIONS", "SEGMENT_DIMENSION", "VALUE_DIMENSIONS",
           "attribute_keys", "by_dimension", "known_segment", "members"]
