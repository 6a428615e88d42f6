"""Imports: upload a file with a mapping, follow its progress, download rejected rows; jobs."""

from __future__ import annotations

import pathlib
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from tierwise.definitions.json_values import jsonable
from tierwise.definitions.roles import Principal
from tierwise.definitions.schemas import TABLES
from tierwise.errors import MappingError, say
from tierwise.ingest import imports
from tierwise.ingest.mapping import Mapping
from tierwise.store import import_log
from tierwise.store import jobs as job_store
from tierwise.store import mappings as mapping_store
from tierwise.web import uploads
from tierwise.web.auth import require, workspace
from tierwise.web.jobs import get_job, rejects_path, runner
from tierwise.web.problems import MAX_ID, RESPONSES, Problem
from tierwise.web.uploads import save_upload
from tierwise.workspace import Workspace

router = APIRouter(tags=["imports"], responses=RESPONSES)




def _mapping(ws: Workspace, text: str | None) -> Mapping:
    if not text or not text.strip():
        return Mapping()
    if "\n" in text or ":" in text:
        return Mapping.from_yaml(text, "the mapping field")
    with ws.control.read() as conn:
        spec = mapping_store.spec(conn, text.strip())
    if spec is None:
        raise MappingError(f"no saved mapping named {text.strip()!r}",
                           zh=f"没有名为 {text.strip()!r} 的已保存映射")
    return Mapping.from_yaml(spec, f"saved mapping {text.strip()!r}")




@router.post("/v1/imports", status_code=202, summary="Upload a file to import (a job)")
async def upload(
    request: Request,
    file: UploadFile | None = File(None, description="CSV, XLSX, Parquet or JSON Lines"),
    table: str = Form(..., description=f"one of {', '.join(TABLES)}"),
    upload_id: str | None = Form(None, description="instead of the file: a file the import "
                                 "screen's inspection holds (its answer's upload_id)"),
    mapping: str | None = Form(None, description="YAML mapping, or a saved mapping's name"),
    unknown_customers: str = Form("reject", description="reject or create"),
    dry_run: bool = Form(False),
    principal: Principal = require("imports:write"),
) -> dict[str, Any]:
    if table not in TABLES:
        raise Problem(422, say(f"unknown table {table!r}; expected one of {', '.join(TABLES)}",
                               f"未知的表 {table!r}：应为 {', '.join(TABLES)} 之一"))
    if unknown_customers not in ("reject", "create"):
        raise Problem(422, say("unknown_customers is 'reject' or 'create'",
                               "unknown_customers 应为 'reject' 或 'create'"))
    uploads.one_of(file, upload_id)
    # The database and the files are read and written on worker threads: the event loop,
    # which answers every other request, never waits for them.
    resolved = await run_in_threadpool(_mapping, workspace(request), mapping)
    saved = await save_upload(file) if file is not None else None
    return await run_in_threadpool(
        _submit_import, request, principal, table, saved,
        file.filename if file is not None else None, upload_id, resolved,
        unknown_customers, dry_run)


def _submit_import(request: Request, principal: Principal, table: str, saved: pathlib.Path | None,
                   filename: str | None, upload_id: str | None, resolved: Mapping,
                   unknown_customers: str, dry_run: bool) -> dict[str, Any]:
    ws = workspace(request)
    # Uploads wait outside the workspace and are deleted when the job ends.
    if saved is not None:
        target, name = saved, filename
    else:
        assert upload_id is not None
        target, name = uploads.take(ws.root, principal.actor, upload_id)
    folder = target.parent
    params = {"table": table, "file": name, "dry_run": dry_run,
              "unknown_customers": unknown_customers}

    def work(job_id: int, progress: Any) -> dict[str, Any]:
        result = imports.import_file(ws, table, target, mapping=resolved,
                                unknown_customers=unknown_customers, dry_run=dry_run,
                                report_path=rejects_path(ws, job_id), progress=progress)
        return dict(vars(result))

    job_id = runner(request).submit("import", params, principal.actor, work,
                                    upload_folder=folder)
    return {"job_id": job_id, "status_url": f"/v1/jobs/{job_id}"}


@router.get("/v1/imports", summary="Past imports, newest first")
def list_imports(request: Request, limit: int = Query(50, ge=1, le=500),
                 principal: Principal = require("customers:read")) -> list[dict[str, Any]]:
    with workspace(request).control.read() as conn:
        return [jsonable(r) for r in import_log.recent(conn, limit)]


@router.get("/v1/imports/{job_id}/rejects", summary="Rejected rows of an import job (CSV)",
            response_class=FileResponse)
def rejects(job_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request,
            principal: Principal = require("imports:write")) -> FileResponse:
    path = rejects_path(workspace(request), job_id)
    if not path.exists():
        raise Problem(404, say(f"job {job_id} has no rejected-rows report",
                               f"任务 {job_id} 没有被拒绝行的报告"))
    return FileResponse(path, media_type="text/csv", filename=path.name)


@router.get("/v1/jobs", summary="Recent jobs")
def list_jobs(request: Request, limit: int = Query(50, ge=1, le=500),
              principal: Principal = require("customers:read")) -> list[dict[str, Any]]:
    with workspace(request).control.read() as conn:
        return [jsonable(j) for j in job_store.recent(conn, limit)]


@router.get("/v1/jobs/{job_id}", summary="A job's status, progress and result")
def job(job_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request,
        principal: Principal = require("customers:read")) -> dict[str, Any]:
    found = get_job(workspace(request), job_id)
    if found is None:
        raise Problem(404, say(f"no job {job_id}", f"没有任务 {job_id}"))
    return found
