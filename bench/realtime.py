"""Real-time intake, incremental segments, time-based exits and webhook deliveries.

    python bench/realtime.py [--rate 2000] [--seconds 600] [--customers 100000]
                             [--new-customers 0.0] [--arrivals] [--round-seconds S]

Workspace bench/out/ws-rt, copied afresh for every run from bench/out/ws-rt-base
(``tierwise demo --customers 100000 --activity 5`` ending yesterday, computed), with 20
active segments (event, order, window, recency, tier and
lifecycle rules). ``tierwise serve`` runs in its own process; a separate load process on
loopback posts events (batches of 100) at a fixed rate, open loop, for a bounded time;
``--new-customers 0.01`` makes 1 % of them come from customers not seen before (each
creates a customer, as sign-ups do).

Measured:
* **intake**: events accepted per second, the POST latency, errors;
* **2xx → membership readable**: twice a second (at a random instant of each half second,
  so that probes see every phase of the worker's rounds) the load process posts one probe
  event for a customer that is in no probe segment yet, then polls
  ``GET /v1/customers/{id}/segments`` every 50 ms until ``bench_rt_probe`` shows up;
  p50 / p99 of that delay (target p99 < 1 s);
* with ``--arrivals``: each probe first writes its customer through ``POST /v1/customers``
  — half copies of the probe customer (merged into it by matching on arrival), half new
  people — and the delay runs from that request to the membership being readable (on the
  customer the copy was merged into); the matching model is trained before the server
  starts;
* **time-based exits**: before the server starts, 60 customers get one event each timed so
  that ``COUNT(events WHERE type = 'rt_expiry', LAST 1d) >= 1`` turns false at known
  instants spread over the run; the lag between each true instant and the ``exited_at``
  the server records (target < 60 s);
* **webhook deliveries per second**: after the load, 5,000 deliveries are queued and timed
  until the server's dispatcher has delivered them to a local receiver process; baseline:
  the same receiver driven directly by 8 client threads (no tierwise in between);
* peak RSS of the server process and its worker process together, and the cores each
  used during the load (CPU seconds over the load's wall time).

The baseline for latencies is ``GET /health`` at the same rate in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_reads import free_port, run_load  # noqa: E402
from common import OUT, report  # noqa: E402

WS = OUT / "ws-rt"
BASE = OUT / "ws-rt-base"
EXPIRY_WINDOW = timedelta(days=1)
PROBES_FOR_EXPIRY = 60

SEGMENTS = {
    "rt_pricing_7d": "COUNT(events WHERE type = 'page_view' AND properties.page = '/pricing', "
                     "LAST 7d) >= 2",
    "rt_pricing_30d": "COUNT(events WHERE type = 'page_view' AND properties.page = '/pricing', "
                      "LAST 30d) >= 5",
    "rt_email_engaged": "COUNT(events WHERE type = 'email_open', LAST 30d) >= 3",
    "rt_email_cold": "COUNT(events WHERE type = 'email_open', LAST 90d) = 0",
    "rt_clickers": "COUNT(events WHERE type = 'click', LAST 1d) >= 3",
    "rt_active_browsers": "COUNT(events, LAST 1d) >= 5",
    "rt_buyers_30d": "COUNT(orders, LAST 30d) >= 1",
    "rt_repeat_90d": "COUNT(orders, LAST 90d) >= 2",
    "rt_big_year": "SUM(orders.amount, LAST 12m) > 5000",
    "rt_lapsed_90": "DAYS_SINCE_LAST(orders) > 90",
    "rt_lapsed_180": "DAYS_SINCE_LAST(orders) > 180",
    "rt_tier_a_quiet": "tier = 'A' AND COUNT(events, LAST 14d) = 0",
    "rt_tier_b_pricing": "tier IN ('A', 'B') AND COUNT(events WHERE type = 'page_view', "
                         "LAST 3d) >= 1",
    "rt_at_risk_active": "lifecycle = 'at_risk' AND COUNT(events, LAST 7d) >= 1",
    "rt_champions": "rfm.segment = 'champions'",
    "rt_shanghai_recent": "city = '上海' AND COUNT(events, LAST 7d) >= 1",
    "rt_vip_engaged": "IN_SEGMENT('rt_big_year') AND IN_SEGMENT('rt_email_engaged')",
    "rt_new_signups": "signup_at > -30d",
    "bench_rt_probe": "COUNT(events WHERE type = 'rt_latency') >= 1",
    "bench_rt_expiry": "COUNT(events WHERE type = 'rt_expiry', LAST 1d) >= 1",
}

LOAD = r"""
# Open-loop event sender plus latency probes, one asyncio process.
import asyncio, json, random, sys, time, uuid

