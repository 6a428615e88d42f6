"""Read load on the REST API over a 1M-customer workspace.

``python bench/api_reads.py [--rate 200] [--seconds 300]``

The workspace is bench/out/ws-seg (built by bench/segments.py: 1M customers, ~5M orders),
with three evaluated segments added here. ``tierwise serve`` runs in its own process; a
separate load process sends requests over loopback at a fixed rate (open loop: latency is
measured from each request's scheduled start, so a slow server cannot slow the sender and
hide its own delay). The mix: customer profiles (``GET /v1/customers/{id}``: master data
with PII decrypted, computed values, current segments), a customer's segment history, and
pages of segment members (keyset cursors at random points). The baseline, in the same run
and at the same rate, is ``GET /health``: the server and client floor without any work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, report  # noqa: E402
from segments import AS_OF, WS, ensure_workspace  # noqa: E402

SEGMENTS = {
    "bench_champions": "rfm.segment = 'champions'",
    "bench_big_spenders": "SUM(orders.amount) > 5000",
    "bench_recent": "COUNT(orders, LAST 90d) >= 1",
}

LOAD = r"""
# A lean open-loop client: a dispatcher releases each request at its scheduled instant into
# a queue; a pool of keep-alive connections (HTTP/1.1 over asyncio streams) sends them.
# Latency runs from the scheduled instant to the end of the answer, so time spent waiting
# for a free connection counts against the server, as it would for a real caller.
import asyncio, json, sys, time

host, port, key, rate, seconds, targets_file, out = sys.argv[1:8]
port, rate, seconds = int(port), float(rate), float(seconds)
targets = json.load(open(targets_file))
CONNECTIONS = 64

async def read_answer(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, chunked = None, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if length is not None:
        await reader.readexactly(length)
    elif chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status

async def worker(queue, results):
    reader = writer = None
    while True:
        item = await queue.get()
        if item is None:
            return
        url, start = item
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {url} HTTP/1.1\r\nHost: {host}\r\n"
                         f"Authorization: Bearer {key}\r\n\r\n".encode())
            status = await read_answer(reader)
        except Exception as exc:
            status, writer = type(exc).__name__, None
        results.append((time.perf_counter() - start, status))

async def main():
    queue, results = asyncio.Queue(), []
    workers = [asyncio.create_task(worker(queue, results)) for _ in range(CONNECTIONS)]
    t0 = time.perf_counter()
    for i in range(int(rate * seconds)):
        start = t0 + i / rate
        delay = start - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((targets[i % len(targets)], start))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    json.dump({"results": results, "elapsed": time.perf_counter() - t0}, open(out, "w"))

asyncio.run(main())
"""


def prepare() -> str:
    """Segments evaluated and an analyst key; returns the key."""
    from tierwise import open as open_ws
    from tierwise.segments import catalog as defs
    from tierwise.segments import membership
    from tierwise.store import accounts

    ws = open_ws(WS)
    applied = defs.applied(ws)
    missing = [k for k in SEGMENTS if k not in applied]
    for key in missing:
        definition = defs.SegmentDefinition(key=key, rule=SEGMENTS[key])
        defs.save(ws, definition)
    if missing:
        from datetime import datetime

        membership.evaluate_all(ws, datetime.fromisoformat(AS_OF), keys=list(SEGMENTS))
    with ws.control.write() as conn:
        key = accounts.create_key(conn, "bench", "analyst", "bench",
                                  rate_per_second=100_000).secret
    ws.close()
    return key


def targets(count: int = 20_000) -> list[str]:
    import sqlalchemy as sa

    from tierwise import open as open_ws
    from tierwise.store.tables import customers, segment_members

    ws = open_ws(WS)
    rng = random.Random(7)
    with ws.control.read() as conn:
        ids = [r[0] for r in conn.execute(sa.select(customers.c.customer_id))]
        cursors = {k: [r[0] for r in conn.execute(
            sa.select(segment_members.c.customer_id).where(segment_members.c.segment_key == k))]
            for k in SEGMENTS}
    ws.close()
    out = []
    for i in range(count):
        kind = i % 4
        if kind in (0, 1):
            out.append(f"/v1/customers/{rng.choice(ids)}")
        elif kind == 2:
            out.append(f"/v1/customers/{rng.choice(ids)}/segments")
        else:
            key = rng.choice(list(SEGMENTS))
            after = rng.choice(cursors[key]) if cursors[key] else ""
            out.append(f"/v1/segments/{key}/members?limit=50&after={after}")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_load(base: str, key: str, rate: float, seconds: float, urls: list[str],
             server: psutil.Process, name: str) -> dict[str, object]:
    targets_file = OUT / f"api-targets-{name}.json"
    targets_file.write_text(json.dumps(urls))
    out = OUT / f"api-load-{name}.json"
    host, port = base.removeprefix("http://").split(":")
    load = psutil.Popen([sys.executable, "-c", LOAD, host, port, key, str(rate), str(seconds),
                         str(targets_file), str(out)])
    client_cpu = 0.0
    peak = 0
    while load.poll() is None:
        with contextlib.suppress(psutil.NoSuchProcess):  # workers are children of the server
            peak = max(peak, sum(p.memory_info().rss
                                 for p in [server, *server.children(recursive=True)]))
        with contextlib.suppress(psutil.NoSuchProcess):
            client_cpu = sum(load.cpu_times()[:2])
        time.sleep(0.2)
    if load.returncode != 0:
        raise RuntimeError(f"load process failed ({load.returncode})")
    data = json.loads(out.read_text())
    latencies = sorted(r[0] for r in data["results"])
    errors = sum(1 for r in data["results"] if r[1] != 200)

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)

    return {"requests": len(latencies), "errors": errors,
            "achieved_rate": round(len(latencies) / data["elapsed"], 1),
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
            "max_ms": round(latencies[-1] * 1000, 2), "server_peak_rss_mb": round(peak / 1e6),
            "load_client_cpu_seconds": round(client_cpu, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--workers", type=int, default=1, help="tierwise serve --workers")
    args = parser.parse_args()
    ensure_workspace()
    key = prepare()
    urls = targets()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = psutil.Popen([sys.executable, "-m", "tierwise.cli.main", "serve", "-w", str(WS),
                           "--port", str(port), "--workers", str(args.workers)],
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        # Warm up: the first profile read loads the latest snapshot (1M rows) into memory.
        httpx.get(f"{base}{urls[0]}", headers={"Authorization": f"Bearer {key}"}, timeout=120)
        baseline = run_load(base, key, args.rate, min(args.seconds, 60), ["/health"], server,
                            "baseline")
        reads = run_load(base, key, args.rate, args.seconds, urls, server, "reads")
    finally:
        server.terminate()
        server.wait(30)
    reads["p50_over_baseline"] = round(float(reads["p50_ms"]) / float(baseline["p50_ms"]), 2)  # type: ignore[arg-type]
    reads["p99_over_baseline"] = round(float(reads["p99_ms"]) / float(baseline["p99_ms"]), 2)  # type: ignore[arg-type]
    report("api_reads", [{"rate": args.rate, "seconds": args.seconds, "workers": args.workers,
                          "baseline_health": baseline, "profile_and_membership_reads": reads}])


if __name__ == "__main__":
    main()
