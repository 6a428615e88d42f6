"""What tierwise keeps of its own records, and what takes space.

``prune`` applies the ``keep_*`` settings of tierwise.toml (``tierwise serve`` runs it every
hour, ``tierwise prune`` on demand): finished deliveries, old snapshots (the latest and the
last of every month stay: reviews compare month and quarter closings), rejected-row
reports of imports, files compaction retired and abandoned staging files. Intake rows are
pruned by the real-time worker after ``intake_keep_hours``; facts by ``retention_days``
(``privacy.apply_retention``). The audit log is never pruned: it is the record of what was
done, and its chain would not verify without its first entries.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tierwise.store import outbox as outbox_store
from tierwise.store import snapshots as snapshot_store
from tierwise.store import usage as size_store
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace


def prune(ws: Workspace, now: datetime | None = None) -> dict[str, int]:
    """Apply the workspace's keep settings; returns what each step deleted."""
    now = now or utcnow()
    cfg = ws.config
    with ws.control.write() as conn:
        deliveries = outbox_store.prune(conn, now - timedelta(days=cfg.keep_deliveries_days))
    return {"deliveries": deliveries,
            "snapshots": _prune_snapshots(ws, now - timedelta(days=cfg.keep_snapshots_days)),
            "import_reports": _prune_files(ws.root / "reports" / "imports",
                                           now - timedelta(days=cfg.keep_import_reports_days)),
            "fact_files": ws.facts.collect_garbage()}


def _prune_snapshots(ws: Workspace, before: datetime) -> int:
    zone = ws.config.zone
    with ws.control.read() as conn:
        listed = snapshot_store.listing(conn)
    if not listed:
        return 0
    keep = {listed[-1]["snapshot_id"]}
    last_of_month: dict[tuple[int, int], dict[str, Any]] = {}
    for snap in listed:
        local = snap["as_of"].astimezone(zone)
        last_of_month[(local.year, local.month)] = snap  # later ones replace earlier ones
    keep |= {s["snapshot_id"] for s in last_of_month.values()}
    gone = [s for s in listed if s["snapshot_id"] not in keep and s["computed_at"] < before]
    if not gone:
        return 0
    with ws.control.write() as conn:
        snapshot_store.remove(conn, [s["snapshot_id"] for s in gone])
    for snap in gone:
        (ws.root / snap["path"]).unlink(missing_ok=True)
    return len(gone)


def _prune_files(folder: Path, before: datetime) -> int:
    if not folder.is_dir():
        return 0
    cutoff = before.timestamp()
    removed = 0
    for path in folder.rglob("*"):
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _folder_size(folder: Path) -> tuple[int, int]:
    files, total = 0, 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
                files += 1
            except OSError:
                continue
    return files, total


def space(ws: Workspace) -> list[dict[str, Any]]:
    """What takes space: the control store, its biggest tables, and the workspace's folders
    (fact files, snapshots, reports, staging), with what keeps each bounded."""
    started = time.monotonic()
    with ws.control.read() as conn:
        store = size_store.control_store_size(conn)
        rows = size_store.table_rows(conn)
    cfg = ws.config
    bounded = {
        "outbox": f"finished deliveries kept {cfg.keep_deliveries_days} days",
        "intake": f"moved rows kept {cfg.intake_keep_hours:g} hours",
        "audit_log": "kept for good (the chain needs every entry)",
        "segment_history": "kept for good (segment history)",
        "snapshots": f"{cfg.keep_snapshots_days} days, month-ends kept",
    }
    found: list[dict[str, Any]] = [{"what": "control store", "bytes": store, "files": None,
                                    "kept": "—"}]
    for table, n in rows:
        found.append({"what": f"  {table}", "rows": n, "bytes": None, "files": None,
                      "kept": bounded.get(table, "")})
    for name, folder, note in (
            ("fact files", ws.root / "facts", "retention_days per table" if cfg.retention_days
             else "kept for good (set retention_days)"),
            ("snapshots", ws.root / "snapshots",
             f"{cfg.keep_snapshots_days} days, month-ends kept"),
            ("reports", ws.root / "reports",
             f"import reports {cfg.keep_import_reports_days} days"),
    ):
        files, total = _folder_size(folder) if folder.is_dir() else (0, 0)
        found.append({"what": name, "files": files, "bytes": total, "kept": note})
    found.append({"what": "seconds", "bytes": None, "files": None,
                  "kept": f"{time.monotonic() - started:.2f}"})
    return found
