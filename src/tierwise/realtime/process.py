"""The worker in a child process of ``tierwise serve``.

``tierwise serve`` runs the worker in a child process (``WorkerProcess``), so that the
API's request threads and the worker's loop do not take turns on one interpreter lock:
under a sustained 2,000 events/s that cut the answer time of ``POST /v1/events`` and the
whole path from a 2xx to the membership by more than half. Two pipes join them: the
server writes a byte to wake the loop when rows arrive (the child stops when that pipe
closes, so it never outlives its server), and the child writes its counters back twice a
second.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime

from tierwise.realtime.stats import Stats
from tierwise.realtime.worker import Worker
from tierwise.workspace import Workspace

log = logging.getLogger("tierwise.worker")


class WorkerProcess:
    """The worker in a child process (``tierwise worker --wake-fd … --status-fd …``), with
    the same face as ``Worker``: ``start``, ``stop``, ``notify``, ``stats``, ``caught_up``."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.stats = Stats()
        self.caught_up = threading.Event()
        self.process: subprocess.Popen[bytes] | None = None
        self._wake: int | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        wake_read, wake_write = os.pipe()
        status_read, status_write = os.pipe()
        os.set_blocking(wake_write, False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tierwise.cli.main", "worker", "-w", str(self.ws.root),
             "--wake-fd", str(wake_read), "--status-fd", str(status_write)],
            pass_fds=(wake_read, status_write), stdout=subprocess.DEVNULL)
        os.close(wake_read)
        os.close(status_write)
        self._wake = wake_write
        self._reader = threading.Thread(target=self._read_status, args=(status_read,),
                                        name="tierwise-worker-status", daemon=True)
        self._reader.start()

    def _read_status(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as pipe:
            for line in pipe:
                try:
                    self._take(json.loads(line))
                except (ValueError, TypeError):
                    log.warning("unreadable worker status: %r", line[:200])

    def _take(self, status: dict[str, object]) -> None:
        for name, value in status.items():
            if name in ("started_at", "last_sweep_at") and isinstance(value, str):
                value = datetime.fromisoformat(value)
            if hasattr(self.stats, name):
                setattr(self.stats, name, value)
        if status.get("caught_up"):
            self.caught_up.set()
        else:
            self.caught_up.clear()

    def alive(self) -> bool:
        """Whether the child process still runs (false before ``start``)."""
        return self.process is not None and self.process.poll() is None

    def notify(self) -> None:
        if self._wake is None:
            return
        try:
            os.write(self._wake, b"!")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups the loop has not read yet: awake anyway
        except OSError:
            log.warning("the worker process is gone; `tierwise serve` needs a restart")

    def stop(self, timeout: float = 10.0) -> None:
        """Close the wake pipe (the child stops at the end of its round) and wait."""
        if self._wake is not None:
            os.close(self._wake)
            self._wake = None
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._reader is not None:
            self._reader.join(2)


def serve_child(ws: Workspace, wake_fd: int, status_fd: int) -> Worker:
    """The child's side of ``WorkerProcess``: run a worker until the wake pipe closes,
    reporting its counters on the status pipe. Returns the stopped worker."""
    # Ctrl-C in a terminal reaches the whole process group: the server stops this process
    # by closing the pipe, after its own shutdown
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker = Worker(ws)
    done = threading.Event()

    def wakes() -> None:
        with os.fdopen(wake_fd, "rb", buffering=0) as pipe:
            while pipe.read(4096):
                worker.notify()
        done.set()  # the server is gone or stopping

    threading.Thread(target=wakes, name="tierwise-wake", daemon=True).start()
    worker.start()
    with os.fdopen(status_fd, "w", buffering=1) as status:
        try:
            while not done.wait(0.5):
                status.write(json.dumps({**vars(worker.stats),
                                         "caught_up": worker.caught_up.is_set()},
                                        default=str) + "\n")
        except OSError:  # the server is gone
            pass
        finally:
            worker.stop()
    return worker


__all__ = ["WorkerProcess", "serve_child"]
