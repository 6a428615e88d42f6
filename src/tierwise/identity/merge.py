"""Merging duplicate customers into one golden record, and undoing a merge.

A merge keeps one surviving id. The merged ids' customer rows are removed and their facts
(orders, events, tickets, feedback, referrals) stay in the fact store under their own ids:
``customer_redirects`` maps each merged id to the survivor and every fact scan applies it,
so queries, segments and profiles see the facts under the survivor while nothing in the
Parquet files changes — which is what makes a merge cheap and exactly undoable. Segment
history and memberships, contact preferences and open review pairs move to the survivor in
the control store. Everything needed to undo (the rows before, what moved) is kept with the
merge, PII encrypted like the customers table.

The golden record is built field by field by survivorship rules:

- ``most_recent``: the non-empty value of the most recently updated record;
- ``most_complete``: the longest non-empty value (a full name over an initial);
- ``earliest``: the smallest value (first sign-up);
- ``survivor``: the survivor's value, else the first non-empty one by source priority;
- ``union``: tags of all records; ``merge``: attributes, the survivor's keys winning.

Records are ranked for ties and for ``survivor`` by ``source_priority`` (the ``channel``
values listed first win), then by the survivor first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from tierwise.errors import NotFoundError, TierwiseError
from tierwise.store import customer_mirror, sizes
from tierwise.store import customers as customer_store
from tierwise.store.control import as_utc, utcnow
from tierwise.store.tables import (
    contact_preferences,
    customer_redirects,
    duplicate_pairs,
    merges,
    segment_history,
    segment_members,
)
from tierwise.workspace import Workspace

Rule = Literal["most_recent", "most_complete", "earliest", "survivor", "union", "merge"]
#: Columns a merge can never change.
_FIXED = {"customer_id", "is_stub", "import_id", "created_at", "updated_at"}


DEFAULT_RULES: dict[str, Rule] = {
    "name": "most_complete", "birth_date": "most_complete", "signup_at": "earliest",
    "acquisition_cost": "survivor", "owner": "survivor", "channel": "survivor",
    "tags": "union", "attributes": "merge"}


class Survivorship(BaseModel):
    """Per-field rules (fields not named use ``default``) and the channel priority."""

    model_config = ConfigDict(extra="forbid")
    default: Rule = "most_recent"
    fields: dict[str, Rule] = Field(default_factory=lambda: dict(DEFAULT_RULES))
    source_priority: list[str] = Field(default_factory=list)


def _filled(value: Any) -> bool:
    return value is not None and value != "" and value != "[]" and value != "{}"


def golden_record(records: list[dict[str, Any]], rules: Survivorship
                  ) -> tuple[dict[str, Any], dict[str, str]]:
    """The merged values (survivor first in ``records``) and which record each came from."""
    priority = {c: i for i, c in enumerate(rules.source_priority)}
    ranked = sorted(range(len(records)), key=lambda i: (
        priority.get(records[i].get("channel") or "", len(priority)), i))
    ordered = [records[i] for i in ranked]
    survivor = records[0]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for column in survivor:
        if column in _FIXED or column.endswith("_hash"):
            continue
        rule = rules.fields.get(column, rules.default)
        candidates = [r for r in ordered if _filled(r.get(column))]
        if not candidates:
            continue
        if rule == "union":
            merged: list[str] = []
            for r in candidates:
                merged.extend(t for t in json.loads(r[column]) if t not in merged)
            values[column], sources[column] = json.dumps(sorted(merged), ensure_ascii=False), "*"
            continue
        if rule == "merge":
            combined: dict[str, Any] = {}
            for r in reversed(candidates):  # the best-ranked record's keys win
                combined.update(json.loads(r[column]))
            if survivor.get(column):
                combined.update(json.loads(survivor[column]))
            values[column] = json.dumps(combined, ensure_ascii=False, sort_keys=True)
            sources[column] = "*"
            continue
        if rule == "most_recent":
            chosen = max(candidates, key=lambda r: as_utc(r["updated_at"]) or datetime.min)
        elif rule == "most_complete":
            chosen = max(candidates, key=lambda r: len(str(r[column])))
        elif rule == "earliest":
            chosen = min(candidates, key=lambda r: r[column])
        else:  # survivor
            chosen = survivor if _filled(survivor.get(column)) else candidates[0]
        values[column], sources[column] = chosen[column], chosen["customer_id"]
    return values, sources


@dataclass
class MergeResult:
    merge_id: int
    survivor_id: str
    merged_ids: list[str]
    fields: dict[str, str] = field(default_factory=dict)  # column → source id


def _load(conn: sa.Connection, ids: Iterable[str]) -> list[dict[str, Any]]:
    rows = []
    for cid in ids:
        row = customer_store.get(conn, cid)
        if row is None:
            raise NotFoundError(f"no customer with id {cid!r} (merged already?)")
        rows.append(row)
    return rows


def _seal(conn: sa.Connection, data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, default=str)
    ring = conn.info.get("pii")
    return ring.encrypt("merge", text) if ring is not None else text


def unseal(conn: sa.Connection, text: str) -> Any:
    """A merge's undo record (customer records, moved rows), decrypted."""
    ring = conn.info.get("pii")
    return json.loads(ring.decrypt("merge", text) if ring is not None else text)


