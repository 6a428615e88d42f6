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
from tierwise.identity.scoring import model_path, scorer
from tierwise.ingest.cleaning import clean_email, phone_cleaner
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


def candidates(ws: Workspace, record: dict[str, Any], limit: int = 50) -> dict[str, str]:
    """Existing customers a record may be, found through the search hashes (so this stays
    fast on a million customers): same e-mail, phone or name → the rule that found each."""
    phone = phone_cleaner(ws.config.phone_region)
    found: dict[str, str] = {}
    with ws.control.read() as conn:
        for column in ("email", "phone", "name"):
            value = record.get(column)
            if not value:
                continue
            value = (clean_email(value)[0] if column == "email" else
                     phone(value)[0] if column == "phone" else value)
            for cid in customer_store.find(conn, column, value)[:limit]:
                if cid != record.get("customer_id"):
                    found.setdefault(cid, f"same {column}")
    return found


def _looked_up(ws: Workspace, records: dict[str, dict[str, Any]]
               ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, Any]]]:
    """Each record's candidates (by the record's key: candidate → the rule that found it),
    and the candidates' rows (those still customers)."""
    found = {key: c for key, record in records.items() if (c := candidates(ws, record))}
    every = sorted(set().union(*found.values())) if found else []
    with ws.control.read() as conn:
        rows = {c: r for c in every if (r := customer_store.get(conn, c)) is not None}
    return found, rows


def _scored(ws: Workspace, records: dict[str, dict[str, Any]],
            found: dict[str, dict[str, str]], rows: dict[str, dict[str, Any]]) -> pa.Table:
    """unique_id_l (a record's key), unique_id_r (a candidate), match_probability."""
    model = scorer(ws.root)
    # One scoring call costs ~70 ms however few pairs it holds: records are scored in
    # groups against all their group's candidates at once (a cross product), each group
    # as large as keeps that product under CROSS_PRODUCT_LIMIT pairs.
    batches: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
    group: list[str] = []
    seen: set[str] = set()

    def close() -> None:
        batches.append(([{**records[g], "customer_id": g} for g in group],
                        [rows[c] for c in seen if c in rows]))

    for key, others in found.items():
        grown = seen | set(others)
        if group and (len(group) + 1) * len(grown) > CROSS_PRODUCT_LIMIT:
            close()
            group, grown = [], set(others)
        group.append(key)
        seen = grown
    if group:
        close()
    left, right, probability = [], [], []
    for batch_left, batch_right in batches:
        for scored in model.score(batch_left, batch_right, ws.config.phone_region):
            if scored["right_id"] in found.get(scored["left_id"], ()):
                left.append(scored["left_id"])
                right.append(scored["right_id"])
                probability.append(scored["match_probability"])
    return pa.table({"unique_id_l": pa.array(left, pa.string()),
                     "unique_id_r": pa.array(right, pa.string()),
                     "match_probability": pa.array(probability, pa.float64())})


def score_arrivals(ws: Workspace, records: dict[str, dict[str, Any]]) -> pa.Table:
    """Each record (by id; written or not) against the customers sharing its e-mail, phone
    or name: unique_id_l (the record), unique_id_r, match_probability. Writes nothing."""
    return _scored(ws, records, *_looked_up(ws, records))


def score_records(ws: Workspace, records: list[dict[str, Any]]
                  ) -> list[list[dict[str, Any]]]:
    """For each new record (not imported), the existing customers it may be, best first:
    candidates (``candidates``) with their match probability under the saved model, or
    only the rule that found them while no model has been trained."""
    keyed = {f"_new{i}": record for i, record in enumerate(records)}
    found, rows = _looked_up(ws, keyed)
    scores: dict[tuple[str, str], float] = {}
    if model_path(ws.root).exists():
        pairs = _scored(ws, keyed, found, rows)
        scores = {(a, b): p for a, b, p in zip(
            pairs["unique_id_l"].to_pylist(), pairs["unique_id_r"].to_pylist(),
            pairs["match_probability"].to_pylist(), strict=True)}
    out = []
    for key in keyed:
        listed: list[dict[str, Any]] = [
            {"customer_id": c, "found_by": rule, "match_probability": scores.get((key, c))}
            for c, rule in found.get(key, {}).items() if c in rows]
        if scores:
            listed.sort(key=lambda r: -(r["match_probability"] or 0.0))
        out.append(listed)
    return out


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
        queued = review.queue(ws, pairs, actor=actor, audited_as="arrival")
        result.merged, result.queued = queued.merged, queued.queued
    result.seconds = time.perf_counter() - started
    return result
