"""Server time per dashboard page over a 1M-customer workspace.

``python bench/dashboard.py [--repeat 15]``

The workspace is bench/out/ws-seg (built by bench/segments.py: 1M customers, ~5M orders,
one snapshot as of 2026-06-30); here a second snapshot (as of 2026-03-31) is added so the
tier page draws a migration, and the built-in segment templates are saved and evaluated.
``tierwise serve`` runs in its own process; one signed-in client asks for each page once
cold (the first request after start computes the snapshot's aggregates, which are then kept
for as long as the snapshot is the latest) and then ``--repeat`` times warm. The baseline in
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, report  # noqa: E402
from segments import WS, ensure_workspace  # noqa: E402

PAGES = ["/", "/rfm", "/tiers", "/lifecycle", "/clv", "/segments", "/customers",
         "/customers/C000123", "/actions", "/review?period=2026Q2", "/imports"]
USER, PASSWORD = "bench-dashboard", "bench-dashboard-pw"
EARLIER = "2026-03-31T23:59:59+08:00"


def prepare() -> None:
    ensure_workspace()
    from tierwise import open as open_ws
    from tierwise.models import compute
    from tierwise.security import accounts
    from tierwise.segments import definitions as defs
    from tierwise.segments.membership import evaluate_all
    from tierwise.segments.templates import TEMPLATES

    ws = open_ws(WS)
    if len(compute.list_snapshots(ws)) < 2:
        from datetime import datetime

        ws.compute(datetime.fromisoformat(EARLIER))
        latest = max(compute.list_snapshots(ws), key=lambda s: s["as_of"])
        ws.compute(latest["as_of"])  # the latest id is again the latest instant
    applied = defs.applied(ws)
    missing = [t for k, t in TEMPLATES.items() if k not in applied]
    for template in missing:
        defs.save(ws, template, "bench")
    if missing:
        evaluate_all(ws, keys=[t.key for t in missing])
    with ws.control.write() as conn:
        if not any(u["username"] == USER for u in accounts.list_users(conn)):
            accounts.add_user(conn, USER, PASSWORD, "admin")
    ws.close()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    prepare()
    port = _port()
    server = subprocess.Popen([sys.executable, "-m", "tierwise.cli", "serve", "-w", str(WS),
                               "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{base}/health", timeout=1)
                break
            time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=120) as client:
            client.post("/v1/auth/login", json={"username": USER, "password": PASSWORD}
                        ).raise_for_status()

            def timed(path: str) -> float:
                start = time.perf_counter()
                answer = client.get(path)
                answer.raise_for_status()
                return (time.perf_counter() - start) * 1000

            health = median([timed("/health") for _ in range(args.repeat)])
            rows: list[dict[str, object]] = []
            for path in PAGES:
                cold = timed(path)
                warm = [timed(path) for _ in range(args.repeat)]
                rows.append({"page": path, "cold_ms": round(cold, 1),
                             "warm_median_ms": round(median(warm), 1),
                             "warm_max_ms": round(max(warm), 1),
                             "ratio_to_health": round(median(warm) / health, 1)})
            rows.append({"page": "/health (baseline)", "warm_median_ms": round(health, 2)})
    finally:
        server.terminate()
        server.wait(30)
    report("dashboard_pages_1m", rows)


if __name__ == "__main__":
    main()