def merge(ws: Workspace, survivor_id: str, merged_ids: list[str], *, actor: str,
          reason: str = "manual", rules: Survivorship | None = None) -> MergeResult:
    """Merge ``merged_ids`` into ``survivor_id`` in one control-store transaction."""
    merged_ids = [m for m in dict.fromkeys(merged_ids) if m != survivor_id]
    if not merged_ids:
        raise TierwiseError("name at least one other customer to merge into the survivor")
    rules = rules or Survivorship()
    now = utcnow()
    with ws.control.write() as conn:
        ws.control.lock(conn, "merges")
        records = _load(conn, [survivor_id, *merged_ids])
        values, sources = golden_record(records, rules)
        changed = {k: v for k, v in values.items() if records[0].get(k) != v}
        h, m = segment_history.c, segment_members.c
        moved_history = [[r[0], r[1]] for r in conn.execute(
            sa.select(h.history_id, h.customer_id).where(h.customer_id.in_(merged_ids)))]
        memberships = [dict(r._mapping) for r in conn.execute(
            sa.select(segment_members).where(m.customer_id.in_(merged_ids)))]
        preferences = [dict(r._mapping) for r in conn.execute(
            sa.select(contact_preferences).where(
                contact_preferences.c.customer_id.in_(merged_ids)))]
        earlier = [dict(r._mapping) for r in conn.execute(
            sa.select(customer_redirects).where(
                customer_redirects.c.survivor_id.in_(merged_ids)))]
        merge_id = int(conn.execute(merges.insert().values(
            survivor_id=survivor_id, merged_ids=json.dumps(merged_ids), reason=reason,
            fields=json.dumps(sources), created_by=actor, created_at=now,
            undo=_seal(conn, {"records": records, "history": moved_history,
                              "memberships": memberships, "preferences": preferences,
                              "redirects": earlier}),
        )).inserted_primary_key[0])  # type: ignore[index]
        if changed:
            customer_store.set_fields(conn, survivor_id, changed)
        conn.execute(customer_redirects.insert(), [
            {"customer_id": cid, "survivor_id": survivor_id, "merge_id": merge_id}
            for cid in merged_ids])
        if earlier:  # ids merged into a merged id now point at the new survivor
            conn.execute(customer_redirects.update().where(
                customer_redirects.c.survivor_id.in_(merged_ids)).values(
                survivor_id=survivor_id))
        if moved_history:
            conn.execute(segment_history.update().where(
                h.history_id.in_([i for i, _ in moved_history])).values(customer_id=survivor_id))
        _move_memberships(conn, survivor_id, merged_ids, memberships)
        _move_preferences(conn, survivor_id, preferences, now)
        conn.execute(customer_store.customers.delete().where(
            customer_store.customers.c.customer_id.in_(merged_ids)))
        conn.execute(duplicate_pairs.update().where(
            duplicate_pairs.c.status == "pending",
            sa.or_(duplicate_pairs.c.left_id.in_(merged_ids),
                   duplicate_pairs.c.right_id.in_(merged_ids)),
            sa.or_(duplicate_pairs.c.left_id == survivor_id,
                   duplicate_pairs.c.right_id == survivor_id,
                   sa.and_(duplicate_pairs.c.left_id.in_(merged_ids),
                           duplicate_pairs.c.right_id.in_(merged_ids)))).values(
            status="merged", merge_id=merge_id, decided_by=actor, decided_at=now))
    customer_mirror.invalidate(ws.root)
    return MergeResult(merge_id, survivor_id, merged_ids, sources)


def _move_memberships(conn: sa.Connection, survivor_id: str, merged_ids: list[str],
                      memberships: list[dict[str, Any]]) -> None:
    m = segment_members.c
    have = {r[0] for r in conn.execute(sa.select(m.segment_key).where(
        m.customer_id == survivor_id))}
    conn.execute(segment_members.delete().where(m.customer_id.in_(merged_ids)))
    added: dict[str, dict[str, Any]] = {}
    for row in sorted(memberships, key=lambda r: r["entered_at"]):
        if row["segment_key"] not in have and row["segment_key"] not in added:
            added[row["segment_key"]] = {**row, "customer_id": survivor_id}
    if added:
        conn.execute(segment_members.insert(), list(added.values()))
    change: dict[str, int] = {key: 1 for key in added}
    for row in memberships:  # the merged ids' rows, all deleted above
        change[row["segment_key"]] = change.get(row["segment_key"], 0) - 1
    sizes.change(conn, change)


