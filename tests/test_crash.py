"""Nothing lost when the server is killed (SIGKILL) during intake and during delivery."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import sqlalchemy as sa
from tests.receivers import webhook_receiver
from tests.test_serve import _free_port

import tierwise
from tierwise.actions import catalog as automations
from tierwise.segments import catalog as defs
from tierwise.segments.vocabulary import vocabulary
from tierwise.store import accounts
from tierwise.store.tables import outbox, segment_history

CUSTOMERS = 60
CLICKS = 3  # each customer enters the segment with its third click


def _start(root: Path, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([sys.executable, "-m", "tierwise.cli.main", "serve", "-w", str(root),
                               "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
    for _ in range(400):
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return server
        except httpx.HTTPError:
            time.sleep(0.05)
    server.kill()
    raise AssertionError("the server did not start")


def _kill(server: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server and its worker process at once, as a machine failure would."""
    import psutil

    children = psutil.Process(server.pid).children(recursive=True)
    assert children, "the server runs its worker in a child process"
    os.kill(server.pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(signal.SIGKILL)
    server.wait(10)
    psutil.wait_procs(children, timeout=10)


def test_sigkill_during_intake_and_delivery_loses_nothing(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    ws = tierwise.init(root, webhook_allowed_targets=["127.0.0.1"])  # the receiver's host
    defs.save(ws, defs.SegmentDefinition(
        key="clickers", rule=f"COUNT(events WHERE type = 'click') >= {CLICKS}"))
    with webhook_receiver() as hook:
        hook.delay = 0.15
        words = vocabulary(ws)
        with ws.control.write() as conn:
            automations.save(conn, "trigger", automations.parse_definition("trigger", {
                "key": "clicked", "on": {"event": "enter", "segment": "clickers"},
                "action": {"type": "webhook", "url": hook.url}}, "test"),
                allowed_targets=ws.config.webhook_allowed_targets, vocabulary=words)
            key = accounts.create_key(conn, "load", "admin", "test",
                                      rate_per_second=10_000).secret
        ws.close()
        port = _free_port()
        headers = {"Authorization": f"Bearer {key}"}
        base = f"http://127.0.0.1:{port}"
        batches = [[{"event_id": f"E{n}-{c}", "customer_id": f"K{c:03d}", "type": "click",
                     "occurred_at": "2026-01-01T10:00:00+00:00"}
                    for c in range(CUSTOMERS)[part::4]]
                   for n in range(CLICKS) for part in range(4)]
        accepted: set[str] = set()

        def post(batch: list[dict[str, str]]) -> bool:
            try:
                answer = httpx.post(f"{base}/v1/events", json=batch, headers=headers,
                                    timeout=10)
            except httpx.HTTPError:
                return False
            if answer.status_code == 202:
                accepted.update(e["event_id"] for e in batch)
                return True
            return False

        # 1. killed while batches arrive: the first half goes in, then a kill mid-stream
        server = _start(root, port)
        half = len(batches) // 2
        for batch in batches[:half]:
            assert post(batch)
        killer = threading.Timer(0.05, _kill, args=(server,))
        killer.start()
        unsent = [b for b in batches[half:] if not post(b)]
        killer.join()
        server.wait(10)

        # 2. restarted; the rest is posted again (repeats are harmless), then a kill while
        # the slow receiver has deliveries in flight
        server = _start(root, port)
        for batch in unsent:
            assert post(batch)
        for _ in range(600):
            if len(hook.received) >= CUSTOMERS // 4:
                break
            time.sleep(0.05)
        assert hook.received, "nothing was delivered before the second kill"
        _kill(server)
        delivered_before_kill = len(hook.received)

        # 3. restarted: everything settles
        hook.delay = 0.0
        server = _start(root, port)
        try:
            for _ in range(600):
                status = httpx.get(f"{base}/v1/realtime", headers=headers, timeout=5).json()
                if not status["pending_intake"] and status["outbox"]["pending"] == 0 \
                        and status["outbox"]["delivered"] == CUSTOMERS:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError(f"did not settle: {status}")
        finally:
            server.terminate()
            server.wait(20)

    ws = tierwise.open(root)
    try:
        stored = set(ws.sql("SELECT event_id FROM events")["event_id"].to_pylist())
        assert accepted <= stored, f"lost {sorted(accepted - stored)[:5]}"
        assert len(accepted) == CUSTOMERS * CLICKS
        with ws.control.read() as conn:
            stays = conn.execute(sa.select(segment_history.c.customer_id).where(
                segment_history.c.segment_key == "clickers")).all()
            rows = conn.execute(sa.select(outbox)).all()
        per_customer = defaultdict(int)
        for (customer,) in stays:
            per_customer[customer] += 1
        assert len(per_customer) == CUSTOMERS and set(per_customer.values()) == {1}
        assert len(rows) == CUSTOMERS and {r.status for r in rows} == {"delivered"}
        keys = {r.customer_id: r.idempotency_key for r in rows}
        received: dict[str, set[str]] = defaultdict(set)
        for item in hook.received:
            received[item["body"]["customer_id"]].add(item["headers"]["Idempotency-Key"])
        assert received.keys() == keys.keys()
        assert all(received[c] == {keys[c]} for c in keys)  # repeats carry the same key
        assert len(hook.received) >= CUSTOMERS
        assert delivered_before_kill < CUSTOMERS
    finally:
        ws.close()
