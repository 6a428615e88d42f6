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


def match_arrivals(ws: Workspace, ids: list[str], *, actor: str) -> Arrivals:
    """Score ``ids`` (customers just written) against the others and act on the pairs."""
    started = time.perf_counter()
    result = Arrivals(checked=len(ids))
    if not ids:
        return result
    if not model_path(ws.root).exists():
        result.trained = False
        return result
    model = scorer(ws.root)
    with ws.control.read() as conn:  # (an id merged away by an earlier arrival is gone)
        records = {cid: r for cid in ids if (r := customer_store.get(conn, cid)) is not None}
    wanted: dict[str, set[str]] = {}  # arriving id → the candidates to score it against
    for cid, record in records.items():
        others = {c for c in candidates(ws, record) if c != cid}
        if others:
            wanted[cid] = others
    every = sorted(set().union(*wanted.values())) if wanted else []
    with ws.control.read() as conn:
        rows = {c: r for c in every if (r := customer_store.get(conn, c)) is not None}
    left, right, found = [], [], []
    arriving = [records[cid] for cid in wanted]
    # One scoring call costs ~70 ms however few pairs it holds: score the arrivals of a
    # batch against all their candidates at once (a cross product) while that stays small.
    if len(arriving) * len(rows) <= CROSS_PRODUCT_LIMIT:
        batches = [(arriving, list(rows.values()))]
    else:
        batches = [([records[cid]], [rows[c] for c in sorted(others) if c in rows])
                   for cid, others in wanted.items()]
    for batch_left, batch_right in batches:
        for scored in model.score(batch_left, batch_right, ws.config.phone_region):
            if scored["right_id"] in wanted.get(scored["left_id"], ()):
                left.append(scored["left_id"])
                right.append(scored["right_id"])
                found.append(scored["match_probability"])
    result.pairs = len(found)
    if found:
        queued = review.queue(ws, pa.table({
            "unique_id_l": pa.array(left, pa.string()),
            "unique_id_r": pa.array(right, pa.string()),
            "match_probability": pa.array(found, pa.float64())}), actor=actor)
        result.merged, result.queued = queued.merged, queued.queued
    result.seconds = time.perf_counter() - started
    return result
