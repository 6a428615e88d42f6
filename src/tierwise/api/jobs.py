"""Long operations (imports, computations) run in a worker thread and report progress in the
``jobs`` table, so any API process — and the dashboard — can follow them."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

from tierwise.api.views import jsonable
from tierwise.errors import ImportRejected, TierwiseError
from tierwise.store.control import as_utc, utcnow
from tierwise.store.tables import jobs
from tierwise.workspace import Workspace

log = logging.getLogger("tierwise.api")
Progress = Callable[[int], None]
PROGRESS_EVERY = 1.0  # seconds between progress writes


class JobRunner:
    def __init__(self, ws: Workspace, workers: int = 1) -> None:
        self.ws = ws
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tierwise-job")

    def submit(self, kind: str, params: dict[str, Any], actor: str,
               work: Callable[[int, Progress], dict[str, Any]],
               cleanup: Callable[[], None] | None = None) -> int:
        with self.ws.control.write() as conn:
            job_id = int(conn.execute(jobs.insert().values(
                kind=kind, status="queued", progress=0, created_by=actor, created_at=utcnow(),
                params=json.dumps(params, ensure_ascii=False, default=str),
            )).inserted_primary_key[0])  # type: ignore[index]
        self.pool.submit(self._run, job_id, work, cleanup)
        return job_id

    def _set(self, job_id: int, **values: Any) -> None:
        with self.ws.control.write() as conn:
            conn.execute(jobs.update().where(jobs.c.job_id == job_id).values(values))

    def _run(self, job_id: int, work: Callable[[int, Progress], dict[str, Any]],
             cleanup: Callable[[], None] | None) -> None:
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
            self._set(job_id, status="done", finished_at=utcnow(),
                      result=json.dumps(jsonable(result), ensure_ascii=False, default=str))
        except ImportRejected as exc:
            # The rejected values stay in the report file (which erasure scrubs), not here.
            rejects = [{k: v for k, v in r.items() if k != "value"} for r in exc.rejects[:100]]
            first = rejects[0] if rejects else {}
            error = (f"{exc.total:,} row(s) rejected, nothing imported; first: row "
                     f"{first.get('row')}, column {first.get('column')!r}: {first.get('reason')}")
            self._set(job_id, status="failed", finished_at=utcnow(), error=error,
                      result=json.dumps(jsonable({"rejected_rows": exc.total,
                                                  "rejects": rejects,
                                                  "report": exc.report_path is not None}),
                                        ensure_ascii=False, default=str))
        except TierwiseError as exc:
            self._set(job_id, status="failed", finished_at=utcnow(), error=str(exc))
        except Exception as exc:
            log.exception("job %s failed", job_id)
            self._set(job_id, status="failed", finished_at=utcnow(),
                      error=f"internal error: {type(exc).__name__}")
        finally:
            if cleanup is not None:
                cleanup()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True)


def job_view(row: Any) -> dict[str, Any]:
    item = dict(row._mapping)
    item["params"] = json.loads(item["params"])
    item["result"] = json.loads(item["result"]) if item["result"] else None
    for key in ("created_at", "finished_at"):
        item[key] = as_utc(item[key])
    return jsonable(item)  # type: ignore[no-any-return]


def get_job(ws: Workspace, job_id: int) -> dict[str, Any] | None:
    with ws.control.read() as conn:
        row = conn.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).first()
    return job_view(row) if row else None
