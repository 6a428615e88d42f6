"""What one real-time micro-batch costs, step by step, in process.

``python bench/realtime_batch.py [--batches 12] [--size 2000]``

The workspace is a fresh copy of bench/out/ws-rt-base (bench/realtime.py: 100k customers,
``--activity 5``) with the same 20 segments as bench/realtime.py, evaluated once. Each
batch posts ``--size`` events for random customers into the intake (as ``POST /v1/events``
does), then times what the worker's loop does with them: move them into the fact store
(the import, with its comparison against the stored keys), evaluate the affected segments
for the affected customers, sweep the clock-driven segments for the customers on their
edges since the previous batch (what the worker does every ``sweep_seconds``, looking them
up in the facts kept in memory), and sweep
one clock-driven segment for everyone (every ``full_sweep_seconds``). Figures are
medians over the batches after the first (which warms caches). The baseline in the same run
is a query that reads every stored event once (``count(*)`` and ``count(DISTINCT
customer_id)``): the floor of any step that scans the history.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, median, report  # noqa: E402
from realtime import BASE, SEGMENTS, ensure_workspace  # noqa: E402

WS = OUT / "ws-rt-batch"
TYPES = [("page_view", {"page": "/pricing"}), ("page_view", {"page": "/home"}),
         ("email_open", {}), ("click", {}), ("page_view", {"page": "/docs"})]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--size", type=int, default=2000)
    args = parser.parse_args()
    ensure_workspace(100_000)  # builds BASE once (and a copy this script does not use)
    shutil.rmtree(WS, ignore_errors=True)
    shutil.copytree(BASE, WS)

    import sqlalchemy as sa

    from tierwise import open as open_ws
    from tierwise.models import leads
    from tierwise.realtime import intake
    from tierwise.segments import catalog as defs
    from tierwise.segments import incremental
    from tierwise.segments.membership import evaluate_all
    from tierwise.store.tables import customers

    ws = open_ws(WS)
    for key, rule in SEGMENTS.items():
        defs.save(ws, defs.SegmentDefinition(key=key, rule=rule))
    start = time.perf_counter()
    evaluate_all(ws)
    catch_up = time.perf_counter() - start
    # as the worker does (Worker.start): facts by customer in memory, log checkpoints on a
    # thread of their own
    ws.facts.keep_rows = True
    ws.control.checkpoint_in_background()
    reads = incremental.segment_reads(ws)
    timed = sorted(k for k, r in reads.items() if r.timed)
    with ws.control.read() as conn:
        ids = [r[0] for r in conn.execute(sa.select(customers.c.customer_id))]
    rng = random.Random(7)
    steps: dict[str, list[float]] = {"receive": [], "flush": [], "evaluate_changed": [],
                                     "leads": [], "edge_sweep_all_clocked": [],
                                     "sweep_one_segment_for_everyone": [], "scan_floor": []}
    edged = [k for k in timed if reads[k].edges is not None]
    swept_at = datetime.now(UTC)
    for batch in range(args.batches):
        now = datetime.now(UTC).isoformat()
        rows = []
        for _ in range(args.size):
            kind, props = rng.choice(TYPES)
            rows.append({"event_id": uuid.uuid4().hex, "customer_id": rng.choice(ids),
                         "type": kind, "occurred_at": now, "properties": props})
        marks = [time.perf_counter()]
        intake.receive(ws, "events", rows)
        marks.append(time.perf_counter())
        moved = intake.flush(ws)
        marks.append(time.perf_counter())
        incremental.evaluate_changed(ws, moved.customers, read_by=reads)
        marks.append(time.perf_counter())
        leads.update(ws, moved.customers.get("events", set()))
        marks.append(time.perf_counter())
        as_of = datetime.now(UTC)
        incremental.sweep_since(ws, edged, swept_at, as_of, reads, in_memory=True)
        swept_at = as_of
        marks.append(time.perf_counter())
        evaluate_all(ws, keys=[timed[batch % len(timed)]], reason="time")
        marks.append(time.perf_counter())
        ws.sql("SELECT count(*), count(DISTINCT customer_id) FROM events")
        marks.append(time.perf_counter())
        if batch == 0:
            continue
        for name, a, b in zip(steps, marks, marks[1:], strict=False):
            steps[name].append(b - a)
    events = ws.count("events")
    ws.close()
    floor = median(steps["scan_floor"])
    rows_out: list[dict[str, object]] = [
        {"step": name, "median_s": round(median(values), 3), "max_s": round(max(values), 3),
         "ratio_to_scan_floor": round(median(values) / floor, 1)}
        for name, values in steps.items()]
    rows_out.append({"events_at_end": events, "segments": len(SEGMENTS),
                     "clock_driven": len(timed), "batch_size": args.size,
                     "first_full_evaluation_s": round(catch_up, 2)})
    report("realtime_batch_steps", rows_out)


if __name__ == "__main__":
    main()
