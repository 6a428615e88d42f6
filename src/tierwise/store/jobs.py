"""Jobs: long operations (imports, computations) and what became of them.

Each job records the process that runs it (``host:pid:start``) and the temporary folder of
its upload, so that a server starting after a crash can tell which jobs died with their
process: those are marked failed with the reason, and their uploads deleted
(``recover``). Jobs of processes that still run, or run on another host, are left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tierwise.store.control import as_utc, utcnow
from tierwise.store.tables import jobs

#: Where uploads wait; only folders there with this prefix are ever deleted by ``recover``.
UPLOAD_PREFIX = "tierwise-upload-"


def _started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None where
    that cannot be read; with the pid it names one process even when pids are reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def this_process() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_started(pid) or ''}"


def _alive(runner: str) -> bool | None:
    """Whether the process a runner names still runs: None when it ran on another host."""
    parts = runner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return None
    pid, started = int(parts[1]), parts[2]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    return not started or _started(pid) == started


def create(conn: sa.Connection, kind: str, params: dict[str, Any], actor: str,
           upload_folder: Path | None = None) -> int:
    return int(conn.execute(jobs.insert().values(
        kind=kind, status="queued", progress=0, created_by=actor, created_at=utcnow(),
        params=json.dumps(params, ensure_ascii=False, default=str), runner=this_process(),
        upload_folder=str(upload_folder) if upload_folder else None,
    )).inserted_primary_key[0])  # type: ignore[index]


def update(conn: sa.Connection, job_id: int, **values: Any) -> None:
    if values.get("status") in ("done", "failed"):
        values.setdefault("finished_at", utcnow())
    conn.execute(jobs.update().where(jobs.c.job_id == job_id).values(values))


def view(row: Any) -> dict[str, Any]:
    item = {k: v for k, v in row._mapping.items() if k not in ("runner", "upload_folder")}
    item["params"] = json.loads(item["params"])
    item["result"] = json.loads(item["result"]) if item["result"] else None
    for key in ("created_at", "finished_at"):
        item[key] = as_utc(item[key])
    return item


def get(conn: sa.Connection, job_id: int, kind: str | None = None) -> dict[str, Any] | None:
    query = sa.select(jobs).where(jobs.c.job_id == job_id)
    if kind is not None:
        query = query.where(jobs.c.kind == kind)
    row = conn.execute(query).first()
    return view(row) if row else None


def recent(conn: sa.Connection, limit: int, kind: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(jobs).order_by(jobs.c.job_id.desc()).limit(limit)
    if kind is not None:
        query = query.where(jobs.c.kind == kind)
    return [view(r) for r in conn.execute(query)]


def remove_upload(folder: str | None) -> None:
    """Delete a job's upload folder: only a folder of uploads in the temporary directory."""
    if not folder:
        return
    path = Path(folder)
    if path.parent == Path(tempfile.gettempdir()) and path.name.startswith(UPLOAD_PREFIX):
        shutil.rmtree(path, ignore_errors=True)


def recover(conn: sa.Connection, alive: Callable[[str], bool | None] = _alive) -> list[int]:
    """Mark failed the queued and running jobs whose process is gone (on this host), with
    the reason, and delete their uploads; returns their ids. Jobs recorded before runners
    were (no runner) count as gone: no process of this version runs them."""
    found = conn.execute(sa.select(jobs.c.job_id, jobs.c.status, jobs.c.runner,
                                   jobs.c.upload_folder)
                         .where(jobs.c.status.in_(["queued", "running"]))).all()
    failed = []
    for row in found:
        state = alive(row.runner) if row.runner else False
        if state is not False:
            continue
        pid = row.runner.split(":")[-2] if row.runner else "unknown"
        update(conn, row.job_id, status="failed",
               error=f"the server stopped while this job was {row.status} (process {pid} is "
                     "gone): it did not finish (an import applies all or nothing); run it "
                     "again")
        remove_upload(row.upload_folder)
        failed.append(int(row.job_id))
    return failed
