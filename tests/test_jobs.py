"""Jobs survive their process only as failures: a server starting after a crash marks the
jobs of dead processes failed, with the reason, and deletes their uploads."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

import tierwise
from tierwise.store import jobs as job_store
from tierwise.store.tables import jobs
from tierwise.web.jobs import JobRunner


def test_jobs_of_a_dead_process_are_failed_and_their_uploads_removed(tmp_path: Path) -> None:
    ws = tierwise.init(tmp_path / "ws")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    gone_pid = int(dead.stdout)
    folder = Path(tempfile.mkdtemp(prefix=job_store.UPLOAD_PREFIX))
    (folder / "orders.csv").write_text("order_id\n", encoding="utf-8")
    with ws.control.write() as conn:
        crashed = job_store.create(conn, "import", {"file": "orders.csv"}, "user:ann",
                                   folder)
        waiting = job_store.create(conn, "compute", {}, "user:ann")
        mine = job_store.create(conn, "compute", {}, "user:ann")
        elsewhere = job_store.create(conn, "compute", {}, "user:ann")
        host = job_store.this_process().rsplit(":", 2)[0]
        conn.execute(jobs.update().where(jobs.c.job_id.in_([crashed, waiting])).values(
            runner=f"{host}:{gone_pid}:123"))
        conn.execute(jobs.update().where(jobs.c.job_id == crashed).values(status="running"))
        conn.execute(jobs.update().where(jobs.c.job_id == elsewhere).values(
            runner="another-host:1:1", status="running"))
        before = job_store.create(conn, "import", {}, "user:ann")
        conn.execute(jobs.update().where(jobs.c.job_id == before).values(runner=None))
    JobRunner(ws).pool.shutdown()  # what a starting server does
    with ws.control.read() as conn:
        state = {j["job_id"]: j for j in job_store.recent(conn, 10)}
    assert state[crashed]["status"] == "failed" and state[waiting]["status"] == "failed"
    assert f"process {gone_pid} is gone" in state[crashed]["error"]
    assert "was running" in state[crashed]["error"] and "was queued" in state[waiting]["error"]
    assert state[before]["status"] == "failed"  # recorded before runners were
    assert state[mine]["status"] == "queued"  # this process: alive
    assert state[elsewhere]["status"] == "running"  # another host: not ours to judge
    assert not folder.exists()
    assert "runner" not in state[mine] and "upload_folder" not in state[mine]
    with ws.control.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar() == 5
    assert os.getpid() != gone_pid
    ws.close()


def test_only_upload_folders_are_ever_deleted(tmp_path: Path) -> None:
    keep = tmp_path / "important"
    keep.mkdir()
    job_store.remove_upload(str(keep))
    job_store.remove_upload("/")
    assert keep.exists()
