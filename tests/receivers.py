"""Local receivers for action tests: a webhook endpoint and an SMTP server on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Hook:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    #: Status codes to answer with, in turn (then 200).
    answers: list[int] = field(default_factory=list)
    #: Seconds to wait before answering (a slow receiver keeps deliveries in flight).
    delay: float = 0.0
    #: The body of every answer.
    reply: bytes = b"ok"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r["body"] for r in self.received]


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """An HTTP server on a free loopback port, answering with ``handler`` in a thread of its
    own while the block runs; yields the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def webhook_receiver() -> Iterator[Hook]:
    hook = Hook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            if hook.delay:
                time.sleep(hook.delay)
            with hook.lock:
                status = hook.answers.pop(0) if hook.answers else 200
                hook.received.append({"headers": dict(self.headers), "raw": raw,
                                      "body": json.loads(raw), "status": status})
            self.send_response(status)
            self.end_headers()
            self.wfile.write(hook.reply)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as port:
        hook.url = f"http://127.0.0.1:{port}/hook"
        yield hook


@dataclass
class Mailbox:
    port: int
    messages: list[Message] = field(default_factory=list)


@contextmanager
def smtp_receiver() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox(0)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            box.messages.append(message_from_bytes(envelope.content, policy=policy.default))
            return "250 OK"

    with socket.socket() as probe:  # a free port (the controller checks it by connecting)
        probe.bind(("127.0.0.1", 0))
        box.port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
