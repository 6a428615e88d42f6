"""Merges (``merges``, ``customer_redirects``, ``duplicate_pairs``): folding customer
records into a survivor and putting them back exactly, in one transaction each.

A merge moves the merged ids' history, memberships, contact preferences and pending
actions (``merge_actions``: without acting twice) to the survivor, redirects the merged ids
(facts keep them; engines read them through the redirects), deletes the merged records and
keeps everything needed to undo it in a sealed record (encrypted like PII: it holds the
merged customers' values).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tierwise.errors import NotFoundError, TierwiseError
from tierwise.store import customers as customer_store
from tierwise.store import merge_actions, sizes
from tierwise.store.control import as_utc, saved_instant
from tierwise.store.sealing import KeyRing
from tierwise.store.tables import (
    contact_preferences,
    customer_redirects,
    duplicate_pairs,
    merges,
    segment_history,
    segment_members,
)

#: Customer columns a merge or its undo never overwrites.
FIXED = {"customer_id", "is_stub", "import_id", "created_at", "updated_at"}


def seal(conn: sa.Connection, data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, default=str)
    ring = conn.info.get("pii")
    return ring.encrypt("merge", text) if ring is not None else text


def unseal(conn: sa.Connection, text: str) -> Any:
    """A merge's undo record (customer records, moved rows), decrypted."""
    ring = conn.info.get("pii")
    return json.loads(ring.decrypt("merge", text) if ring is not None else text)


