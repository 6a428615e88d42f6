"""Server time per dashboard page over a 1M-customer workspace.

``python bench/dashboard.py [--repeat 15]``

The workspace is bench/out/ws-seg (built by bench/segments.py: 1M customers, ~5M orders,
one snapshot as of 2026-06-30); here a second snapshot (as of 2026-03-31) is added so the
tier page draws a migration, the built-in segment templates are saved and evaluated, and
the Actions page gets 100,000 deliveries (``bench/delivery_log.py``'s) and 10,000 open
tasks (a third of them overdue).
``tierwise serve`` runs in its own process and, as it does after every start and compute
run, computes the latest snapshot's figures in the background; after ``--warmup`` seconds
one signed-in client asks for each page once (first) and then ``--repeat`` times. In-process
figures of that background work are printed too. The baseline in
the same run is ``GET /health``: the server and client floor. Figures are medians.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, report  # noqa: E402
from segments import WS, ensure_workspace  # noqa: E402

PAGES = ["/", "/rfm", "/tiers", "/lifecycle", "/clv", "/segments", "/segments/{some_segment}",
         "/customers", "/customers?city={some_city}", "/customers/{some_customer}",
         "/breakdown?by=city", "/funnel?by=tier", "/actions", "/actions?overdue=1",
         "/review", "/imports"]
DELIVERIES, TASKS = 100_000, 10_000
USER, PASSWORD = "bench-dashboard", "bench-dashboard-pw"
EARLIER = "2026-03-31T23:59:59+08:00"


def prepare() -> None:
    ensure_workspace()
    from tierwise import open as open_ws
    from tierwise.models import compute
    from tierwise.segments import catalog as defs
    from tierwise.segments.membership import evaluate_all
    from tierwise.segments.templates import TEMPLATES
    from tierwise.store import accounts

    ws = open_ws(WS)
    found = compute.list_snapshots(ws)
    newest = pq.ParquetFile(ws.root / found[-1]["path"]).metadata.num_row_groups
    if len(found) < 2 or newest < 2:  # two snapshots, written with today's row groups
        from datetime import datetime

        ws.compute(datetime.fromisoformat(EARLIER))
        latest = max(compute.list_snapshots(ws), key=lambda s: s["as_of"])
        ws.compute(latest["as_of"])  # the latest id is again the latest instant
    for snap in compute.list_snapshots(ws):  # written before snapshots had row groups
        path = ws.root / snap["path"]
        if pq.ParquetFile(path).metadata.num_row_groups == 1 and snap["rows"] > 65_536:
            compute.replace_snapshot_file(path, pq.read_table(path))
    applied = defs.applied(ws)
    missing = [t for k, t in TEMPLATES.items() if k not in applied]
    for template in missing:
        defs.save(ws, template, "bench")
    if missing:
        evaluate_all(ws, keys=[t.key for t in missing])
    with ws.control.write() as conn:
        if not any(u["username"] == USER for u in accounts.list_users(conn)):
            accounts.add_user(conn, USER, PASSWORD, "admin")
    _work(ws)
    ws.close()


def _work(ws) -> None:  # type: ignore[no-untyped-def]
    """Deliveries and open tasks for the Actions page, once."""
    import sqlalchemy as sa
    from delivery_log import fill

    from tierwise.store import customer_mirror
    from tierwise.store import tasks as task_store
    from tierwise.store.control import utcnow

    with ws.control.read() as conn:
        made = conn.execute(sa.text("SELECT count(*) FROM outbox")).scalar() or 0
        open_tasks = conn.execute(sa.text("SELECT count(*) FROM tasks WHERE status = 'open'")
                                  ).scalar() or 0
    if made < DELIVERIES:
        fill(ws, DELIVERIES - made)
    if open_tasks < TASKS:
        from datetime import timedelta

        ids = customer_mirror.read(ws.root, ws.control)["customer_id"].slice(
            0, 200_000).to_pylist()[::20]
        now = utcnow()
        with ws.control.write() as conn:
            for i in range(open_tasks, TASKS):
                task_store.create_once(
                    conn, f"bench-{i}", customer_id=ids[i % len(ids)], role="sales",
                    title="回访客户 / call the customer", body=None, source="trigger:bench",
                    priority="normal", due_at=now + timedelta(hours=(i % 3 - 1) * 48),
                    at=now - timedelta(days=3))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--warmup", type=float, default=30.0,
                        help="Seconds to wait after start before measuring.")
    args = parser.parse_args()
    prepare()
    port = _port()
    server = subprocess.Popen([sys.executable, "-m", "tierwise.cli.main", "serve", "-w", str(WS),
                               "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{base}/health", timeout=1)
                break
            time.sleep(0.1)
        # The server computes the latest snapshot's figures in the background at start
        # (and after every compute run); measure pages once that is done.
        time.sleep(args.warmup)
        with httpx.Client(base_url=base, timeout=120) as client:
            client.post("/v1/auth/login", json={"username": USER, "password": PASSWORD}
                        ).raise_for_status()

            weight: dict[str, int] = {}

            def timed(path: str) -> float:
                time.sleep(0.06)  # a signed-in person may make 20 requests a second
                start = time.perf_counter()
                answer = client.get(path)
                answer.raise_for_status()
                weight[path] = len(answer.content)
                return (time.perf_counter() - start) * 1000

            health = median([timed("/health") for _ in range(args.repeat)])
            some = client.get("/v1/customers", params={"limit": 1}).json()["items"][0]
            segment = client.get("/v1/segments").json()[0]["key"]
            rows: list[dict[str, object]] = []
            for page in PAGES:
                path = page.format(some_customer=some["customer_id"], some_segment=segment,
                                   some_city=some["city"])
                first = timed(path)
                warm = [timed(path) for _ in range(args.repeat)]
                ranked = sorted(warm)
                rows.append({"page": path, "first_ms": round(first, 1),
                             "warm_median_ms": round(median(warm), 1),
                             "warm_p95_ms": round(ranked[round(0.95 * (len(ranked) - 1))], 1),
                             "warm_max_ms": round(max(warm), 1),
                             "ratio_to_health": round(median(warm) / health, 1),
                             "html_kb": round(weight[path] / 1024, 1)})
            rows.append({"page": "/health (baseline)", "warm_median_ms": round(health, 2)})
            script = client.get("/static/build/app.js")
            rows.append({"page": "/static/build/app.js (every page, cached)",
                         "kb": round(len(script.content) / 1024, 1)})
    finally:
        server.terminate()
        server.wait(30)
    from tierwise import open as open_ws
    from tierwise.dashboard.data import Views, warm

    ws = open_ws(WS)
    start = time.perf_counter()
    warm(Views().get(ws), "zh-CN")
    rows.append({"page": "(background) load the latest snapshot and compute every figure",
                 "seconds": round(time.perf_counter() - start, 2)})
    report("dashboard_pages_1m", rows)


if __name__ == "__main__":
    main()