def _move_preferences(conn: sa.Connection, survivor_id: str,
                      preferences: list[dict[str, Any]], now: datetime) -> None:
    """The most restrictive choice wins: an unsubscribe or a withdrawn consent sticks."""
    p = contact_preferences.c
    for row in preferences:
        key = (p.customer_id == survivor_id) & (p.channel == row["channel"])
        current = conn.execute(sa.select(contact_preferences).where(key)).first()
        if current is None:
            conn.execute(contact_preferences.insert().values(
                {**row, "customer_id": survivor_id, "updated_at": now}))
            continue
        values: dict[str, Any] = {"updated_at": now}
        if row["unsubscribed_at"] is not None and current.unsubscribed_at is None:
            values["unsubscribed_at"] = row["unsubscribed_at"]
        if row["consent"] is False:
            values["consent"] = False
        conn.execute(contact_preferences.update().where(key).values(values))
    conn.execute(contact_preferences.delete().where(
        p.customer_id.in_([r["customer_id"] for r in preferences])))


def undo(ws: Workspace, merge_id: int, *, actor: str) -> MergeResult:
    """Put a merge back exactly: the records, redirects, history, memberships, preferences.

    Only the latest merge that involves the survivor can be undone (later merges built on it
    must be undone first).
    """
    now = utcnow()
    with ws.control.write() as conn:
        ws.control.lock(conn, "merges")
        row = conn.execute(sa.select(merges).where(merges.c.merge_id == merge_id)).first()
        if row is None:
            raise NotFoundError(f"no merge {merge_id}")
        if row.undone_at is not None:
            raise TierwiseError(f"merge {merge_id} was undone already")
        merged_ids = json.loads(row.merged_ids)
        later = conn.execute(sa.select(merges.c.merge_id).where(
            merges.c.merge_id > merge_id, merges.c.undone_at.is_(None),
            merges.c.survivor_id.in_([row.survivor_id, *merged_ids]))).first()
        if later is not None:
            raise TierwiseError(f"merge {later[0]} came after merge {merge_id} and involves "
                                f"the same customers: undo it first")
        saved = unseal(conn, row.undo)
        records = [customer_store.from_json(r) for r in saved["records"]]
        survivor = records[0]
        customer_store.set_fields(conn, row.survivor_id, {
            k: v for k, v in survivor.items() if k not in _FIXED})
        for record in records[1:]:
            customer_store.restore_record(conn, record)
        conn.execute(customer_redirects.delete().where(
            customer_redirects.c.merge_id == merge_id))
        for earlier in saved["redirects"]:
            conn.execute(customer_redirects.update().where(
                customer_redirects.c.customer_id == earlier["customer_id"]).values(
                survivor_id=earlier["survivor_id"]))
        h = segment_history.c
        for history_id, owner in saved["history"]:
            conn.execute(segment_history.update().where(h.history_id == history_id)
                         .values(customer_id=owner))
        m = segment_members.c
        change: dict[str, int] = {}
        for membership in saved["memberships"]:
            gone = conn.execute(segment_members.delete().where(
                m.segment_key == membership["segment_key"], m.customer_id == row.survivor_id,
                m.entered_at == _instant(membership["entered_at"]))).rowcount
            conn.execute(segment_members.insert().values(
                {**membership, "entered_at": _instant(membership["entered_at"])}))
            change[membership["segment_key"]] = change.get(membership["segment_key"], 0) \
                + 1 - max(gone, 0)
        sizes.change(conn, change)
        for pref in saved["preferences"]:
            conn.execute(contact_preferences.insert().values(
                {**pref, "updated_at": _instant(pref["updated_at"]),
                 "unsubscribed_at": _instant(pref["unsubscribed_at"])}))
        conn.execute(merges.update().where(merges.c.merge_id == merge_id).values(
            undone_at=now, undone_by=actor))
        conn.execute(duplicate_pairs.update().where(duplicate_pairs.c.merge_id == merge_id)
                     .values(status="pending", merge_id=None, decided_by=None,
                             decided_at=None))
    customer_mirror.invalidate(ws.root)
    return MergeResult(merge_id, row.survivor_id, merged_ids)


def _instant(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def merges_of(ws: Workspace, limit: int = 100) -> list[dict[str, Any]]:
    with ws.control.read() as conn:
        rows = conn.execute(sa.select(merges.c.merge_id, merges.c.survivor_id,
                                      merges.c.merged_ids, merges.c.reason, merges.c.fields,
                                      merges.c.created_by, merges.c.created_at,
                                      merges.c.undone_at)
                            .order_by(merges.c.merge_id.desc()).limit(limit)).all()
    return [{**dict(r._mapping), "merged_ids": json.loads(r.merged_ids),
             "fields": json.loads(r.fields), "created_at": as_utc(r.created_at),
             "undone_at": as_utc(r.undone_at)} for r in rows]
