"""The duplicate review queue: pairs above the upper threshold merge at once, pairs between
the thresholds wait for a person to accept or reject them, and a decision is remembered (a
rejected pair is not asked about again).

Automatic merges group pairs transitively (A~B and B~C merge A, B and C) and keep the record
created first as the survivor (ties: the smaller id), so the id the oldest systems know
survives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tierwise.errors import NotFoundError, TierwiseError
from tierwise.identity.merge import MergeResult, Survivorship, merge
from tierwise.store import audit
from tierwise.store import customers as customer_store
from tierwise.store import merges as merge_store
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace

#: Default thresholds on the match probability.
UPPER = 0.95
LOWER = 0.5


@dataclass
class QueueResult:
    merged: list[MergeResult] = field(default_factory=list)
    queued: int = 0
    known: int = 0  # pairs decided or queued before


def _groups(pairs: list[tuple[str, str]]) -> list[set[str]]:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, set[str]] = {}
    for x in parent:
        groups.setdefault(find(x), set()).add(x)
    return list(groups.values())


def _strongest(pairs: Iterable[tuple[str, str, float]]) -> dict[tuple[str, str], float]:
    """Each pair once, as (smaller id, larger id), at its highest probability (a pair found
    from both sides counts once; a record is not paired with itself)."""
    best: dict[tuple[str, str], float] = {}
    for a, b, p in pairs:
        if a != b:
            key = (min(a, b), max(a, b))
            best[key] = max(best.get(key, 0.0), float(p))
    return best


def _survivor(ws: Workspace, ids: set[str]) -> str:
    with ws.control.read() as conn:
        rows = customer_store.page(conn, ids=sorted(ids), limit=len(ids))
    if not rows:
        raise NotFoundError(f"none of {sorted(ids)} is a customer any more",
                            zh=f"{sorted(ids)} 都已不再是客户")
    return str(min(rows, key=lambda r: (r["created_at"], r["customer_id"]))["customer_id"])


def queue(ws: Workspace, pairs: pa.Table, *, actor: str, upper: float = UPPER,
          lower: float = LOWER, rules: Survivorship | None = None,
          audited_as: str = "auto") -> QueueResult:
    """Merge pairs ≥ ``upper`` (each merge in the audit log, its reason ``audited_as``);
    queue pairs in [``lower``, ``upper``) for review."""
    if not 0 < lower <= upper <= 1:
        raise TierwiseError(f"thresholds must satisfy 0 < lower ≤ upper ≤ 1, got {lower} and "
                            f"{upper}",
                            zh=f"阈值应满足 0 < lower ≤ upper ≤ 1，实际为 {lower} 和 {upper}")
    result = QueueResult()
    rows = [(a, b, p) for (a, b), p in _strongest(
        (a, b, p) for a, b, p in zip(pairs["unique_id_l"].to_pylist(),
                                     pairs["unique_id_r"].to_pylist(),
                                     pairs["match_probability"].to_pylist(), strict=True)
        if p >= lower).items()]
    with ws.control.read() as conn:
        decided = merge_store.known_pairs(conn)
    fresh = [r for r in rows if (r[0], r[1]) not in decided]
    result.known = len(rows) - len(fresh)
    now = utcnow()
    sure = [r for r in fresh if r[2] >= upper]
    moved: dict[str, str] = {}  # merged id → its survivor
    for group in _groups([(a, b) for a, b, _ in sure]):
        survivor = _survivor(ws, group)
        done = merge(ws, survivor, sorted(group - {survivor}), actor=actor, reason="auto",
                     rules=rules)
        result.merged.append(done)
        moved.update({i: survivor for i in done.merged_ids})
        with ws.control.write() as conn:  # remembered, so the pair is not merged twice
            audit.append(conn, actor, "merge", f"customer:{done.survivor_id}",
                         {"merge_id": done.merge_id, "merged": done.merged_ids,
                          "reason": audited_as})
            merge_store.add_pairs(conn, [
                {"left_id": a, "right_id": b, "probability": p, "status": "merged",
                 "found_at": now, "decided_by": actor, "decided_at": now,
                 "merge_id": done.merge_id} for a, b, p in sure if a in group])
    # Pairs for review name the records as they are after the merges above: a record
    # merged away is asked about as its survivor (once, and not against itself).
    waiting = {key: p for key, p in _strongest(
        (moved.get(a, a), moved.get(b, b), p) for a, b, p in fresh if p < upper).items()
        if key not in decided}
    if waiting:
        with ws.control.write() as conn:
            merge_store.add_pairs(conn, [
                {"left_id": a, "right_id": b, "probability": p, "status": "pending",
                 "found_at": now} for (a, b), p in waiting.items()])
    result.queued = len(waiting)
    return result


def pending(ws: Workspace, limit: int = 100, status: str = "pending") -> list[dict[str, Any]]:
    with ws.control.read() as conn:
        return merge_store.pairs(conn, status, limit)


def _pair(ws: Workspace, pair_id: int) -> dict[str, Any]:
    with ws.control.read() as conn:
        row = merge_store.pair(conn, pair_id)
    if row is None:
        raise NotFoundError(f"no duplicate pair {pair_id}",
                            zh=f"没有重复客户对 {pair_id}")
    if row["status"] != "pending":
        raise TierwiseError(f"pair {pair_id} is {row['status']} already",
                            zh=f"客户对 {pair_id} 已经是 {row['status']} 状态")
    return row


def accept(ws: Workspace, pair_id: int, *, actor: str, survivor: str | None = None,
           rules: Survivorship | None = None) -> MergeResult:
    """Merge the two records of a pending pair (the older one survives unless named)."""
    row = _pair(ws, pair_id)
    ids = {row["left_id"], row["right_id"]}
    if survivor is not None and survivor not in ids:
        raise TierwiseError(f"the survivor must be {row['left_id']} or {row['right_id']}",
                            zh=f"存续客户必须是 {row['left_id']} 或 {row['right_id']}")
    keep = survivor or _survivor(ws, ids)
    result = merge(ws, keep, sorted(ids - {keep}), actor=actor, reason="review", rules=rules)
    with ws.control.write() as conn:
        merge_store.decide_pair(conn, pair_id, "merged", actor, utcnow(), result.merge_id)
    return result


def reject(ws: Workspace, pair_id: int, *, actor: str) -> None:
    """Not the same customer: the pair leaves the queue and is not proposed again."""
    _pair(ws, pair_id)
    with ws.control.write() as conn:
        merge_store.decide_pair(conn, pair_id, "rejected", actor, utcnow())
