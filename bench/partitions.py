"""Real-time partitions on PostgreSQL: one worker against two, each owning half of the
customers, draining the same backlog of events.

    TIERWISE_BENCH_PG_URL=postgresql://user@host/db python bench/partitions.py \
        [--customers 20000] [--events 200000] [--repeat 3]

For each run, two workspaces with the same demo data (``tierwise demo``, same seed) on
fresh databases of the given server, 18 of ``bench/realtime.py``'s segments: the one with
``realtime_partitions = 1``, the other with 2. The events (page views, e-mail opens and
clicks of random customers, of the last six hours) are received through intake before any worker
runs, in posts of 500; then the workspace's workers start (``tierwise worker``, one process
per partition) and the time until no row waits, the rows per second and the CPU the
workers used are measured. Catching up (every segment for everyone, at start) is timed
apart: it ends with the first round that moved rows (up to 20,000 a table and worker),
and the drain — the rows still waiting then — is timed from there. After each drain the
memberships are compared with evaluating every rule for everyone at that moment
(``differences``: pairs of segment and customer on which they disagree; a window edge
crossed between the workers' last round and the comparison would count too).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, median, report  # noqa: E402
from realtime import SEGMENTS  # noqa: E402

import tierwise  # noqa: E402
from tierwise.demo.generator import DemoSpec  # noqa: E402
from tierwise.demo.load import load_generated  # noqa: E402
from tierwise.realtime import intake  # noqa: E402
from tierwise.segments import catalog as defs  # noqa: E402
from tierwise.segments import membership  # noqa: E402
from tierwise.segments.evaluate import evaluate_rule  # noqa: E402
from tierwise.store import customers as customer_store  # noqa: E402
from tierwise.store.tables import segment_members  # noqa: E402

RULES = {k: v for k, v in SEGMENTS.items() if not k.startswith("bench_")}
POST = 500


def database(admin: str) -> str:
    name = f"twb_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(admin.replace("postgresql://", "postgresql+psycopg://", 1),
                              isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return sa.engine.make_url(admin).set(database=name).render_as_string(hide_password=False)


def drop(admin: str, url: str) -> None:
    name = sa.engine.make_url(url).database
    engine = sa.create_engine(admin.replace("postgresql://", "postgresql+psycopg://", 1),
                              isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def workspace(path: Path, url: str, partitions: int, customers: int) -> tierwise.Workspace:
    ws = tierwise.init(path, control_store=url, realtime_partitions=partitions)
    load_generated(ws, DemoSpec(customers=customers, seed=7, activity=5))
    ws.compute()
    for key, rule in RULES.items():
        defs.save(ws, defs.SegmentDefinition(key=key, rule=rule))
    return ws


def backlog(ws: tierwise.Workspace, events: int, seed: int) -> None:
    with ws.control.read() as conn:
        ids = customer_store.ids(conn).to_pylist()
    rng = random.Random(seed)
    now = datetime.now(UTC)
    rows = [{"event_id": f"B{seed}-{i}", "customer_id": rng.choice(ids),
             # the last six hours: none leaves a one-day window while the benchmark runs
             "occurred_at": (now - timedelta(seconds=rng.randrange(6 * 3600))).isoformat(),
             "type": rng.choice(("page_view", "email_open", "click")),
             "properties": {"page": rng.choice(("/pricing", "/docs", "/"))}}
            for i in range(events)]
    for start in range(0, events, POST):
        intake.receive(ws, "events", rows[start:start + POST])


def drain(ws: tierwise.Workspace, partitions: int, events: int) -> dict[str, object]:
    logs = [open(ws.root / f"worker-{i}.log", "wb") for i in range(partitions)]  # noqa: SIM115
    workers = [psutil.Popen([sys.executable, "-m", "tierwise.cli.main", "worker", "-w",
                             str(ws.root), "--seconds", "900"],
                            stdout=subprocess.DEVNULL, stderr=log) for log in logs]
    started = time.perf_counter()
    try:
        first = None
        while True:
            waiting = sum(intake.pending(ws).values())
            if first is None and waiting < events:
                first, left = time.perf_counter(), waiting
                cpu_at_first = sum(w.cpu_times().user + w.cpu_times().system
                                   for w in workers)
                server_at_first = _server_cpu()
            if waiting == 0:
                break
            if time.perf_counter() - started > 900:
                raise RuntimeError(f"{waiting} rows still waiting after 15 minutes")
            time.sleep(0.05)
        done = time.perf_counter()
        cpu = [w.cpu_times().user + w.cpu_times().system for w in workers]
        server = _server_cpu()
    finally:
        for w in workers:
            w.send_signal(15)  # SIGTERM: stops the worker, which gives its lease up
        for w in workers:
            w.wait(60)
        for log in logs:
            log.close()
    assert first is not None
    seconds = done - first
    return {"until_first_round_seconds": round(first - started, 2),
            "drain_seconds": round(seconds, 2), "rows_drained": left,
            "rows_per_s": round(left / seconds),
            "worker_cores_while_draining": round((sum(cpu) - cpu_at_first) / seconds, 2),
            "postgres_cores_while_draining": round((server - server_at_first) / seconds, 2)}


def _server_cpu() -> float:
    """CPU seconds of the PostgreSQL server's processes (on this machine)."""
    total = 0.0
    for proc in psutil.process_iter(["name", "cpu_times"]):
        if proc.info["name"] in ("postgres", "postmaster") and proc.info["cpu_times"]:
            total += proc.info["cpu_times"].user + proc.info["cpu_times"].system
    return total


def differences(ws: tierwise.Workspace) -> int:
    """Memberships that differ from a full evaluation now."""
    m = segment_members.c
    with ws.control.read() as conn:
        stored = {(k, c) for k, c in conn.execute(sa.select(m.segment_key, m.customer_id))}
    now = datetime.now(UTC)
    resolve = membership.applied_resolver(ws)
    expected = {(key, c) for key, rule in RULES.items()
                for c in evaluate_rule(ws, rule, now, resolve, key)["customer_id"].to_pylist()}
    return len(stored ^ expected)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    admin = os.environ.get("TIERWISE_BENCH_PG_URL") or os.environ.get("TIERWISE_TEST_PG_URL")
    if not admin:
        raise SystemExit("set TIERWISE_BENCH_PG_URL to a PostgreSQL server")
    runs: dict[int, list[dict[str, object]]] = {1: [], 2: []}
    for run in range(args.repeat):
        for partitions in (1, 2):
            root = OUT / f"ws-part-{partitions}"
            subprocess.run(["rm", "-rf", str(root)], check=True)
            url = database(admin)
            ws = workspace(root, url, partitions, args.customers)
            backlog(ws, args.events, seed=run)
            result = drain(ws, partitions, args.events)
            result["differences"] = differences(ws)
            runs[partitions].append(result)
            ws.close()
            drop(admin, url)
    rows = []
    for partitions, results in runs.items():
        rows.append({"partitions": partitions, "customers": args.customers,
                     "events": args.events, "runs": results,
                     "median_rows_per_s": median([float(r["rows_per_s"]) for r in results])})
    ratio = rows[1]["median_rows_per_s"] / rows[0]["median_rows_per_s"]  # type: ignore[operator]
    rows.append({"ratio_two_over_one": round(ratio, 2)})
    report("realtime_partitions", rows)


if __name__ == "__main__":
    main()
