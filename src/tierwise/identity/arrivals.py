"""Matching customers as they arrive (an API call, a small import), not at the next scan.

Each new or changed record is compared with the customers that share its e-mail, phone or
name (the search hashes find them without a scan) and scored with the saved model: sure
matches (≥ ``review.UPPER``) merge at once into the older record, likely ones (≥
``review.LOWER``) wait in the review queue. The merge moves memberships, history and
pending actions to the survivor without acting twice (``store.merge_actions``).

Without a trained model nothing is decided: the answer says so, and the first scan
(``tierwise duplicates``) trains one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tierwise.identity import review
from tierwise.identity.match import candidates
from tierwise.identity.scoring import model_path, scorer
from tierwise.store import customers as customer_store
from tierwise.workspace import Workspace

#: The most pairs scored in one call (arrivals × all their candidates).
CROSS_PRODUCT_LIMIT = 50_000
#: Above this many arriving records, one scan over all customers is cheaper than scoring
#: each record's candidates (callers run ``match.find_duplicates`` instead).
MAX_ARRIVALS = 5_000


@dataclass
class Arrivals:
    checked: int = 0
    pairs: int = 0  # candidate pairs scored
    merged: list[review.MergeResult] = field(default_factory=list)
    queued: int = 0
    trained: bool = True  # False: no model yet, nothing was decided
    seconds: float = 0.0


def score_arrivals(ws: Workspace, records: dict[str, dict[str, Any]]) -> pa.Table:
    """Each record (by id; written or not) against the customers sharing its e-mail, phone
    or name: unique_id_l (the record), unique_id_r, match_probability. Writes nothing."""
    model = scorer(ws.root)
    wanted: dict[str, set[str]] = {}  # arriving id → the candidates to score it against
    for cid, record in records.items():
        others = {c for c in candidates(ws, record) if c != cid}
        if others:
            wanted[cid] = others
    every = sorted(set().union(*wanted.values())) if wanted else []
    with ws.control.read() as conn:
        rows = {c: r for c in every if (r := customer_store.get(conn, c)) is not None}
    # One scoring call costs ~70 ms however few pairs it holds: arrivals are scored in
    # groups against all their group's candidates at once (a cross product), each group
    # as large as keeps that product under CROSS_PRODUCT_LIMIT pairs.
    batches: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
    group: list[str] = []
    seen: set[str] = set()
    for cid, others in wanted.items():
        grown = seen | others
        if group and (len(group) + 1) * len(grown) > CROSS_PRODUCT_LIMIT:
            batches.append(([records[g] for g in group], [rows[c] for c in seen if c in rows]))
            group, grown = [], set(others)
        group.append(cid)
        seen = grown
    if group:
        batches.append(([records[g] for g in group], [rows[c] for c in seen if c in rows]))
    left, right, found = [], [], []
    for batch_left, batch_right in batches:
        for scored in model.score(batch_left, batch_right, ws.config.phone_region):
            if scored["right_id"] in wanted.get(scored["left_id"], ()):
                left.append(scored["left_id"])
                right.append(scored["right_id"])
                found.append(scored["match_probability"])
    return pa.table({"unique_id_l": pa.array(left, pa.string()),
                     "unique_id_r": pa.array(right, pa.string()),
                     "match_probability": pa.array(found, pa.float64())})


def match_arrivals(ws: Workspace, ids: list[str], *, actor: str) -> Arrivals:
    """Score ``ids`` (customers just written) against the others and act on the pairs."""
    started = time.perf_counter()
    result = Arrivals(checked=len(ids))
    if not ids:
        return result
    if not model_path(ws.root).exists():
        result.trained = False
        return result
    with ws.control.read() as conn:  # (an id merged away by an earlier arrival is gone)
        records = {cid: r for cid in ids if (r := customer_store.get(conn, cid)) is not None}
    pairs = score_arrivals(ws, records)
    result.pairs = pairs.num_rows
    if pairs.num_rows:
        queued = review.queue(ws, pairs, actor=actor)
        result.merged, result.queued = queued.merged, queued.queued
    result.seconds = time.perf_counter() - started
    return result
