"""Privacy rights (GDPR / PIPL): export everything about a customer, erase a customer
everywhere, delete old facts on a retention schedule, and consent / unsubscribe flags.

Erasure reaches every place a customer's data lives: the control store (customer row,
memberships, history, cleaning log, contact preferences, the action outbox, tasks, playbook
runs, lead scores, ticket SLAs, rows received through the API), the fact store (Parquet files are
rewritten without the customer's rows; the old files are deleted at once), computed
snapshots, the customers mirror (its files are deleted), and every report under
``reports/`` (lines of CSV reports that name the customer by id, name, e-mail, phone,
address or a sensitive attribute are dropped; other files have those values blanked). On
SQLite, freed pages are zeroed (``secure_delete``) and the write-ahead log is truncated
afterwards. An erased account's people stay, as customers of their own (their account and
role emptied); they are people with rights of their own, erased only when asked for.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tierwise.definitions.personal_data import PII_COLUMNS
from tierwise.definitions.schemas import FACT_TABLES
from tierwise.errors import NotFoundError, TierwiseError
from tierwise.models.compute import replace_snapshot_file
from tierwise.store import customer_mirror, people
from tierwise.store import customers as customer_store
from tierwise.store import snapshots as snapshot_store
from tierwise.store.control import utcnow
from tierwise.store.merges import unseal
from tierwise.workspace import Workspace


def export_customer(ws: Workspace, customer_id: str) -> dict[str, Any]:
    """Everything held about one customer, as JSON-ready data (a subject-access request).

    A merged person's export covers the records merged into them.
    """
    with ws.control.read() as conn:
        customer_id, ids = people.ids_of(conn, customer_id)
        customer = customer_store.get(conn, customer_id)
        if customer is None:
            raise NotFoundError(f"no customer with id {customer_id!r}",
                                zh=f"没有编号为 {customer_id!r} 的客户")
        held = people.held_about(conn, customer_id, ids)
        snaps = snapshot_store.listing(conn)
    facts: dict[str, list[dict[str, Any]]] = {}
    for schema in FACT_TABLES:
        rows: list[dict[str, Any]] = []
        for path in _fact_paths(ws, schema.name):
            hit = _customer_filter(schema.customer_refs, ids)
            rows.extend(ds.dataset(path).to_table(filter=hit).drop_columns(
                [c for c in ("_row", "_key") if c in pq.read_schema(path).names]).to_pylist())
        facts[schema.name] = rows
    values: list[dict[str, Any]] = []
    for snap in snaps:
        path = ws.root / snap["path"]
        if path.exists():
            found = ds.dataset(path).to_table(filter=pc.field("customer_id").isin(ids))
            values.extend({"snapshot_id": snap["snapshot_id"], "as_of": snap["as_of"], **r}
                          for r in found.to_pylist())
    return {"customer": customer, "merged_ids": ids[1:], **held, "facts": facts,
            "computed_values": values, "exported_at": utcnow()}


def _fact_paths(ws: Workspace, table: str) -> list[str]:
    return [f.path for f in ws.facts.scan(table).files]


def _customer_filter(refs: tuple[str, ...], ids: list[str]) -> pc.Expression:
    expr = None
    for ref in refs:
        part = pc.field(ref).isin(ids)
        expr = part if expr is None else (expr | part)
    assert expr is not None
    return expr


@dataclass
class Erasure:
    customer_ref: str  # a hash of the id, for the audit log
    control_rows: int = 0
    fact_rows: dict[str, int] = field(default_factory=dict)
    snapshot_rows: int = 0
    report_lines: int = 0


def customer_ref(ws: Workspace, customer_id: str) -> str:
    """What the audit log records of an erased customer: a hash of the id under the audit
    key, which trying likely ids cannot reverse without the key."""
    key = ws.control.audit
    if key is None:
        raise TierwiseError("no audit key: erasures are recorded under a keyed hash",
                            zh="没有审计密钥：擦除操作要用带密钥的哈希记录")
    return key.pseudonym(customer_id)


def erase_customer(ws: Workspace, customer_id: str) -> Erasure:
    """Remove a customer from everywhere tierwise keeps data (see the module docstring)."""
    with ws.control.read() as conn:
        survivor, ids = people.ids_of(conn, customer_id)
        customer = customer_store.get(conn, survivor)
        earlier = [unseal(conn, undo)["records"]
                   for undo in people.merge_undo_records(conn, ids)]
    if customer is None:
        raise NotFoundError(f"no customer with id {customer_id!r}",
                            zh=f"没有编号为 {customer_id!r} 的客户")
    result = Erasure(customer_ref(ws, survivor))
    # Facts first: if anything fails midway the customer row still exists and the erasure
    # can be run again; the control store goes last, in one transaction.
    for schema in FACT_TABLES:
        result.fact_rows[schema.name] = ws.facts.drop_rows(
            schema.name, _customer_filter(schema.customer_refs, ids))
    result.snapshot_rows = _scrub_snapshots(ws, ids)
    needles = [v for record in [customer, *[r for rs in earlier for r in rs]]
               for v in _identifying(ws, record)]
    result.report_lines = _scrub_reports(ws, sorted(set(needles)))
    with ws.control.write() as conn:
        result.control_rows = people.erase(conn, ids)
        # an erased account's people stay, as customers of their own; an erased person's
        # account has other people now
        customer_store.unlink_contacts(conn, ids)
        if customer.get("account_id"):
            customer_store.touch(conn, [customer["account_id"]])
    customer_mirror.invalidate(ws.root, files=True)
    _compact_control_store(ws)
    return result


def _scrub_snapshots(ws: Workspace, ids: list[str]) -> int:
    removed = 0
    with ws.control.read() as conn:
        snaps = snapshot_store.listing(conn)
    for snap in snaps:
        path = ws.root / snap["path"]
        if not path.exists():
            continue
        data = ds.dataset(pq.read_table(path))
        hit = pc.field("customer_id").isin(ids)
        count = data.count_rows(filter=hit)
        if not count:
            continue
        keep = data.to_table(filter=~hit)
        replace_snapshot_file(path, keep)
        with ws.control.write() as conn:
            snapshot_store.set_rows(conn, snap["snapshot_id"], keep.num_rows)
        removed += count
    return removed


def _identifying(ws: Workspace, record: dict[str, Any]) -> list[str]:
    """The values that can name a customer in a report: id, name, e-mail, phone, address
    and the values of sensitive attributes (at least 2 characters: shorter ones would
    match anything)."""
    values = [record.get(c) for c in ("customer_id", *PII_COLUMNS)]
    try:
        attributes = json.loads(record.get("attributes") or "{}")
    except ValueError:
        attributes = {}
    if isinstance(attributes, dict):
        values += [str(v) for k, v in attributes.items()
                   if v is not None and ws.personal_data.is_sensitive_key(k)]
    return [str(v) for v in values if v and len(str(v)) >= 2]


def _scrub_reports(ws: Workspace, needles: list[str]) -> int:
    """Drop the lines of CSV reports that mention the customer (rejected rows of imports)
    and blank the customer out of any other text file under ``reports/``."""
    removed = 0
    folder = ws.root / "reports"
    for path in sorted(folder.rglob("*")) if folder.exists() else []:
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix.lower() == ".csv":
            text = path.read_text(encoding="utf-8-sig", errors="replace")
            rows = list(csv.reader(io.StringIO(text)))
            kept = [r for r in rows if not any(n in cell for cell in r for n in needles)]
            if len(kept) == len(rows):
                continue
            removed += len(rows) - len(kept)
            buffer = io.StringIO()
            csv.writer(buffer).writerows(kept)
            _replace_file(path, buffer.getvalue().encode("utf-8-sig"))
        else:
            data = path.read_bytes()
            found = sum(data.count(n.encode()) for n in needles)
            if not found:
                continue
            for needle in needles:
                data = data.replace(needle.encode(), b"[erased]")
            removed += found
            _replace_file(path, data)
    return removed


def _replace_file(path: Any, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.erase")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _compact_control_store(ws: Workspace) -> None:
    if ws.control.dialect != "sqlite":
        return  # PostgreSQL: deleted tuples are reclaimed by (auto)vacuum
    with ws.control.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


# -- retention ---------------------------------------------------------------------------

def apply_retention(ws: Workspace, days: dict[str, int]) -> dict[str, int]:
    """Delete facts older than ``days[table]`` days (by the table's time column)."""
    done = {}
    now = utcnow()
    by_name = {t.name: t for t in FACT_TABLES}
    for table, keep_days in days.items():
        schema = by_name.get(table)
        if schema is None or schema.time_column is None:
            raise TierwiseError(f"retention: {table!r} is not a fact table with a time column; "
                                f"expected one of {', '.join(by_name)}",
                                zh=f"保留期：{table!r} 不是带时间列的事实表；"
                                f"应为 {', '.join(by_name)} 之一")
        if keep_days < 1:
            raise TierwiseError(f"retention for {table}: keep at least 1 day, got {keep_days}",
                                zh=f"{table} 的保留期：至少保留 1 天，实际为 {keep_days}")
        cutoff = now - timedelta(days=keep_days)
        # Old facts may stay on disk for the grace period, unlike an erased customer's.
        done[table] = ws.facts.drop_rows(table, pc.field(schema.time_column) < cutoff,
                                         immediate=False)
    return done
