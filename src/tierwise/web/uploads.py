"""Uploads held between the import screen's inspection and the import itself, so that a
browser sends a file once: the inspection keeps what it read and answers with an
``upload_id``, which ``POST /v1/imports`` (and a second inspection, for another table)
accepts instead of the file.

A held upload belongs to the principal who sent it and to the workspace it was sent to;
it is deleted when an import takes it, or ``KEEP`` after it was sent. Held uploads wait
outside the workspace, like every upload.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from fastapi import UploadFile

from tierwise.errors import say
from tierwise.store.jobs import UPLOAD_PREFIX
from tierwise.web.problems import Problem

KEEP = timedelta(hours=1)
_ID = re.compile(r"[A-Za-z0-9_-]{22}")
_META = ".held.json"


def root() -> Path:
    return Path(tempfile.gettempdir()) / "tierwise-held"


def hold(workspace: Path, actor: str, upload: Path, sent_as: str) -> str:
    """Keep ``upload`` (a file alone in its temporary folder, as ``save_upload`` leaves
    it; ``sent_as``: the name the client gave it) for ``actor`` in ``workspace``; returns
    its id."""
    expire()
    upload_id = secrets.token_urlsafe(16)
    meta = {"actor": actor, "workspace": str(workspace.resolve()), "name": upload.name,
            "sent_as": sent_as}
    (upload.parent / _META).write_text(json.dumps(meta), "utf-8")
    root().mkdir(parents=True, exist_ok=True)
    os.replace(upload.parent, root() / upload_id)
    return upload_id


def _folder(workspace: Path, actor: str, upload_id: str) -> tuple[Path, dict[str, str]]:
    missing = Problem(404, f"no upload {upload_id!r} (an upload is kept for "
                           f"{KEEP.total_seconds() / 3600:g} h after it is sent, until an "
                           "import takes it): send the file again")
    folder = root() / upload_id
    if not _ID.fullmatch(upload_id) or not folder.is_dir():
        raise missing
    try:
        meta = json.loads((folder / _META).read_text("utf-8"))
    except (OSError, ValueError):
        raise missing from None
    if meta.get("actor") != actor or meta.get("workspace") != str(workspace.resolve()):
        raise missing  # another principal's (or workspace's) upload is not named to them
    return folder, meta


def one_of(file: object | None, upload_id: str | None) -> None:
    """A request names its file once: sent with it, or by a held upload's id."""
    if (file is None) == (upload_id is None):
        raise Problem(422, say("send either the file or the upload_id of a held upload",
                               "请发送文件，或发送已保留上传的 upload_id"))


def find(workspace: Path, actor: str, upload_id: str) -> tuple[Path, str]:
    """The held file, which stays held (another inspection may read it again), and the
    name it was sent as."""
    folder, meta = _folder(workspace, actor, upload_id)
    return folder / meta["name"], meta["sent_as"]


def take(workspace: Path, actor: str, upload_id: str) -> tuple[Path, str]:
    """The held file, moved to a new temporary folder that the caller removes, and the
    name it was sent as: an upload is imported at most once (a second ``take`` of the same
    id finds nothing)."""
    folder, meta = _folder(workspace, actor, upload_id)
    target = Path(tempfile.mkdtemp(prefix=UPLOAD_PREFIX))
    try:  # onto the new empty folder, atomically: of two takes at once, one wins
        os.replace(folder, target)
    except OSError:
        shutil.rmtree(target, ignore_errors=True)
        raise Problem(404, say(f"no upload {upload_id!r}: an import took it already",
                               f"没有上传 {upload_id!r}：已被某次导入使用")) from None
    return target / meta["name"], meta["sent_as"]


def expire(now: float | None = None) -> int:
    """Delete held uploads older than ``KEEP``; returns how many."""
    now = time.time() if now is None else now
    gone = 0
    for folder in root().glob("*") if root().is_dir() else ():
        try:
            sent = (folder / _META).stat().st_mtime
        except OSError:
            sent = folder.stat().st_mtime
        if now - sent > KEEP.total_seconds():
            shutil.rmtree(folder, ignore_errors=True)
            gone += 1
    return gone


__all__ = ["KEEP", "expire", "find", "hold", "one_of", "take"]


CHUNK = 1 << 20
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def upload_name(filename: str | None) -> str:
    """A file name safe to create in a folder of one's own: the last part of what the
    client sent, letters, digits, ``._-`` only, no leading dots (so never ``..``).

    >>> upload_name("../../etc/passwd"), upload_name(".."), upload_name("客户 2026.xlsx")
    ('passwd', 'upload', '_2026.xlsx')
    """
    name = _SAFE_NAME.sub("_", Path(filename or "").name)[-120:].lstrip(".")
    return name or "upload"


async def save_upload(file: UploadFile) -> Path:
    """The uploaded file, saved under its (sanitised) name in a new temporary folder that
    the caller removes; 422 for an empty file. Nothing is left behind when it fails."""
    folder = Path(tempfile.mkdtemp(prefix=UPLOAD_PREFIX))
    target = folder / upload_name(file.filename)
    try:
        with target.open("wb") as out:
            while chunk := await file.read(CHUNK):
                out.write(chunk)
        if target.stat().st_size == 0:
            raise Problem(422, say(f"{file.filename}: the file is empty",
                                   f"{file.filename}：文件是空的"))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return target
