"""Matching a customer as it arrives, on a 1M-customer workspace: latency per record.

    python bench/match_arrivals.py [--records 300]

The workspace is bench/out/ws-seg (built by bench/segments.py). The first run trains and
saves the matching model on its million customers (``tierwise duplicates``; the time is
reported). Then ``records`` arriving records — copies of random customers as another
system would type them, and new people — are each scored against the customers who share
their e-mail, phone or name, the way ``POST /v1/customers`` matches what it wrote
(``identity.arrivals.score_records``; nothing is written, so the workspace stays as it is).
The baseline in the same run is finding the candidates alone (the keyed search-hash
lookups, no scoring). Figures: median and p99 milliseconds per record.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, report  # noqa: E402


def _arrivals(customers: list[dict], count: int, rng: random.Random) -> list[dict]:
    out = []
    for i in range(count):
        base = dict(rng.choice(customers))
        base["customer_id"] = f"ARRIVING-{i}"
        if i % 3 == 0:  # a new person: a name and a phone nobody has
            base.update(name=f"新客{i}", phone=f"+86139{rng.randrange(10**8):08d}", email=None)
        elif i % 3 == 1 and base.get("phone"):  # the phone as people type it
            digits = base["phone"].removeprefix("+86")
            base["phone"] = f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"
        else:  # the e-mail in capitals
            base["email"] = (base.get("email") or "").upper() or None
        out.append(base)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=300)
    args = parser.parse_args()
    import tierwise
    from tierwise.identity.arrivals import candidates, score_arrivals, score_records
    from tierwise.identity.match import find_duplicates
    from tierwise.identity.scoring import model_path, scorer

    root = OUT / "ws-seg"
    if not root.exists():
        raise SystemExit("bench/out/ws-seg is missing: run python bench/segments.py first")
    ws = tierwise.open(root)
    trained_seconds = None
    if not model_path(ws.root).exists():
        started = time.perf_counter()
        find_duplicates(ws, 0.5)
        trained_seconds = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    scorer(ws.root)  # loading the model and its term frequencies, once per process
    load_seconds = round(time.perf_counter() - started, 2)
    rng = random.Random(5)
    sample = ws.table("customers").slice(rng.randrange(900_000), 20_000).to_pylist()
    arriving = _arrivals(sample, args.records, rng)
    lookups, scored, found, wrong = [], [], 0, 0
    for i, record in enumerate(arriving):
        started = time.perf_counter()
        candidates(ws, record)
        lookups.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        result = score_records(ws, [record])[0]
        scored.append((time.perf_counter() - started) * 1000)
        matched = bool(result and (result[0]["match_probability"] or 0) >= 0.5)
        found += matched and i % 3 != 0
        wrong += matched and i % 3 == 0
    started = time.perf_counter()  # the records of one request (100), scored together
    batch = arriving[:100]
    score_arrivals(ws, {r["customer_id"]: r for r in batch})
    batch_ms = (time.perf_counter() - started) * 1000
    ws.close()

    def figures(ms: list[float]) -> dict[str, float]:
        ordered = sorted(ms)
        return {"median_ms": round(statistics.median(ordered), 1),
                "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 1)}

    match, base = figures(scored), figures(lookups)
    report("match_arrivals", [{
        "customers": "bench/out/ws-seg", "records": len(arriving),
        "model_trained_seconds": trained_seconds, "model_load_seconds": load_seconds,
        "match_per_record": match, "baseline_candidate_lookup": base,
        "ratio_median": round(match["median_ms"] / max(base["median_ms"], 0.01), 1),
        "batch_of_100_ms": round(batch_ms), "batch_of_100_per_record_ms": round(
            batch_ms / len(batch), 1),
        "copies_found_at_0.5": found, "copies_arriving": sum(
            1 for i in range(len(arriving)) if i % 3),
        "new_people_matched_at_0.5": wrong, "new_people_arriving": sum(
            1 for i in range(len(arriving)) if i % 3 == 0)}])


if __name__ == "__main__":
    main()
