"""`tierwise serve` as a real process on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

import tierwise
from tierwise.security import accounts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_on_loopback(tmp_path: Path) -> None:
    ws = tierwise.init(tmp_path / "ws")
    with ws.control.write() as conn:
        accounts.add_user(conn, "ops", "a-long-password", "admin")
    ws.close()
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tierwise.cli", "serve", "-w",
                               str(tmp_path / "ws"), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**os.environ, "NO_COLOR": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                health = httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        assert health.json() == {"status": "ok"}
        assert "server" not in health.headers  # no version banner
        with httpx.Client(base_url=base) as client:
            assert client.get("/v1/customers").status_code == 401
            me = client.post("/v1/auth/login", json={"username": "ops",
                                                     "password": "a-long-password"})
            assert me.status_code == 200
            assert client.get("/v1/customers").json() == {"items": [], "next_after": None,
                                                          "searched_by": []}
    finally:
        server.terminate()
        server.wait(20)


def test_the_worker_runs_in_a_child_process_that_never_outlives_the_server(
        tmp_path: Path) -> None:
    """`serve` runs the real-time worker in a child process: posted events wake it, its
    counters come back to `GET /v1/realtime`, and it stops with the server — also when the
    server is killed outright."""
    import psutil

    from tierwise.segments import definitions as defs

    ws = tierwise.init(tmp_path / "ws")
    defs.save(ws, defs.SegmentDefinition(key="clickers", rule="COUNT(events WHERE "
                                         "type = 'click') >= 1"))
    with ws.control.write() as conn:
        secret = accounts.create_key(conn, "t", "admin", "test").secret
    ws.close()

    def start() -> tuple[subprocess.Popen[bytes], str]:
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "tierwise.cli", "serve", "-w",
                                   str(tmp_path / "ws"), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        for _ in range(400):
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        return server, base

    headers = {"Authorization": f"Bearer {secret}"}
    server, base = start()
    try:
        children = psutil.Process(server.pid).children()
        assert [c.cmdline()[3:4] for c in children] == [["worker"]]
        status = {}
        for _ in range(200):  # caught up once the worker reports its first sweep
            status = httpx.get(f"{base}/v1/realtime", headers=headers).json()["worker"]
            if status["holder"] and status["last_sweep_at"]:
                break
            time.sleep(0.05)
        assert status["holder"] is True
        posted = time.monotonic()
        assert httpx.post(f"{base}/v1/events", headers=headers, json={
            "event_id": "k1", "customer_id": "C1", "occurred_at": "2026-01-01T10:00:00",
            "type": "click"}).status_code == 202
        while time.monotonic() - posted < 20:
            seen = httpx.get(f"{base}/v1/customers/C1/segments", headers=headers)
            if seen.status_code == 200 and any(s["segment_key"] == "clickers" and
                                               s["exited_at"] is None for s in seen.json()):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the posted event never reached the segment")
        assert time.monotonic() - posted < 5  # woken by the post, not by a timer
        for _ in range(40):  # the counters come back twice a second
            status = httpx.get(f"{base}/v1/realtime", headers=headers).json()["worker"]
            if status["rows_moved"]:
                break
            time.sleep(0.1)
        assert status["rows_moved"] == 1 and status["segment_changes"] >= 1
        server.terminate()
        server.wait(20)
        psutil.wait_procs(children, timeout=15)
        assert not any(c.is_running() for c in children)
        # killed outright: the child sees its pipe close and stops by itself
        server, base = start()
        children = psutil.Process(server.pid).children()
        server.kill()
        server.wait(10)
        gone, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, "the worker outlived a killed server"
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(20)