def apply(conn: sa.Connection, *, survivor_id: str, merged_ids: list[str],
          records: list[dict[str, Any]], changed: dict[str, Any], sources: dict[str, str],
          reason: str, actor: str, now: datetime) -> int:
    """Fold ``merged_ids`` into ``survivor_id`` (``records``: all of them as read, the
    survivor's first; ``changed``: the survivor's new values); returns the merge id."""
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
    actions = merge_actions.move(conn, survivor_id, merged_ids, now)
    merge_id = int(conn.execute(merges.insert().values(
        survivor_id=survivor_id, merged_ids=json.dumps(merged_ids), reason=reason,
        fields=json.dumps(sources), created_by=actor, created_at=now,
        undo=seal(conn, {"records": records, "history": moved_history,
                         "memberships": memberships, "preferences": preferences,
                         "redirects": earlier, "actions": actions}),
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
    customer_store.delete(conn, merged_ids)
    conn.execute(duplicate_pairs.update().where(
        duplicate_pairs.c.status == "pending",
        sa.or_(duplicate_pairs.c.left_id.in_(merged_ids),
               duplicate_pairs.c.right_id.in_(merged_ids)),
        sa.or_(duplicate_pairs.c.left_id == survivor_id,
               duplicate_pairs.c.right_id == survivor_id,
               sa.and_(duplicate_pairs.c.left_id.in_(merged_ids),
                       duplicate_pairs.c.right_id.in_(merged_ids)))).values(
        status="merged", merge_id=merge_id, decided_by=actor, decided_at=now))
    return merge_id


def lock(conn: sa.Connection) -> None:
    """Serialise merges and their undos (each reads what it changes)."""
    from tierwise.store.control import advisory_lock

    advisory_lock(conn, "merges")


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


def undo(conn: sa.Connection, merge_id: int, *, actor: str, now: datetime
         ) -> tuple[str, list[str]]:
    """Put a merge back exactly: the records, redirects, history, memberships, preferences.

    Only the latest merge that involves the survivor can be undone (later merges built on it
    must be undone first).
    """
    row = conn.execute(sa.select(merges).where(merges.c.merge_id == merge_id)).first()
    if row is None:
        raise NotFoundError(f"no merge {merge_id}",
                            zh=f"没有合并记录 {merge_id}")
    if row.undone_at is not None:
        raise TierwiseError(f"merge {merge_id} was undone already",
                            zh=f"合并 {merge_id} 已经撤销过了")
    merged_ids = json.loads(row.merged_ids)
    later = conn.execute(sa.select(merges.c.merge_id).where(
        merges.c.merge_id > merge_id, merges.c.undone_at.is_(None),
        merges.c.survivor_id.in_([row.survivor_id, *merged_ids]))).first()
    if later is not None:
        raise TierwiseError(f"merge {later[0]} came after merge {merge_id} and involves "
                            f"the same customers: undo it first",
                            zh=f"合并 {later[0]} 在合并 {merge_id} 之后，且涉及相同的客户：请先撤销"
                            "它")
    saved = unseal(conn, row.undo)
    records = [customer_store.from_json(r) for r in saved["records"]]
    survivor = records[0]
    customer_store.set_fields(conn, row.survivor_id, {
        k: v for k, v in survivor.items() if k not in FIXED})
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
            m.entered_at == saved_instant(membership["entered_at"]))).rowcount
        conn.execute(segment_members.insert().values(
            {**membership, "entered_at": saved_instant(membership["entered_at"])}))
        change[membership["segment_key"]] = change.get(membership["segment_key"], 0) \
            + 1 - max(gone, 0)
    sizes.change(conn, change)
    for pref in saved["preferences"]:
        conn.execute(contact_preferences.insert().values(
            {**pref, "updated_at": saved_instant(pref["updated_at"]),
             "unsubscribed_at": saved_instant(pref["unsubscribed_at"])}))
    merge_actions.put_back(conn, row.survivor_id, saved.get("actions", {}))
    conn.execute(merges.update().where(merges.c.merge_id == merge_id).values(
        undone_at=now, undone_by=actor))
    conn.execute(duplicate_pairs.update().where(duplicate_pairs.c.merge_id == merge_id)
                 .values(status="pending", merge_id=None, decided_by=None,
                         decided_at=None))
    return row.survivor_id, merged_ids




def recent(conn: sa.Connection, limit: int = 100) -> list[dict[str, Any]]:
    rows = conn.execute(sa.select(merges.c.merge_id, merges.c.survivor_id,
                                  merges.c.merged_ids, merges.c.reason, merges.c.fields,
                                  merges.c.created_by, merges.c.created_at, merges.c.undone_at)
                        .order_by(merges.c.merge_id.desc()).limit(limit)).all()
    return [{**dict(r._mapping), "merged_ids": json.loads(r.merged_ids),
             "fields": json.loads(r.fields), "created_at": as_utc(r.created_at),
             "undone_at": as_utc(r.undone_at)} for r in rows]


# -- the review queue of likely duplicates (``duplicate_pairs``) -------------------------

def known_pairs(conn: sa.Connection) -> set[tuple[str, str]]:
    """Every pair ever queued or decided, as (smaller id, larger id)."""
    return {(r.left_id, r.right_id) for r in conn.execute(
        sa.select(duplicate_pairs.c.left_id, duplicate_pairs.c.right_id))}


def add_pairs(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Record pairs (left_id, right_id, probability, status, found_at, and for decided ones
    decided_by, decided_at, merge_id)."""
    if rows:
        conn.execute(duplicate_pairs.insert(), rows)


def pairs(conn: sa.Connection, status: str = "pending", limit: int = 100
          ) -> list[dict[str, Any]]:
    """Pairs in ``status``, most likely first."""
    p = duplicate_pairs.c
    rows = conn.execute(sa.select(duplicate_pairs).where(p.status == status)
                        .order_by(p.probability.desc(), p.pair_id).limit(limit)).all()
    return [{**dict(r._mapping), "found_at": as_utc(r.found_at),
             "decided_at": as_utc(r.decided_at)} for r in rows]


def pair(conn: sa.Connection, pair_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(duplicate_pairs).where(
        duplicate_pairs.c.pair_id == pair_id)).first()
    return None if row is None else dict(row._mapping)


def decide_pair(conn: sa.Connection, pair_id: int, status: str, actor: str, at: datetime,
                merge_id: int | None = None) -> None:
    conn.execute(duplicate_pairs.update().where(duplicate_pairs.c.pair_id == pair_id)
                 .values(status=status, merge_id=merge_id, decided_by=actor, decided_at=at))


def counts(conn: sa.Connection) -> dict[str, int]:
    """Merges in force, records merged into another, pairs waiting and rejected."""
    def count(query: Any) -> int:
        return int(conn.execute(query).scalar() or 0)

    by_status = {str(status): int(n) for status, n in conn.execute(
        sa.select(duplicate_pairs.c.status, sa.func.count())
        .group_by(duplicate_pairs.c.status))}
    return {"merges": count(sa.select(sa.func.count()).select_from(merges)
                            .where(merges.c.undone_at.is_(None))),
            "merged_records": count(sa.select(sa.func.count())
                                    .select_from(customer_redirects)),
            "pairs_waiting_for_review": int(by_status.get("pending", 0)),
            "pairs_rejected": int(by_status.get("rejected", 0))}


def reseal(conn: sa.Connection, ring: KeyRing) -> int:
    """Seal every merge's undo record again under ``ring``'s current key (key rotation)."""
    rows = conn.execute(sa.select(merges.c.merge_id, merges.c.undo)).all()
    for r in rows:
        conn.execute(merges.update().where(merges.c.merge_id == r.merge_id).values(
            undo=ring.encrypt("merge", ring.decrypt("merge", r.undo))))
    return len(rows)
