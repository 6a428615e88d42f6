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

from pydantic import BaseModel, ConfigDict, Field

from tierwise.errors import NotFoundError, TierwiseError
from tierwise.store import customer_mirror
from tierwise.store import customers as customer_store
from tierwise.store import merges as merge_store
from tierwise.store.control import Connection, as_utc, utcnow
from tierwise.workspace import Workspace

Rule = Literal["most_recent", "most_complete", "earliest", "survivor", "union", "merge"]
#: Columns a merge can never change.


DEFAULT_RULES: dict[str, Rule] = {
    "name": "most_complete", "birth_date": "most_complete", "signup_at": "earliest",
    "acquisition_cost": "survivor", "owner": "survivor", "channel": "survivor",
    "account_id": "survivor", "role": "survivor", "tags": "union", "attributes": "merge"}


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
        if column in merge_store.FIXED or column.endswith("_hash"):
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


def _load(conn: Connection, ids: Iterable[str]) -> list[dict[str, Any]]:
    rows = []
    for cid in ids:
        row = customer_store.get(conn, cid)
        if row is None:
            raise NotFoundError(f"no customer with id {cid!r} (merged already?)",
                                zh=f"没有编号为 {cid!r} 的客户（已经合并了？）")
        rows.append(row)
    return rows


def merge(ws: Workspace, survivor_id: str, merged_ids: list[str], *, actor: str,
          reason: str = "manual", rules: Survivorship | None = None) -> MergeResult:
    """Merge ``merged_ids`` into ``survivor_id`` in one control-store transaction."""
    merged_ids = [m for m in dict.fromkeys(merged_ids) if m != survivor_id]
    if not merged_ids:
        raise TierwiseError("name at least one other customer to merge into the survivor",
                            zh="请至少指定一个要并入存续客户的其他客户")
    rules = rules or Survivorship()
    now = utcnow()
    with ws.control.write() as conn:
        merge_store.lock(conn)
        records = _load(conn, [survivor_id, *merged_ids])
        _check_levels(conn, records)
        values, sources = golden_record(records, rules)
        changed = {k: v for k, v in values.items() if records[0].get(k) != v}
        merge_id = merge_store.apply(conn, survivor_id=survivor_id, merged_ids=merged_ids,
                                     records=records, changed=changed, sources=sources,
                                     reason=reason, actor=actor, now=now)
        # the accounts that lose a person to the merge have other people now
        kept = values.get("account_id", records[0].get("account_id"))
        customer_store.touch(conn, {r["account_id"] for r in records
                                    if r.get("account_id") and r["account_id"] != kept}, now)
    # (the copies of the customers in memory catch up by themselves: the survivor's
    # updated_at changed, the merged ids are gone)
    return MergeResult(merge_id, survivor_id, merged_ids, sources)


def _check_levels(conn: Connection, records: list[dict[str, Any]]) -> None:
    """Refuse to merge an account that has people with a contact (a company with a person):
    the golden record would be both, an account of contacts and a contact itself. Two
    contacts, of one account or of two, merge (the survivor's account and role win)."""
    people = [r["customer_id"] for r in records if r.get("account_id")]
    if not people:
        return
    theirs = customer_store.contacts_of(conn, [r["customer_id"] for r in records])
    if theirs:
        account = sorted(theirs)[0]
        raise TierwiseError(
            f"{account} is the account of {len(theirs[account])} contact(s) and {people[0]} "
            f"is a contact of {next(r['account_id'] for r in records if r.get('account_id'))}"
            ": an account and a person at one cannot be merged",
            zh=f"{account} 是 {len(theirs[account])} 个联系人的所属客户，而 {people[0]} 是联系人："
            "公司客户与联系人不能合并")


def undo(ws: Workspace, merge_id: int, *, actor: str) -> MergeResult:
    """Put a merge back exactly: the records, redirects, history, memberships, preferences.

    Only the latest merge that involves the survivor can be undone (later merges built on it
    must be undone first).
    """
    with ws.control.write() as conn:
        merge_store.lock(conn)
        survivor_id, merged_ids = merge_store.undo(conn, merge_id, actor=actor, now=utcnow())
    # the records come back with their old updated_at, which no copy can catch up with
    customer_mirror.invalidate(ws.root)
    return MergeResult(merge_id, survivor_id, merged_ids)


def merges_of(ws: Workspace, limit: int = 100) -> list[dict[str, Any]]:
    with ws.control.read() as conn:
        return merge_store.recent(conn, limit)

