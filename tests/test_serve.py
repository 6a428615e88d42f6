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
            assert client.get("/v1/customers").json() == {"items": [], "next_after": None}
    finally:
        server.terminate()
        server.wait(20)
