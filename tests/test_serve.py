"""`tierwise serve` as a real process on loopback."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

import tierwise
from tierwise.store import accounts


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
    server = subprocess.Popen([sys.executable, "-m", "tierwise.cli.main", "serve", "-w",
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
            assert client.get("/v1/customers", params={"q": "secret.person@mail.test"}
                              ).status_code == 200
    finally:
        server.terminate()
        server.wait(20)
    logged = server.stdout.read().decode() if server.stdout else ""
    assert '"GET /v1/customers?q=… HTTP' not in logged  # not uvicorn's line …
    assert '"GET /v1/customers?q=…" 200' in logged  # … but tierwise's, without the value
    assert "secret.person" not in logged


def test_the_worker_runs_in_a_child_process_that_never_outlives_the_server(
        tmp_path: Path) -> None:
    """`serve` runs the real-time worker in a child process: posted events wake it, its
    counters come back to `GET /v1/realtime`, and it stops with the server — also when the
    server is killed outright."""
    import psutil

    from tierwise.segments import catalog as defs

    ws = tierwise.init(tmp_path / "ws")
    defs.save(ws, defs.SegmentDefinition(key="clickers", rule="COUNT(events WHERE "
                                         "type = 'click') >= 1"))
    with ws.control.write() as conn:
        secret = accounts.create_key(conn, "t", "admin", "test").secret
    ws.close()

    def start() -> tuple[subprocess.Popen[bytes], str]:
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "tierwise.cli.main", "serve", "-w",
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


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made here (no network, no openssl)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _serving(root: Path, port: int, *options: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tierwise.cli.main", "serve", "-w", str(root),
                             "--port", str(port), *options], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})


def _wait(base: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(f"{base}/health", timeout=1, verify=False).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"{base} did not answer")


def _login_cookie(client: httpx.Client, **headers: str) -> str:
    answer = client.post("/v1/auth/login", json={"username": "ops",
                                                 "password": "a-long-password"},
                         headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.headers["set-cookie"].lower()


def test_cookies_are_secure_behind_an_https_proxy_and_with_tls(tmp_path: Path) -> None:
    ws = tierwise.init(tmp_path / "ws")
    with ws.control.write() as conn:
        accounts.add_user(conn, "ops", "a-long-password", "admin")
    ws.close()
    port = _free_port()
    server = _serving(tmp_path / "ws", port, "--proxy-headers", "--forwarded-allow-ips",
                      "127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(base)
        with httpx.Client(base_url=base) as client:
            behind = _login_cookie(client, **{"X-Forwarded-Proto": "https"})
            assert "secure" in behind
            to_login = client.get("/rfm", headers={"X-Forwarded-Proto": "https"},
                                  follow_redirects=False)
            assert to_login.status_code == 303
            assert "strict-transport-security" in to_login.headers
            assert "secure" not in _login_cookie(client)  # plain HTTP on loopback: not
    finally:
        server.terminate()
        server.wait(20)
    cert, key = _self_signed(tmp_path)
    port = _free_port()
    server = _serving(tmp_path / "ws", port, "--ssl-certfile", str(cert), "--ssl-keyfile",
                      str(key))
    base = f"https://127.0.0.1:{port}"
    try:
        _wait(base)
        with httpx.Client(base_url=base,
                          verify=ssl.create_default_context(cafile=str(cert))) as client:
            assert "secure" in _login_cookie(client)
            assert client.get("/health").headers["strict-transport-security"]
    finally:
        server.terminate()
        server.wait(20)
    failed = subprocess.run([sys.executable, "-m", "tierwise.cli.main", "serve", "-w",
                             str(tmp_path / "ws"), "--ssl-certfile", str(cert)],
                            capture_output=True, text=True)
    assert failed.returncode == 1 and "--ssl-keyfile" in failed.stderr
