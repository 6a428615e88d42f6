"""Long operations (imports, computations) run in a worker thread and report progress in the
``jobs`` table, so any API process — and the dashboard — can follow them. A runner that
starts marks failed the jobs whose process died (``store.jobs.recover``)."""

from __future__ import annotations

import contextvars
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import Request

from tierwise.definitions.json_values import jsonable
from tierwise.errors import ImportRejected, TierwiseError, say
from tierwise.ingest.report import reject_report_path
from tierwise.store import jobs as job_store
from tierwise.workspace import Workspace

log = logging.getLogger("tierwise.api")
Progress = Callable[[int], None]
PROGRESS_EVERY = 1.0  # seconds between progress writes


class JobRunner:
    def __init__(self, ws: Workspace, workers: int = 1) -> None:
        self.ws = ws
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tierwise-job")
        with ws.control.write() as conn:
            recovered = job_store.recover(conn)
        if recovered:
            log.warning("marked failed %d job(s) whose process had stopped: %s",
                        len(recovered), ", ".join(map(str, recovered)))

    def submit(self, kind: str, params: dict[str, Any], actor: str,
               work: Callable[[int, Progress], dict[str, Any]],
               upload_folder: Path | None = None) -> int:
        """Run ``work`` in the background as a new job; ``upload_folder`` (a temporary
        folder of the upload it reads) is deleted when the job ends, or by the recovery
        after a crash."""
        with self.ws.control.write() as conn:
            job_id = job_store.create(conn, kind, params, actor, upload_folder)
        # in the submitter's context: its language words the job's errors and reports
        self.pool.submit(contextvars.copy_context().run, self._run, job_id, work,
                         upload_folder)
        return job_id

    def _set(self, job_id: int, **values: Any) -> None:
        with self.ws.control.write() as conn:
            job_store.update(conn, job_id, **values)

    def _run(self, job_id: int, work: Callable[[int, Progress], dict[str, Any]],
             upload_folder: Path | None) -> None:
        last = [0.0]
        lock = threading.Lock()

        def progress(rows: int) -> None:
            now = time.monotonic()
            with lock:
                if now - last[0] < PROGRESS_EVERY:
                    return
                last[0] = now
            self._set(job_id, progress=rows)

        try:
            self._set(job_id, status="running")
            result = work(job_id, progress)
            self._set(job_id, status="done",
                      result=json.dumps(jsonable(result), ensure_ascii=False, default=str))
        except ImportRejected as exc:
            # The rejected values stay in the report file (which erasure scrubs), not here.
            rejects = [{k: v for k, v in r.items() if k != "value"} for r in exc.rejects[:100]]
            first = rejects[0] if rejects else {}
            error = say(f"{exc.total:,} row(s) rejected, nothing imported; first: row "
                        f"{first.get('row')}, column {first.get('column')!r}: "
                        f"{first.get('reason')}",
                        f"{exc.total:,} 行被拒绝，未导入任何数据；第一处：第 {first.get('row')} "
                        f"行，列 {first.get('column')!r}：{first.get('reason')}")
            self._set(job_id, status="failed", error=error,
                      result=json.dumps(jsonable({"rejected_rows": exc.total,
                                                  "rejects": rejects,
                                                  "report": exc.report_path is not None}),
                                        ensure_ascii=False, default=str))
        except TierwiseError as exc:
            self._set(job_id, status="failed", error=str(exc))
        except Exception as exc:
            log.exception("job %s failed", job_id)
            self._set(job_id, status="failed", error=f"internal error: {type(exc).__name__}")
        finally:
            if upload_folder is not None:
                shutil.rmtree(upload_folder, ignore_errors=True)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True)


def get_job(ws: Workspace, job_id: int) -> dict[str, Any] | None:
    with ws.control.read() as conn:
        found = job_store.get(conn, job_id)
    return jsonable(found) if found else None  # type: ignore[no-any-return]


def runner(request: Request) -> JobRunner:
    jobs_: JobRunner = request.app.state.jobs
    return jobs_


def rejects_path(ws: Workspace, job_id: int) -> Path:
    return reject_report_path(ws.root, f"job-{job_id}-rejects.csv")
