"""The data-quality report, and undoing what import cleaning changed.

Report: completeness of every customer field, invalid e-mails and phones, customers that
share an e-mail or a phone (likely duplicates), stub customers, fact rows that name
unknown customers (orphans), and freshness (last import, latest fact per table).
"""

from __future__ import annotations

from typing import Any

from tierwise.compile.dialects import render
from tierwise.definitions.schemas import CUSTOMERS, FACT_TABLES, TABLES
from tierwise.errors import TierwiseError
from tierwise.store import cleaning_log as cleaning
from tierwise.store import customer_mirror, import_log
from tierwise.store import customers as customer_store
from tierwise.store import merges as merge_store
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace

_EMAIL_RE = r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+$"


def report(ws: Workspace) -> dict[str, Any]:
    """Everything ``tierwise quality`` prints, as data."""
    fields = [c.name for c in CUSTOMERS.columns]
    completeness = ", ".join(f"count({c}) AS {c}" for c in fields)
    out: dict[str, Any] = {"computed_at": utcnow()}
    scans = {t.name: ws.facts.scan(t.name) for t in FACT_TABLES}
    people = customer_store.reveal(customer_mirror.read(ws.root, ws.control), ws.control.pii,
                                   ("email", "phone"))
    with ws.engine.session(scans, {"customers": people}) as session:
        row = session.query(f"SELECT count(*) AS total, {completeness} FROM customers"
                            ).to_pylist()[0]
        total = row.pop("total")
        out["customers"] = total
        out["completeness"] = {k: (v / total if total else 0.0) for k, v in row.items()}
        out["invalid"] = session.query(render(
            "SELECT count(*) FILTER (WHERE email IS NOT NULL AND NOT regexp_matches(email, "
            ":pattern)) AS email, count(*) FILTER (WHERE phone IS NOT NULL AND NOT "
            "starts_with(phone, '+')) AS phone FROM customers", ws.engine.name),
            {"pattern": _EMAIL_RE}).to_pylist()[0]
        duplicates = {}
        for column, key in (("email", "lower(email)"), ("phone", "phone")):
            duplicates[column] = session.query(
                f"SELECT count(*) AS groups, coalesce(sum(n), 0) AS customers FROM (SELECT "
                f"{key} AS k, count(*) AS n FROM customers WHERE {column} IS NOT NULL "
                f"GROUP BY {key} HAVING count(*) > 1)").to_pylist()[0]
        out["shared_contacts"] = duplicates
        orphans: dict[str, int] = {}
        freshness: dict[str, Any] = {}
        for table in FACT_TABLES:
            refs = " OR ".join(f"f.{r} NOT IN (SELECT customer_id FROM customers)"
                               for r in table.customer_refs)
            orphans[table.name] = int(session.scalar(
                f"SELECT count(*) FROM {table.name} AS f WHERE {refs}") or 0)
            # through Arrow: DuckDB's own Python conversion of TIMESTAMPTZ needs pytz
            freshness[table.name] = session.query(
                f'SELECT max("{table.time_column}") AS t FROM {table.name}').column(0)[0].as_py()
    with ws.control.read() as conn:
        out["stub_customers"] = customer_store.count(conn, stubs_only=True)
        last = {t: import_log.last_finished(conn, t) for t in [*TABLES]}
        out["identity"] = merge_store.counts(conn)
        flags = cleaning.rule_counts(conn)
    out["orphans"] = orphans
    out["freshness"] = {t: {"last_import": last.get(t), "latest_fact": f}
                        for t, f in freshness.items()}
    out["freshness"]["customers"] = {"last_import": last.get("customers"),
                                     "latest_fact": None}
    out["cleaning"] = flags
    return out


def undo_cleaning(ws: Workspace, import_id: int) -> int:
    """Restore the values an import's cleaning changed, where nobody changed them since."""
    restored = 0
    with ws.control.write() as conn:
        found = cleaning.entries(conn, import_id=import_id, pending_only=True)
        if not found:
            raise TierwiseError(f"import {import_id} has no cleaning to undo",
                                zh=f"导入 {import_id} 没有可撤销的清洗")
        for entry in found:
            if entry["before"] != entry["after"]:
                restored += customer_store.restore_value(
                    conn, entry["customer_id"], entry["column_name"], entry["after"],
                    entry["before"])
        cleaning.mark_undone(conn, import_id)
    return restored


def cleaning_entries(ws: Workspace, import_id: int | None = None,
                     limit: int = 50) -> list[dict[str, Any]]:
    with ws.control.read() as conn:
        return cleaning.entries(conn, import_id=import_id, limit=limit)


__all__ = ["cleaning_entries", "report", "undo_cleaning"]
