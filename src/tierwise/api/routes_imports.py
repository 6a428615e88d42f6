"""Imports: upload a file with a mapping, follow its progress, download rejected rows; jobs."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path as FilePath
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse

from tierwise.api import uploads
from tierwise.api.auth import require, workspace
from tierwise.api.jobs import JobRunner, get_job
from tierwise.api.problems import MAX_ID, RESPONSES, Problem
from tierwise.api.views import jsonable
from tierwise.definitions.roles import Principal
from tierwise.definitions.schemas import TABLES
from tierwise.errors import MappingError
from tierwise.ingest.mapping import Mapping
from tierwise.ingest.report import reject_report_path
from tierwise.store import jobs as job_store
from tierwise.store.jobs import UPLOAD_PREFIX
from tierwise.store.tables import imports, mappings
from tierwise.workspace import Workspace

router = APIRouter(tags=["imports"], responses=RESPONSES)
CHUNK = 1 << 20
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def runner(request: Request) -> JobRunner:
    jobs_: JobRunner = request.app.state.jobs
    return jobs_


def rejects_path(ws: Workspace, job_id: int) -> FilePath:
    return reject_report_path(ws.root, f"job-{job_id}-rejects.csv")


def _mapping(ws: Workspace, text: str | None) -> Mapping:
    if not text or not text.strip():
        return Mapping()
    if "\n" in text or ":" in text:
        return Mapping.from_yaml(text, "the mapping field")
    with ws.control.read() as conn:
        spec = conn.execute(sa.select(mappings.c.spec).where(mappings.c.name == text.strip())
                            ).scalar()
    if spec is None:
        raise MappingError(f"no saved mapping named {text.strip()!r}")
    return Mapping.from_yaml(spec, f"saved mapping {text.strip()!r}")


def upload_name(filename: str | None) -> str:
    """A file name safe to create in a folder of one's own: the last part of what the
    client sent, letters, digits, ``._-`` only, no leading dots (so never ``..``).

    >>> upload_name("../../etc/passwd"), upload_name(".."), upload_name("客户 2026.xlsx")
    ('passwd', 'upload', '_2026.xlsx')
    """
    name = _SAFE_NAME.sub("_", FilePath(filename or "").name)[-120:].lstrip(".")
    return name or "upload"


async def save_upload(file: UploadFile) -> FilePath:
    """The uploaded file, saved under its (sanitised) name in a new temporary folder that
    the caller removes; 422 for an empty file. Nothing is left behind when it fails."""
    folder = FilePath(tempfile.mkdtemp(prefix=UPLOAD_PREFIX))
    target = folder / upload_name(file.filename)
    try:
        with target.open("wb") as out:
            while chunk := await file.read(CHUNK):
                out.write(chunk)
        if target.stat().st_size == 0:
            raise Problem(422, f"{file.filename}: the file is empty")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return target


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
    ws = workspace(request)
    if table not in TABLES:
        raise Problem(422, f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
    if unknown_customers not in ("reject", "create"):
        raise Problem(422, "unknown_customers is 'reject' or 'create'")
    uploads.one_of(file, upload_id)
    resolved = _mapping(ws, mapping)
    # Uploads wait outside the workspace and are deleted when the job ends.
    if file is not None:
        target = await save_upload(file)
        name = file.filename
    else:
        assert upload_id is not None
        target, name = uploads.take(ws.root, principal.actor, upload_id)
    folder = target.parent
    params = {"table": table, "file": name, "dry_run": dry_run,
              "unknown_customers": unknown_customers}

    def work(job_id: int, progress: Any) -> dict[str, Any]:
        result = ws.import_file(table, target, mapping=resolved,
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
        rows = conn.execute(sa.select(imports).order_by(imports.c.import_id.desc())
                            .limit(limit)).all()
    return [jsonable({k: v for k, v in r._mapping.items() if k != "mapping"}) for r in rows]


@router.get("/v1/imports/{job_id}/rejects", summary="Rejected rows of an import job (CSV)",
            response_class=FileResponse)
def rejects(job_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request,
            principal: Principal = require("imports:write")) -> FileResponse:
    path = rejects_path(workspace(request), job_id)
    if not path.exists():
        raise Problem(404, f"job {job_id} has no rejected-rows report")
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
        raise Problem(404, f"no job {job_id}")
    return found