host, port, key, rate, seconds, ids_file, probes_file, out, new_share = sys.argv[1:10]
port, rate, seconds, new_share = int(port), float(rate), float(seconds), float(new_share)
ids = json.load(open(ids_file))
probes = json.load(open(probes_file))
# with --arrivals, each probe first writes a customer (a copy of the probe customer or a new
# person) through POST /v1/customers, and is timed from that request
arrivals = json.load(open(sys.argv[10])) if len(sys.argv) > 10 and sys.argv[10] else None
arrived = []  # (status of the customer POST, whether it was merged into a known customer)
BATCH, CONNECTIONS = 100, 16
TYPES = [("page_view", {"page": "/pricing"}), ("page_view", {"page": "/home"}),
         ("email_open", {}), ("click", {}), ("page_view", {"page": "/docs"})]

async def request(reader, writer, method, url, body=None):
    data = b"" if body is None else json.dumps(body).encode()
    writer.write((f"{method} {url} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                  ).encode() + data)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    payload = await reader.readexactly(length)
    return status, payload

def now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "+00:00"

async def sender(queue, results):
    reader = writer = None
    while True:
        item = await queue.get()
        if item is None:
            return
        batch, start = item
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            status, _ = await request(reader, writer, "POST", "/v1/events", batch)
        except Exception as exc:
            status, writer = type(exc).__name__, None
        results.append((time.perf_counter() - start, status, len(batch)))

async def probe(customer, delays, timeline, arrival=None):
    reader, writer = await asyncio.open_connection(host, port)
    target = customer
    if arrival is not None:  # the clock starts at the customer's creation
        started = time.perf_counter()
        status, body = await request(reader, writer, "POST", "/v1/customers",
                                     {"customers": [arrival]})
        merged = json.loads(body).get("matching", {}).get("merged", []) if status == 200 \
            else []
        customer = target = arrival["customer_id"]
        if merged:  # a copy: the customer it was merged into is the one to watch
            target = merged[0]["survivor_id"]
        arrived.append((status, bool(merged), time.perf_counter() - started))
    event = {"event_id": "probe-" + customer, "customer_id": customer, "type": "rt_latency",
             "occurred_at": now_iso()}
    status, _ = await request(reader, writer, "POST", "/v1/events", [event])
    acked, acked_at, polls, last_get = time.perf_counter(), time.time(), 0, 0.0
    if arrival is not None:
        acked = started
    while time.perf_counter() - acked < 30:
        asked = time.perf_counter()
        status, body = await request(reader, writer, "GET", f"/v1/customers/{target}/segments")
        polls, last_get = polls + 1, time.perf_counter() - asked
        if b"bench_rt_probe" in body:
            delays.append(time.perf_counter() - acked)
            break
        await asyncio.sleep(0.05)
    else:
        delays.append(None)
    # when it was acknowledged (wall clock), how long until seen, the polls it took and
    # how long the last one took: lines a slow probe up with the worker's rounds
    timeline.append((acked_at, delays[-1], polls, last_get))
    writer.close()

async def main():
    queue, results, delays, timeline, tasks = asyncio.Queue(), [], [], [], []
    senders = [asyncio.create_task(sender(queue, results)) for _ in range(CONNECTIONS)]
    rng = random.Random(3)
    t0 = time.perf_counter()
    batches = int(rate * seconds / BATCH)
    next_probe = 0
    # one probe at a random instant of each half second: probes at a fixed period would
    # land at the same phase of the worker's rounds every time (and see the same delay)
    jitter = random.Random(11)
    probe_at = [k * 0.5 + jitter.uniform(0, 0.5) for k in range(len(probes))]
    for i in range(batches):
        start = t0 + i * BATCH / rate
        delay = start - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        stamp = now_iso()
        batch = []
        for _ in range(BATCH):
            kind, props = rng.choice(TYPES)
            customer = (f"new-{uuid.uuid4().hex[:12]}" if new_share and rng.random() < new_share
                        else rng.choice(ids))
            batch.append({"event_id": uuid.uuid4().hex, "customer_id": customer,
                          "type": kind, "properties": props, "occurred_at": stamp})
        queue.put_nowait((batch, start))
        if next_probe < len(probes) and start - t0 >= probe_at[next_probe]:
            tasks.append(asyncio.create_task(probe(
                probes[next_probe], delays, timeline,
                arrivals[next_probe] if arrivals else None)))
            next_probe += 1
    for _ in senders:
        queue.put_nowait(None)
    await asyncio.gather(*senders, *tasks)
    json.dump({"results": results, "delays": delays, "timeline": timeline, "arrived": arrived,
               "elapsed": time.perf_counter() - t0}, open(out, "w"))

asyncio.run(main())
"""

RECEIVER = r"""
# A minimal webhook receiver: counts POSTs, answers 200 at once.
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
count = [0]
lock = threading.Lock()
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        with lock:
            count[0] += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def do_GET(self):
        body = str(count[0]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def tree_rss(process: psutil.Process) -> int:
    """Resident memory of the server and its worker process together."""
    total = 0
    with contextlib.suppress(psutil.NoSuchProcess):
        for member in [process, *process.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += member.memory_info().rss
    return total


def cpu_seconds(server: psutil.Process) -> dict[str, float]:
    """CPU seconds (user + system) so far of the server process and of its worker."""
    found = {"server": 0.0, "worker": 0.0}
    with contextlib.suppress(psutil.NoSuchProcess):
        for member in [server, *server.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = member.cpu_times()
                role = "worker" if "worker" in " ".join(member.cmdline()) else "server"
                found[role] += times.user + times.system
    return found


def ensure_workspace(customers: int) -> None:
    """A fresh copy of the pristine workspace for every run: each run adds its events, and
    the per-batch cost grows with the history (runs on a grown workspace do not compare).
    One pristine workspace per number of customers (``BASE`` holds the default 100,000)."""
    base = BASE if customers == 100_000 else OUT / f"ws-rt-base-{customers}"
    if not (base / "snapshots").exists():
        end = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        subprocess.run([sys.executable, "-m", "tierwise.cli.main", "demo", "-w", str(base),
                        "--customers", str(customers), "--activity", "5", "--seed", "7",
                        "--end", end], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-m", "tierwise.cli.main", "compute", "-w", str(base)],
                       check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(WS, ignore_errors=True)
    shutil.copytree(base, WS)
    # the base was built when the default was 30 s; runs use today's default
    toml = WS / "tierwise.toml"
    toml.write_text(re.sub(r"(?m)^sweep_seconds = \d+$", "sweep_seconds = 10",
                           toml.read_text()))


def arrival_records(probes: list[str]) -> list[dict[str, object]]:
    """For each probe, the customer written before its event: a copy of the probe customer
    as another system types it (even probes) or a new person (odd ones). Trains the
    matching model first, as a workspace that matches arrivals has one."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from tierwise import open as open_ws
    from tierwise.identity import review
    from tierwise.identity.match import find_duplicates

    ws = open_ws(WS)
    find_duplicates(ws, review.LOWER)
    table = ws.table("customers")
    people = {r["customer_id"]: r for r in table.filter(
        pc.is_in(table["customer_id"], pa.array(probes[::2]))).to_pylist()}
    ws.close()
    tag = int(time.time())
    records: list[dict[str, object]] = []
    for i, probe in enumerate(probes):
        if i % 2 == 0 and probe in people:
            row = people[probe]
            records.append({"customer_id": f"copy-{tag}-{i}", "name": row["name"],
                            "phone": row["phone"], "city": row["city"],
                            "email": (row["email"] or "").upper() or None})
        else:
            records.append({"customer_id": f"new-{tag}-{i}", "name": f"新客户{tag % 10_000}{i}",
                            "phone": f"+86139{(tag * 7 + i) % 10**8:08d}", "city": "上海"})
    return records


def prepare(receiver_url: str, seconds: float) -> tuple[str, list[str], list[str],
                                                         dict[str, datetime]]:
    """Segments, the probe trigger, expiring customers; returns the key, customer ids,
    latency-probe customers and the true exit instant of each expiring customer."""
    from dataclasses import replace

    import sqlalchemy as sa

    from tierwise import open as open_ws
    from tierwise.actions import catalog as automations
    from tierwise.config import read_config, write_config
    from tierwise.ingest.readers import RecordsSource
    from tierwise.segments import catalog as defs
    from tierwise.segments.vocabulary import vocabulary
    from tierwise.store import accounts
    from tierwise.store.tables import customers, outbox

    # the receiver listens on loopback, which webhooks may reach only when allowed
    write_config(WS, replace(read_config(WS), webhook_allowed_targets=["127.0.0.1"]))
    ws = open_ws(WS)

    with ws.control.write() as conn:  # receivers of earlier runs are gone
        conn.execute(outbox.update().where(outbox.c.status == "pending").values(status="dead"))
    for key, rule in SEGMENTS.items():
        defs.save(ws, defs.SegmentDefinition(key=key, rule=rule))
    words = vocabulary(ws)
    with ws.control.write() as conn:
        automations.save(conn, "trigger", automations.parse_definition("trigger", {
            "key": "bench_probe_hook", "on": {"event": "enter", "segment": "bench_rt_probe"},
            "action": {"type": "webhook", "url": receiver_url}}, "bench"),
            allowed_targets=ws.config.webhook_allowed_targets, vocabulary=words)
        key = accounts.create_key(conn, "bench-rt", "admin", "bench",
                                  rate_per_second=100_000).secret
        ids = sorted(r[0] for r in conn.execute(sa.select(customers.c.customer_id)))
    rng = random.Random()  # fresh probe customers on every run
    rng.shuffle(ids)
    run_tag = f"{int(time.time())}"
    expiring = ids[:PROBES_FOR_EXPIRY]
    probes = ids[PROBES_FOR_EXPIRY:PROBES_FOR_EXPIRY + int(seconds * 2) + 10]
    others = ids[PROBES_FOR_EXPIRY + len(probes):]
    start = datetime.now(UTC) + timedelta(seconds=90)  # after the server's catch-up
    span = max(60.0, seconds - 120)
    exits: dict[str, datetime] = {}
    rows = []
    for i, customer in enumerate(expiring):
        exit_at = start + timedelta(seconds=span * i / len(expiring))
        exits[customer] = exit_at
        rows.append({"event_id": f"exp-{run_tag}-{i}", "customer_id": customer,
                     "type": "rt_expiry", "occurred_at": (exit_at - EXPIRY_WINDOW).isoformat()})
    ws.import_source("events", RecordsSource.from_dicts("bench expiry", rows))
    ws.close()
    # latency probes need customers never probed before (a rerun uses fresh ones)
    return key, others, [f"{p}" for p in probes], exits


def exit_lags(exits: dict[str, datetime]) -> list[float | None]:
    import sqlalchemy as sa

    from tierwise import open as open_ws
    from tierwise.store.control import as_utc
    from tierwise.store.tables import segment_history

    ws = open_ws(WS)
    with ws.control.read() as conn:
        rows = conn.execute(sa.select(segment_history.c.customer_id, segment_history.c.exited_at)
                            .where(segment_history.c.segment_key == "bench_rt_expiry",
                                   segment_history.c.customer_id.in_(list(exits)))).all()
    ws.close()
    recorded = {r.customer_id: as_utc(r.exited_at) for r in rows if r.exited_at is not None}
    return [(recorded[c] - t).total_seconds() if c in recorded else None
            for c, t in exits.items() if t < datetime.now(UTC)]


def deliveries_per_second(base: str, key: str, receiver: str, count: int = 5000
                          ) -> dict[str, float]:
    """Queue ``count`` webhook deliveries and time the server's dispatcher; the baseline
    posts the same number straight to the receiver from 8 threads."""
    from concurrent.futures import ThreadPoolExecutor

    from tierwise import open as open_ws
    from tierwise.actions.outbox import enqueue
    from tierwise.definitions.automations import Webhook
    from tierwise.store.control import utcnow

    before = int(httpx.get(receiver).text)
    ws = open_ws(WS)
    with ws.control.write() as conn:
        enqueue(conn, "bench:deliveries", "enter", Webhook(type="webhook", url=receiver),
                [{"customer_id": f"D{i}", "segment": "bench"} for i in range(count)], utcnow())
    ws.close()
    t0 = time.perf_counter()
    while int(httpx.get(receiver).text) < before + count:
        time.sleep(0.05)
    served = count / (time.perf_counter() - t0)
    def post(part: range) -> None:
        with httpx.Client(timeout=10) as client:
            for i in part:
                client.post(receiver, json={"i": i})

    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(post, [range(i, count, 8) for i in range(8)]))
    direct = count / (time.perf_counter() - t0)
    return {"deliveries_per_second": round(served, 1),
            "baseline_direct_posts_per_second": round(direct, 1),
            "ratio": round(served / direct, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--new-customers", type=float, default=0.0,
                        help="share of events from customers not seen before (each "
                             "creates one)")
    parser.add_argument("--arrivals", action="store_true",
                        help="each latency probe first writes its customer through "
                             "POST /v1/customers (matched against the others), timed from "
                             "there")
    parser.add_argument("--round-seconds", type=float, default=None,
                        help="realtime_round_seconds for the run (default: the product's)")
    args = parser.parse_args()
    ensure_workspace(args.customers)
    if args.round_seconds is not None:
        toml = WS / "tierwise.toml"
        text = re.sub(r"(?m)^realtime_round_seconds = .*\n", "", toml.read_text())
        toml.write_text(text.replace("[workspace]\n", "[workspace]\nrealtime_round_seconds = "
                                     f"{args.round_seconds}\n", 1))
    receiver_port = free_port()
    receiver_proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(receiver_port)])
    receiver = f"http://127.0.0.1:{receiver_port}/hook"
    key, ids, probes, exits = prepare(receiver, args.seconds)
    from tierwise import open as open_ws

    with open_ws(WS) as ws:
        events_at_start = ws.count("events")
    (OUT / "rt-ids.json").write_text(json.dumps(ids))
    (OUT / "rt-probes.json").write_text(json.dumps(probes))
    arrivals_file = ""
    if args.arrivals:
        arrivals_file = str(OUT / "rt-arrivals.json")
        Path(arrivals_file).write_text(json.dumps(arrival_records(probes), ensure_ascii=False))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = psutil.Popen([sys.executable, "-m", "tierwise.cli.main", "serve", "-w", str(WS),
                           "--port", str(port)], stdout=subprocess.DEVNULL,
                          stderr=open(OUT / "rt-server.log", "w"))  # noqa: SIM115
    peak = 0
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        headers = {"Authorization": f"Bearer {key}"}
        t_catch = time.perf_counter()
        while httpx.get(f"{base}/v1/realtime", headers=headers).json()["worker"][
                "last_sweep_at"] is None:  # the start-up catch-up has run
            time.sleep(0.5)
        catch_up = time.perf_counter() - t_catch
        baseline = run_load(base, key, 20, 30, ["/health"], server, "rt-baseline")
        out = OUT / "rt-load.json"
        cpu_before, load_started = cpu_seconds(server), time.perf_counter()
        load = psutil.Popen([sys.executable, "-c", LOAD, "127.0.0.1", str(port), key,
                             str(args.rate), str(args.seconds), str(OUT / "rt-ids.json"),
                             str(OUT / "rt-probes.json"), str(out),
                             str(args.new_customers), arrivals_file])
        while load.poll() is None:
            peak = max(peak, tree_rss(server))
            time.sleep(0.5)
        cpu_after, load_seconds = cpu_seconds(server), time.perf_counter() - load_started
        cores = {f"{role}_cores": round((cpu_after[role] - cpu_before[role]) / load_seconds, 2)
                 for role in cpu_before}
        status = httpx.get(f"{base}/v1/realtime", headers=headers).json()
        for _ in range(120):  # let intake drain before the delivery phase
            status = httpx.get(f"{base}/v1/realtime", headers=headers).json()
            if not status["pending_intake"]:
                break
            time.sleep(0.5)
        delivery = deliveries_per_second(base, key, receiver)
        peak = max(peak, tree_rss(server))
    finally:
        server.terminate()
        try:
            server.wait(30)
        except psutil.TimeoutExpired:
            print("the server did not stop within 30 s of SIGTERM; killed", file=sys.stderr)
            for child in server.children(recursive=True):
                child.kill()
            server.kill()
        receiver_proc.terminate()
    data = json.loads(out.read_text())
    posts = data["results"]
    ok = [r for r in posts if r[1] == 202]
    latencies = sorted(r[0] for r in ok)
    delays = sorted(d for d in data["delays"] if d is not None)
    lags = [x for x in exit_lags(exits) if x is not None]
    missing = sum(1 for x in exit_lags(exits) if x is None)

    def pct(values: list[float], q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1) \
            if values else float("nan")

    report("realtime", [{
        "customers": args.customers, "events_at_start": events_at_start,
        "segments": len(SEGMENTS), "target_rate": args.rate,
        "seconds": args.seconds, "new_customer_share": args.new_customers,
        "catch_up_seconds": round(catch_up, 1),
        "intake": {"events_accepted": sum(r[2] for r in ok),
                   "events_per_second": round(sum(r[2] for r in ok) / data["elapsed"], 1),
                   "failed_posts": len(posts) - len(ok),
                   "post_p50_ms": pct(latencies, 0.5), "post_p99_ms": pct(latencies, 0.99)},
        "probes_start_at": "POST /v1/customers (matched), then the event" if args.arrivals
        else "the event's 2xx",
        "arrivals": {"posted": len(data["arrived"]),
                     "failed": sum(1 for status, _, _ in data["arrived"] if status != 200),
                     "merged_into_known": sum(1 for _, m, _ in data["arrived"] if m),
                     "post_p50_ms": pct(sorted(s for _, _, s in data["arrived"]), 0.5),
                     "post_p99_ms": pct(sorted(s for _, _, s in data["arrived"]), 0.99)}
        if args.arrivals else None,
        "ack_to_membership": {"probes": len(data["delays"]), "seen": len(delays),
                              "p50_ms": pct(delays, 0.5), "p90_ms": pct(delays, 0.9),
                              "p99_ms": pct(delays, 0.99), "max_ms": pct(delays, 1.0)},
        "baseline_health": {"p50_ms": baseline["p50_ms"], "p99_ms": baseline["p99_ms"]},
        "time_based_exits": {"due": len(lags) + missing, "recorded": len(lags),
                             "lag_p50_s": round(sorted(lags)[len(lags) // 2], 3) if lags
                             else None,
                             "lag_p99_s": round(sorted(lags)[min(len(lags) - 1,
                                                                 int(0.99 * len(lags)))], 3)
                             if lags else None,
                             "lag_max_s": round(max(lags), 3) if lags else None},
        "webhooks": delivery, "worker": status["worker"],
        "cpu_during_load": cores,
        "server_and_worker_peak_rss_mb": round(peak / 1e6)}])


if __name__ == "__main__":
    main()
